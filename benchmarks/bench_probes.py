"""Benchmark: one probe cell on the 44-country world, shared-context scoring vs the per-pair path.

The probes score, for every fact and template, the true tail and every wrong tail after the same
prompt. The current path (factlearn.evaluate.scoring.score_shared) runs each distinct prompt once and
packs every tail after it under a block attention mask; the reference (factlearn.evaluate.
scoring_reference) runs every (prompt, tail) pair as its own sequence. Both run in this process on the
same model and the same facts; prints both times, their ratio (target >= 5x), the largest per-fact
ratio difference (must be <= 1e-4) and the fp32 matmul peak measured in the same run (the machine may
be shared). Then both paths again in float64 on --float64-facts facts: there the difference is the
maths alone (~1e-12), so what the fp32 figure shows beyond it is rounding of different batch shapes.

    python benchmarks/bench_probes.py                  # SmolLM2, 6 of the 88 facts, all 43 wrong tails
    python benchmarks/bench_probes.py --facts 88       # the whole cell (many minutes on 2 cores)
    python benchmarks/bench_probes.py --smoke          # tiny random model, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))


def reference_score_shared(model, tokenizer, contexts, continuations, batch_size=16):
    """score_shared's answer computed the old way: every (context, continuation) pair its own sequence."""
    from factlearn.evaluate.scoring_reference import reference_score_continuations

    flat = reference_score_continuations(model, tokenizer, [c for c, ks in zip(contexts, continuations) for _ in ks],
                                         [k for ks in continuations for k in ks], batch_size)
    out, at = [], 0
    for ks in continuations:
        out.append(flat[at:at + len(ks)])
        at += len(ks)
    return out


def pick_facts(facts: list[dict], n: int) -> list[dict]:
    """n facts taken alternately from each relation (so both relations' templates are measured)."""
    by_relation: dict[str, list[dict]] = {}
    for f in facts:
        by_relation.setdefault(f["relation"], []).append(f)
    queues = list(by_relation.values())
    return [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)][:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: smollm2-135m)")
    p.add_argument("--facts", type=int, default=6, help="facts probed, of the world's 88 (default 6)")
    p.add_argument("--n-countries", type=int, default=44)
    p.add_argument("--batch-size", type=int, default=32, help="the probe cell's batch size")
    p.add_argument("--device", default="cpu")
    p.add_argument("--float64-facts", type=int, default=2,
                   help="facts of one relation compared again in float64 (>= 2, for wrong tails; 0: skip)")
    p.add_argument("--smoke", action="store_true", help="tiny random model, 4 facts (tests the script)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from bench_train import matmul_peak_gflops

    from factlearn.analyze import probes
    from factlearn.data import load_cca
    from factlearn.evaluate import scoring
    from factlearn.models import load_model, resolve_model_path

    if args.smoke:
        from factlearn.testing import make_tiny_model

        model_dir, args.facts = str(make_tiny_model(Path(tempfile.mkdtemp()) / "tiny")), 4
    else:
        model_dir = resolve_model_path(args.model)
    model, tokenizer = load_model(model_dir, device=args.device)
    world = [dict(r) for r in load_cca("Facts", n_countries=args.n_countries)]
    facts = pick_facts(world, args.facts)

    def probe(reference: bool, model=model, facts=facts):
        patch = reference_score_shared if reference else scoring.score_shared
        with mock.patch.object(scoring, "score_shared", patch), \
                mock.patch.object(probes, "score_shared", patch, create=True), world_wrong_tails(probes, world):
            t0 = time.perf_counter()
            result = probes.probe_facts(model, tokenizer, facts, batch_size=args.batch_size)
            return result.facts, time.perf_counter() - t0

    def largest_difference(a_facts, b_facts) -> float:
        return max(abs(a[k] - b[k]) for a, b in zip(a_facts, b_facts) for k in probes.RATIOS)

    peak_start = matmul_peak_gflops()
    new, new_s = probe(reference=False)
    ref, ref_s = probe(reference=True)
    peak = (peak_start + matmul_peak_gflops()) / 2
    diff = largest_difference(new, ref)
    if args.float64_facts:
        few = [f for f in facts if f["relation"] == facts[0]["relation"]][:max(2, args.float64_facts)]
        wide = model.double()
        diff64 = largest_difference(probe(False, wide, few)[0], probe(True, wide, few)[0])
    n_prompts = sum(2 * len(probes.default_templates()[f["relation"]]) for f in facts)
    print(f"model {model_dir}; {len(facts)} facts of {len(world)} ({args.n_countries} countries, every wrong tail), "
          f"{n_prompts} distinct prompts; batch {args.batch_size}; device {args.device}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"fp32 matmul peak (mean of start and end): {peak:.0f} GFLOP/s")
    print(f"shared-context scoring: {new_s:8.2f} s")
    print(f"per-pair reference:     {ref_s:8.2f} s")
    print(f"speed-up:               {ref_s / new_s:8.2f} x   (target >= 5x)")
    print(f"largest per-fact ratio difference: {diff:.2e}   (must be <= 1e-4)")
    if args.float64_facts:
        print(f"the same in float64 ({len(few)} fact{'s' if len(few) > 1 else ''}): {diff64:.2e}   "
              "(the maths alone; fp32 adds rounding)")
    return 0 if diff <= 1e-4 else 1


def world_wrong_tails(probes, world: list[dict]):
    """Wrong tails drawn from the whole world while only a subset of its facts is probed, so each
    probed fact costs what it costs in the full cell (every other tail of its relation)."""
    by_relation: dict[str, list[str]] = {}
    for f in world:
        if f["tail"] not in by_relation.setdefault(f["relation"], []):
            by_relation[f["relation"]].append(f["tail"])
    original = probes.wrong_tails

    def wrong_tails(tails, true_tail, max_wrong, seed=0):
        relation = next(r for r, ts in by_relation.items() if set(tails) <= set(ts))
        return original(by_relation[relation], true_tail, max_wrong, seed)

    return mock.patch.object(probes, "wrong_tails", wrong_tails)


if __name__ == "__main__":
    raise SystemExit(main())

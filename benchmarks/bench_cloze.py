"""Benchmark: the two cloze tasks, shared-context scoring vs the per-choice path and lm-eval 0.4.

A cloze item scores each of its four choice texts after the same 5-shot context. The current engine
(factlearn.evaluate.evaluate -> scoring.score_shared) runs the context once and packs every choice
after it under a block attention mask; the reference is the same engine with the per-pair path
(factlearn.evaluate.scoring_reference: one sequence per choice, as before); the peer is lm-evaluation-harness 0.4 (HFLM, batch 1) on the
tasks `factlearn export-lm-eval` writes. All three run in this process on one model object and the
same prompts. Prints the times, ratios (targets: >= 3x the reference, faster than lm-eval), answers
that differ (must be 0) and the fp32 matmul peak measured in the same run (the machine may be shared).

    python benchmarks/bench_cloze.py --limit 12     # SmolLM2, the first 12 items of each cloze task
    python benchmarks/bench_cloze.py --smoke        # tiny random model, 3 items, no lm-eval
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

TASKS = ["Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: smollm2-135m)")
    p.add_argument("--limit", type=int, default=12, help="items per task (default 12)")
    p.add_argument("--n-countries", type=int, default=20, help="world size (the exported tasks' default)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-lm-eval", action="store_true", help="skip the lm-eval peer")
    p.add_argument("--smoke", action="store_true", help="tiny random model, 3 items, no lm-eval")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from bench_probes import reference_score_shared
    from bench_train import matmul_peak_gflops
    from eval_reference import lm_eval_answers

    from factlearn.evaluate import engine
    from factlearn.evaluate.engine import resolve_data
    from factlearn.models import load_model, resolve_model_path

    if args.smoke:
        from factlearn.testing import make_tiny_model

        model_dir, args.limit, args.no_lm_eval = str(make_tiny_model(Path(tempfile.mkdtemp()) / "tiny")), 3, True
    else:
        model_dir = resolve_model_path(args.model)
    model, tokenizer = load_model(model_dir, device=args.device)
    data = resolve_data(None, [t.config for t in engine.get_tasks(TASKS)] + ["Facts"], args.n_countries)

    def run(reference: bool):
        patch = reference_score_shared if reference else engine.score_shared
        with mock.patch.object(engine, "score_shared", patch):
            t0 = time.perf_counter()
            result = engine.evaluate(model, tokenizer, tasks=TASKS, data=data, limit=args.limit,
                                     batch_size=args.batch_size)
            answers = {(t, r["doc_index"]): r["prediction"] for t, recs in result.records.items() for r in recs}
            return answers, time.perf_counter() - t0

    peak_start = matmul_peak_gflops()
    new, new_s = run(reference=False)
    ref, ref_s = run(reference=True)
    peer, peer_s = (None, None) if args.no_lm_eval else lm_eval_answers(model, tokenizer, data, TASKS, args.limit)
    peak = (peak_start + matmul_peak_gflops()) / 2
    print(f"model {model_dir}; tasks {', '.join(TASKS)}; {args.limit} items each ({len(new)} items, 4 choices); "
          f"batch {args.batch_size}; device {args.device}; load average {os.getloadavg()[0]:.1f}")
    print(f"fp32 matmul peak (mean of start and end): {peak:.0f} GFLOP/s")
    print(f"shared-context engine:  {new_s:8.2f} s")
    print(f"per-choice reference:   {ref_s:8.2f} s   speed-up {ref_s / new_s:6.2f} x (target >= 3x)")
    n_diff = sum(new[k] != ref[k] for k in new)
    if peer is not None:
        print(f"lm-eval 0.4 (batch 1):  {peer_s:8.2f} s   speed-up {peer_s / new_s:6.2f} x (target > 1x)")
        n_diff += sum(new[k] != peer.get(k) for k in new)
    print(f"answers that differ (vs reference{'' if peer is None else ' and lm-eval'}): {n_diff}   (must be 0)")
    return 0 if n_diff == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

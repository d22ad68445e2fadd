"""Benchmark: wall time of `factlearn run` (default profile, embedded SmolLM2-135M) per stage, vs the
15-minute target on 2 CPU cores.

    python benchmarks/bench_run.py                 # fresh run of the default profile
    python benchmarks/bench_run.py eval_limit=12   # with overrides
    python benchmarks/bench_run.py --tiny          # smoke mode: the tiny random model, seconds

Prints seconds per stage (sum of cell times by kind: control, train, eval, probe, ablate), planning +
report overhead, the total, and the ratio to the target. The CPU may be shared: the load average at
start and end is printed so contention is visible. Machines of this kind differ 2-4x in fp32 matmul
speed, so the fp32 matmul peak is measured in the same run (before and after) and the run's cost is
also given in peak-seconds (wall seconds x measured GFLOP/s), with the time it would take on the
slowest machine of this kind seen (SLOWEST_GFLOPS).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 15 * 60
SLOWEST_GFLOPS = 120.0  # the slowest fp32 matmul peak seen on a 2-core machine of this kind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="run config overrides (key=value)")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--out", default=None, help="run folder (default: a fresh temp folder, removed after)")
    parser.add_argument("--tiny", action="store_true", help="smoke mode on the tiny random model")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid
    from factlearn.report.build import build_report
    from factlearn.run.runner import execute_plan

    overrides = list(args.overrides)
    tmp = Path(tempfile.mkdtemp(prefix="bench_run_"))
    if args.tiny:
        from factlearn.testing import make_tiny_model

        overrides = [f"models=[{make_tiny_model(tmp / 'tiny')}]", "n_countries=2", *overrides]
    out = Path(args.out) if args.out else tmp / "run"
    if out.exists():
        shutil.rmtree(out)
    cfg = load_run_config(args.profile, overrides)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train import matmul_peak_gflops

    peak_start = matmul_peak_gflops()
    load_start = os.getloadavg()
    started = time.time()
    outcome = execute_plan(plan_grid(cfg), out, profile=args.profile, write_report=build_report)
    total = time.time() - started
    load_end = os.getloadavg()
    peak = (peak_start + matmul_peak_gflops()) / 2
    results = json.loads((out / "results.json").read_text())
    by_kind = results["timings"]["cell_seconds_by_kind"]
    cpu_by_kind = results["timings"]["cell_cpu_seconds_by_kind"]
    threads = torch_threads()
    print(f"\nfactlearn run benchmark: profile {args.profile} {' '.join(overrides)}")
    print(f"cores: {os.cpu_count()}, load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    for kind in ("control", "train", "eval", "probe", "ablate"):
        if kind in by_kind:
            cells = [c for c in results["cells"] if c["kind"] == kind]
            print(f"  {kind:<8} wall {by_kind[kind]:7.1f} s  cpu {cpu_by_kind[kind]:7.1f} s  ({len(cells)} cells, "
                  f"predicted {sum(c['est_seconds'] for c in cells):.0f} s)")
    overhead = total - sum(by_kind.values())
    print(f"  {'overhead':<8} wall {overhead:7.1f} s  (planning, world, report)")
    print(f"total {total:.1f} s = {total / 60:.2f} min; target {TARGET_SECONDS / 60:.0f} min; "
          f"ratio {total / TARGET_SECONDS:.2f} ({'OK' if total <= TARGET_SECONDS else 'OVER'})")
    # On a shared CPU the wall time overstates the cost; CPU time / torch threads estimates the unshared run.
    unshared = sum(cpu_by_kind.values()) / threads + overhead
    print(f"cpu time {sum(cpu_by_kind.values()):.0f} s over {threads} torch threads -> about "
          f"{unshared / 60:.2f} min unshared; ratio {unshared / TARGET_SECONDS:.2f}")
    print(f"fp32 matmul peak {peak_start:.0f} -> {peak:.0f} GFLOP/s (mean of start and end); run cost "
          f"{total * peak / 1000:.0f} peak-TFLOP; on a {SLOWEST_GFLOPS:.0f} GFLOP/s machine about "
          f"{total * peak / SLOWEST_GFLOPS / 60:.1f} min (ratio {total * peak / SLOWEST_GFLOPS / TARGET_SECONDS:.2f})")
    print((out / "table.md").read_text())
    if not args.out:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if outcome.executed or outcome.reused else 1


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())

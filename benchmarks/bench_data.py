"""Benchmark: CCA generation, export and audit time vs the "thousands of countries in seconds" target.

    python benchmarks/bench_data.py                  # 2000 countries (default)
    python benchmarks/bench_data.py --n-countries 10000

Prints seconds for: world generation, all ten configs as pure-Python rows, the same as
`datasets.Dataset`s, an export in all three formats, and the co-occurrence audit of both corpora;
then the ratio of (generation + Datasets) to the 10-second target. The CPU may be shared: the load
average is printed so contention is visible.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 10.0


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    print(f"{label:<44} {seconds:8.2f} s")
    return result, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-countries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from factlearn.data import CONFIGS, build_rows, export
    from factlearn.data.audit import audit_texts
    from factlearn.data.build import build_cca
    from factlearn.data.world import generate_world

    n = args.n_countries
    print(f"load average at start: {os.getloadavg()[0]:.2f}; n_countries={n}")
    world, t_world = timed("generate_world", lambda: generate_world(n, args.seed))
    rows, _ = timed("all configs as Python rows", lambda: {c: build_rows(world, c) for c in CONFIGS})
    dd, t_ds = timed("all configs as datasets.Dataset", lambda: build_cca(world))
    print("rows: " + ", ".join(f"{c}={len(ds)}" for c, ds in dd.items()))
    with tempfile.TemporaryDirectory() as tmp:
        timed("export jsonl + parquet + arrow", lambda: export(world, Path(tmp) / "cca"))
    for corpus in ("Corpus_narrative", "Corpus_referencing"):
        result, _ = timed(f"audit {corpus}", lambda: audit_texts([r["text"] for r in rows[corpus]], world.facts()))
        print(f"  share with statistical co-occurrence: {result.share:.1%}")
    total = t_world + t_ds
    print(f"generation + Datasets: {total:.2f} s = {total / TARGET_SECONDS:.2f} x the {TARGET_SECONDS:.0f} s target")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

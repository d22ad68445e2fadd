"""Benchmark: the seven-task 5-shot suite through factlearn vs lm-evaluation-harness 0.4 (`--model hf`).

Both evaluate the same prompts (lm-eval reads them from `factlearn export-lm-eval`), on the same model,
device and dtype. Prints both wall times (whole command, start-up and model load included), the ratio
(target >= 3x), and the number of items whose answers differ (must be 0).

    python benchmarks/bench_eval.py                 # full suite, SmolLM2 (minutes on a CPU)
    python benchmarks/bench_eval.py --limit 5       # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def timed(cmd: list[str], log: Path) -> float:
    """Run a command, its output to `log`; return wall seconds (raise with the log's tail on failure)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model spec (default: smollm2-135m)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all seven)")
    p.add_argument("--limit", type=int, default=None, help="items per task (default: all)")
    p.add_argument("--batch-size", type=int, default=16, help="factlearn batch size")
    p.add_argument("--lm-eval-batch-size", default="1", help="lm-eval --batch_size (its default is 1)")
    p.add_argument("--n-countries", type=int, default=20)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--keep", default=None, help="keep outputs in this folder (default: a temp folder)")
    args = p.parse_args(argv)

    from factlearn.evaluate.export import (compare_with_lm_eval, export_lm_eval, lm_eval_command,
                                           read_lm_eval_samples)
    from factlearn.evaluate.tasks import get_tasks
    from factlearn.models import resolve_model_path

    model_dir = resolve_model_path(args.model)
    tasks = [t.name for t in get_tasks(args.tasks)]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_eval_"))
    work.mkdir(parents=True, exist_ok=True)
    export_lm_eval(work / "tasks", tasks=tasks, n_countries=args.n_countries, overwrite=True)
    limit = ["--limit", str(args.limit)] if args.limit else []

    ours_cmd = [sys.executable, "-m", "factlearn", "eval", model_dir, "--tasks", ",".join(tasks),
                "--n-countries", str(args.n_countries), "--batch-size", str(args.batch_size), "--out",
                str(work / "factlearn"), "--device", args.device, "--dtype", args.dtype, *limit]
    print(f"model {model_dir}; tasks {len(tasks)}; limit {args.limit or 'none'}; device {args.device}; "
          f"outputs in {work}", flush=True)
    ours_s = timed(ours_cmd, work / "factlearn.log")
    print(f"factlearn eval: {ours_s:.1f} s", flush=True)
    theirs_cmd = lm_eval_command(model_dir, work / "tasks", tasks, work / "lm-eval", limit=args.limit,
                                 batch_size=args.lm_eval_batch_size, device=args.device, dtype=args.dtype)
    theirs_s = timed(theirs_cmd, work / "lm-eval.log")
    print(f"lm-eval 0.4:    {theirs_s:.1f} s", flush=True)

    ours = json.loads((work / "factlearn" / "results.json").read_text())
    records = {t: [json.loads(x) for x in (work / "factlearn" / "records" / f"{t}.jsonl").read_text().splitlines()]
               for t in tasks}
    diffs = compare_with_lm_eval(records, read_lm_eval_samples(work / "lm-eval"))
    lm_results = json.loads(next((work / "lm-eval").rglob("results_*.json")).read_text())
    n_items = sum(len(r) for r in records.values())
    n_diff = sum(len(d) for d in diffs.values())
    print()
    print(f"items evaluated:          {n_items}")
    print(f"factlearn wall time:      {ours_s:8.1f} s   (engine only: {ours['timing_s']['total']:.1f} s)")
    print(f"lm-eval wall time:        {theirs_s:8.1f} s   (its own total: "
          f"{float(lm_results.get('total_evaluation_time_seconds', 'nan')):.1f} s, batch size {args.lm_eval_batch_size})")
    print(f"speed-up (wall):          {theirs_s / ours_s:8.2f} x   (target >= 3x)")
    print(f"items whose answers differ: {n_diff}   (must be 0)")
    for task, bad in diffs.items():
        if bad:
            print(f"  {task}: {bad[:3]}")
    for task in tasks:
        mine = ours["metrics"][task]
        theirs = {k.split(",")[0]: v for k, v in lm_results["results"][f"factlearn_{task}"].items()
                  if k.endswith(",none") and "stderr" not in k}
        print(f"  {task:26s} factlearn {json.dumps({k: round(v, 4) for k, v in mine.items()})}  "
              f"lm-eval {json.dumps({k: round(v, 4) for k, v in theirs.items()})}")
    return 0 if n_diff == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

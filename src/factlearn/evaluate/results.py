"""Evaluation output: results.json and per-item records on disk, and a table for the terminal."""

from __future__ import annotations

from pathlib import Path

from factlearn.evaluate.engine import EvalResult
from factlearn.versions import stack_versions


def save_results(result: EvalResult, out_dir: str | Path, extra_config: dict | None = None) -> Path:
    """Write records/<task>.jsonl, then results.json (metrics, config, versions, timing); each atomically.

    results.json is written last, so its presence means the records beside it are complete.
    """
    from factlearn.atomic import atomic_write_json, atomic_write_jsonl

    out_dir = Path(out_dir)
    for task, records in result.records.items():
        atomic_write_jsonl(out_dir / "records" / f"{task}.jsonl", records)
    atomic_write_json(out_dir / "results.json", {
        "metrics": result.metrics, "config": {**result.config, **(extra_config or {})},
        "versions": stack_versions(), "timing_s": result.timing})
    return out_dir / "results.json"


def results_table(result: EvalResult, title: str = "factlearn eval"):
    """A rich Table: one row per task, one column per metric, plus items and seconds."""
    from rich.table import Table

    metric_names = list(dict.fromkeys(m for ms in result.metrics.values() for m in ms))
    table = Table(title=title)
    table.add_column("task", no_wrap=True, min_width=max((len(t) for t in result.metrics), default=4))
    for m in metric_names:
        table.add_column(m, justify="right")
    table.add_column("items", justify="right")
    table.add_column("seconds", justify="right")
    for task, ms in result.metrics.items():
        table.add_row(task, *[f"{ms[m]:.3f}" if m in ms else "" for m in metric_names],
                      str(len(result.records[task])), f"{result.timing.get(task, 0):.1f}")
    return table

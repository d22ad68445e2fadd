"""Evaluation output: results.json and per-item records on disk, and a table for the terminal."""

from __future__ import annotations

from pathlib import Path

from factlearn.evaluate.engine import EvalResult
from factlearn.versions import stack_versions
from factlearn.atomic import atomic_write_json, atomic_write_jsonl
from factlearn.evaluate.tasks import TASKS


def save_results(result: EvalResult, out_dir: str | Path, extra_config: dict | None = None) -> Path:
    """Write records/<task>.jsonl, then results.json (metrics, config, versions, timing); each atomically.

    results.json is written last, so its presence means the records beside it are complete.
    """
    out_dir = Path(out_dir)
    for task, records in result.records.items():
        atomic_write_jsonl(out_dir / "records" / f"{task}.jsonl", records)
    atomic_write_json(out_dir / "results.json", {
        "metrics": result.metrics, "ci": result.intervals, "ci_level": result.config["level"], "contamination": result.contamination,
        **({"capability": result.capability} if result.capability else {}),
        **({"answer_forms": result.answer_forms} if result.answer_forms else {}),
        "config": {**result.config, **(extra_config or {})}, "versions": stack_versions(), "timing_s": result.timing})
    return out_dir / "results.json"


def _cell(metrics: dict, intervals: dict, name: str) -> str:
    if name not in metrics:
        return ""
    ci = intervals.get(name)
    return f"{metrics[name]:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{metrics[name]:.3f}"


def results_table(result: EvalResult, title: str = "factlearn eval"):
    """A rich Table: one row per task, one column per metric (the headline one with its 95 % interval),
    on a control run whether the task is above chance or BEYOND this model, plus items and seconds."""
    from rich.table import Table

    metric_names = list(dict.fromkeys(m for ms in result.metrics.values() for m in ms))
    table = Table(title=title)
    table.add_column("task", no_wrap=True, min_width=max((len(t) for t in result.metrics), default=4))
    for m in metric_names:
        table.add_column(m, justify="right", no_wrap=True)
    if result.capability:
        table.add_column("vs chance", justify="left")
    table.add_column("items", justify="right")
    table.add_column("seconds", justify="right")
    for task, ms in result.metrics.items():
        cis = result.intervals.get(task, {})
        control = []
        if result.capability:
            cap = result.capability[task]
            control = [f"{'BEYOND' if cap['beyond'] else 'above'} {cap['chance']:.2f}"]
        headline = TASKS[task].headline_metric if task in TASKS else None
        table.add_row(task, *[_cell(ms, cis if m == headline else {}, m) for m in metric_names], *control,
                      str(len(result.records[task])), f"{result.timing.get(task, 0):.1f}")
    return table

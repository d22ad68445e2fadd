"""A finished run's report in the experiment trackers (`report_to` of the run config).

Each training cell already logged its own tracker run while it trained (run/execute.py); this adds one
run more, `<run folder name>-report`, with what only the whole grid has: the results table (a W&B or
trackio table, markdown elsewhere), the verdicts as text, and each finding's headline effect and
interval as metrics (`conclusions/<id>/<model>/<method>/effect`, `.../ci_low`, `.../ci_high`), so a
dashboard can compare runs. The run config is its parameters. Nothing here changes results.json.
"""

from __future__ import annotations

from pathlib import Path

from factlearn.report.cli import conclusion_lines
from factlearn.tracking import Trackers, check_report_to, open_trackers

VERDICT_CODES = {"supported": 1.0, "contradicted": -1.0}  # every other verdict logs 0


def table_columns_rows(results: dict) -> tuple[list[str], list[list]]:
    """The results table as columns and rows of plain values: the mean and interval per task."""
    tasks = results["table"]["tasks"]
    columns = ["model", "method", "condition", "n_seeds"]
    for task in tasks:
        columns += [task, f"{task}_ci_low", f"{task}_ci_high"]
    rows = []
    for r in results["table"]["rows"]:
        row = [r["model"], r["method"], r["condition"], len(r.get("seeds") or []) or 1]
        for task in tasks:
            v = r["values"][task]
            ci = v.get("ci") or [None, None]
            row += [v.get("mean"), ci[0], ci[1]]
        rows.append(row)
    return columns, rows


def conclusion_metrics(results: dict) -> dict[str, float]:
    """Each finding's verdict code (+1 supported, -1 contradicted, 0 otherwise) and headline measure."""
    out: dict[str, float] = {}
    for c in results.get("conclusions") or []:
        name = "/".join(["conclusions", c["id"], *(str(x) for x in (c.get("model"), c.get("method")) if x)])
        out[f"{name}/verdict"] = VERDICT_CODES.get(c["verdict"], 0.0)
        measures = (c.get("evidence") or {}).get("measurements") or []
        if measures and isinstance(measures[0].get("value"), (int, float)):
            out[f"{name}/effect"] = float(measures[0]["value"])
            ci = measures[0].get("ci") or [None, None]
            for bound, value in zip(("ci_low", "ci_high"), ci):
                if isinstance(value, (int, float)):
                    out[f"{name}/{bound}"] = float(value)
    return out


def log_report(results: dict, run_dir: str | Path) -> list[str]:
    """Log the report to the run config's trackers (none: nothing); the tracker names it logged to."""
    names = check_report_to(results["run_config"].get("report_to"))
    if not names:
        return []
    run_dir = Path(run_dir)
    trackers: Trackers = open_trackers(names, "factlearn", f"{run_dir.resolve().name}-report", run_dir / "tracking",
                                       results["run_config"])
    try:
        columns, rows = table_columns_rows(results)
        trackers.log_table("results", columns, rows, step=0)
        trackers.log(conclusion_metrics(results), step=0)
        verdicts = "\n".join(conclusion_lines(results)).strip()
        if verdicts:
            trackers.log_text("verdicts", verdicts, step=0)
    finally:
        opened = trackers.names
        trackers.finish()
    return opened

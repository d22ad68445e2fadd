"""The paper's tables: rows = model / method / training condition, columns = the seven tasks.

Each cell is the 5-shot score of one task: accuracy for multiple choice, exact match for generative
tasks (the paper's metrics), as mean ± std over seeds when a row has more than one seed.
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Iterable

from factlearn.evaluate.tasks import TASKS

# The paper's Table 1 reading order (data.schema); titles and metrics come from each task (Task.title, .headline_metric).
from factlearn.data.schema import TABLE_ORDER  # noqa: E402
CONDITION_ORDER = ("base", "narrative", "referencing", "narrative+forgetting", "referencing+forgetting")
ROW_KEYS = ("model", "method", "condition")


def ordered_tasks(tasks: Iterable[str]) -> list[str]:
    tasks = list(tasks)
    return [t for t in TABLE_ORDER if t in tasks] + [t for t in tasks if t not in TABLE_ORDER]


def metric_of(task: str) -> str:
    """The metric a column shows: the task's headline metric (accuracy for an unknown task)."""
    return TASKS[task].headline_metric if task in TASKS else "acc"


def column_title(task: str) -> str:
    return TASKS[task].title if task in TASKS else task


def table_rows(evaluations: list[dict], tasks: list[str]) -> list[dict]:
    """Group evaluations ({labels..., metrics}) into rows with mean/std/n per task over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for ev in evaluations:
        groups.setdefault(tuple(ev[k] for k in ROW_KEYS), []).append(ev)
    models = list(dict.fromkeys(ev["model"] for ev in evaluations))
    methods = list(dict.fromkeys(ev["method"] for ev in evaluations))

    def order(key: tuple) -> tuple:
        model, method, condition = key
        cond = CONDITION_ORDER.index(condition) if condition in CONDITION_ORDER else len(CONDITION_ORDER)
        return models.index(model), -1 if method == "base" else methods.index(method), cond

    rows = []
    for key in sorted(groups, key=order):
        evs = groups[key]
        values = {}
        for task in tasks:
            xs = [ev["metrics"][task][metric_of(task)] for ev in evs if task in ev.get("metrics", {})]
            values[task] = {"mean": statistics.fmean(xs) if xs else None,
                            "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}
        seeds = sorted({ev["seed"] for ev in evs if ev.get("seed") is not None})
        rows.append({**dict(zip(ROW_KEYS, key)), "seeds": seeds, "values": values})
    return rows


def format_value(v: dict) -> str:
    """`0.750`, `0.750 ± 0.030` over seeds, and the interval when the value has one: `0.750 [0.53, 0.89]`."""
    if v["mean"] is None:
        return "–"
    text = f"{v['mean']:.3f} ± {v['std']:.3f}" if v["std"] is not None else f"{v['mean']:.3f}"
    ci = v.get("ci")
    text = f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else text
    from factlearn.report.forms import mark_suffix

    return (text + " " + BEYOND_MARK if v.get("beyond") else text) + mark_suffix(v)


BEYOND_MARK = "†"
BEYOND_NOTE = (f"{BEYOND_MARK} beyond this model: on the capability control (real countries and capitals) its score is "
               "not above chance, so this task cannot show what finetuning taught; conclusions leave it out.")


def mark_beyond(rows: list[dict], control: dict) -> None:
    """Flag each value whose task the row's model cannot do at all (results["control"][model][task])."""
    if not control:
        return
    for r in rows:
        for task, v in r["values"].items():
            v["beyond"] = bool(control.get(r["model"], {}).get(task, {}).get("beyond", False))


def _has_ci(rows: list[dict]) -> bool:
    return any(v.get("ci") for r in rows for v in r["values"].values())


def to_markdown(rows: list[dict], tasks: list[str], num_fewshot: int = 5) -> str:
    """A GitHub-markdown table, one line per row, with a note on metrics and seeds."""
    head = ["model", "method", "trained on"] + [column_title(t) for t in tasks]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(tasks)) + "|"]
    for r in rows:
        cells = [r["model"], r["method"], r["condition"]] + [format_value(r["values"][t]) for t in tasks]
        lines.append("| " + " | ".join(cells) + " |")
    n_seeds = max((len(r["seeds"]) for r in rows), default=0)
    metrics = ", ".join(f"{column_title(t)} = {t} {metric_of(t)}" for t in tasks)
    note = f"\n{num_fewshot}-shot scores in [0, 1]; {metrics}."
    if n_seeds > 1:
        note += f" Trained rows: mean ± sample std over {n_seeds} seeds."
    if any(v.get("beyond") for r in rows for v in r["values"].values()):
        note += " " + BEYOND_NOTE
    from factlearn.report.forms import mark_notes

    for sentence in mark_notes(rows):
        note += " " + sentence
    if _has_ci(rows):
        note += (" In brackets: the confidence interval (level: `ci_level` in results.json; Wilson or bootstrap "
                 "over items for one seed, Student-t over seed means for several).")
    return "\n".join(lines) + "\n" + note + "\n"


def to_csv(rows: list[dict], tasks: list[str]) -> str:
    """Machine-readable: per task the mean, the std (empty for a single seed) and, when the rows carry
    intervals, `{task}_ci_low` / `{task}_ci_high`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    cis = _has_ci(rows)
    per_task = ("", "_std", "_ci_low", "_ci_high") if cis else ("", "_std")
    control = any("beyond" in v for r in rows for v in r["values"].values())  # a run with a capability control
    marked = any(v.get("marks") for r in rows for v in r["values"].values())
    writer.writerow(["model", "method", "condition", "n_seeds"] + [f"{t}{c}" for t in tasks for c in per_task]
                    + (["beyond_model"] if control else []) + (["marked"] if marked else []))
    for r in rows:
        vals = []
        for t in tasks:
            v = r["values"][t]
            vals += ["" if v["mean"] is None else f"{v['mean']:.6f}", "" if v["std"] is None else f"{v['std']:.6f}"]
            if cis:
                vals += [f"{x:.6f}" for x in v["ci"]] if v.get("ci") else ["", ""]
        beyond = [";".join(t for t in tasks if r["values"][t].get("beyond"))] if control else []
        # "task:wrong form;task:broken by training" (report/forms.py); empty when the row has none
        marks = [";".join(f"{t}:{m}" for t in tasks for m in r["values"][t].get("marks", []))] if marked else []
        writer.writerow([r["model"], r["method"], r["condition"], len(r["seeds"]) or 1] + vals + beyond + marks)
    return buf.getvalue()


def to_rich(rows: list[dict], tasks: list[str], title: str = "5-shot results"):
    """The table for the terminal."""
    from rich.table import Table

    table = Table(title=title)
    for name in ("model", "method", "trained on"):
        table.add_column(name)
    for t in tasks:
        table.add_column(f"{column_title(t)}\n({metric_of(t)})", justify="right")
    for r in rows:
        table.add_row(r["model"], r["method"], r["condition"], *[format_value(r["values"][t]) for t in tasks])
    return table

"""Dose-response: a run's learning curves (its `curve` cells, run/curves.py) as results and evidence.

results["curves"] has one entry per (model, method, condition), pooled over seeds: per budget (epochs,
and training sentences per fact, the axis that makes corpora of different sizes comparable), per
curve task: value, interval at the run's level, items and seeds. The per-item scores behind it become
one Evidence per budget, which the matched-knowledge verdict (report/matched.py) reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from factlearn.report.evidence import Evidence, TaskScores, _item_score
from factlearn.report.tables import metric_of
from factlearn.run.cells import CellStore
from factlearn.stats import score_interval

Condition = tuple[str, str, str]  # (model, method, condition)


@dataclass
class CurveEvidence:
    """Item scores along each condition's curve: (model, method, condition) -> epochs -> task -> TaskScores."""

    points: dict[Condition, dict[int, dict[str, TaskScores]]] = field(default_factory=dict)
    rows_per_fact: dict[Condition, float] = field(default_factory=dict)
    facts: dict[str, dict[int, str]] = field(default_factory=dict)  # task -> doc_index -> fact

    def budgets(self, key: Condition) -> list[int]:
        return sorted(self.points.get(key, {}))

    def at(self, key: Condition, epochs: int) -> dict[str, TaskScores]:
        return self.points[key][epochs]

    def seeds(self, model: str, method: str) -> list:
        """The training seeds the curves of (model, method) were run with (`curve.seeds`, not the run's)."""
        found = {s for key, by_epoch in self.points.items() if key[:2] == (model, method)
                 for tasks in by_epoch.values() for scores in tasks.values() for s in scores.by_seed}
        return sorted(s for s in found if s is not None)


def _read_point(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def curve_evidence(run_dir: str | Path, plan_cells: list[dict]) -> CurveEvidence:
    """The finished curve cells of a run folder, as item scores per budget."""
    store = CellStore(run_dir)
    ev = CurveEvidence()
    for cell in plan_cells:
        if cell["kind"] != "curve" or not store.is_done(cell["key"]):
            continue
        labels = cell["labels"]
        key = (labels["model"], labels["method"], labels["condition"])
        ev.rows_per_fact[key] = float(labels.get("rows_per_fact") or 0.0)
        for point in store.result(cell["key"])["points"]:
            epochs = int(point["epochs"])
            tasks = ev.points.setdefault(key, {}).setdefault(epochs, {})
            for rec in _read_point(store.path(cell["key"]) / "points" / f"epoch_{epochs}.jsonl"):
                task, metric = rec["task"], metric_of(rec["task"])
                scores = tasks.setdefault(task, TaskScores(task, metric))
                scores.by_seed.setdefault(labels.get("seed"), {})[int(rec["doc_index"])] = _item_score(rec, metric)
                if rec.get("fact"):
                    ev.facts.setdefault(task, {})[int(rec["doc_index"])] = str(rec["fact"])
    return ev


def curves_table(ev: CurveEvidence, level: float) -> list[dict]:
    """results["curves"]: per condition, per budget, per task: value, interval, items, seeds."""
    out = []
    for (model, method, condition), by_budget in ev.points.items():
        rows_per_fact = ev.rows_per_fact.get((model, method, condition), 0.0)
        budgets = []
        for epochs in sorted(by_budget):
            tasks = {}
            for task, scores in by_budget[epochs].items():
                per_seed = [list(items.values()) for items in scores.by_seed.values() if items]
                if not per_seed:
                    continue
                s = score_interval(per_seed, level)
                tasks[task] = {"metric": scores.metric, "value": s["mean"], "ci": s["ci"], "n_items": s["n_items"],
                               "n_seeds": s["n_seeds"], "interval": s["method"]}
            budgets.append({"epochs": epochs, "sentences_per_fact": round(epochs * rows_per_fact, 2), "tasks": tasks})
        out.append({"model": model, "method": method, "condition": condition, "rows_per_fact": rows_per_fact,
                    "budgets": budgets})
    return out


def curves_markdown(curves: list[dict]) -> str:
    """results["curves"] as one markdown table: a row per condition and budget, a column per curve task
    (value [interval]), with the budget in epochs and in training sentences per fact (curves.md, terminal)."""
    from factlearn.report.tables import column_title

    tasks = list(dict.fromkeys(t for c in curves for b in c["budgets"] for t in b["tasks"]))
    lines = ["| model | method | condition | epochs | sentences/fact | " + " | ".join(column_title(t) for t in tasks) + " |",
             "|---|---|---|---:|---:|" + "---:|" * len(tasks)]
    for c in curves:
        for b in c["budgets"]:
            cells = []
            for t in tasks:
                v = b["tasks"].get(t)
                cells.append("" if v is None or v["value"] is None else
                             f"{v['value']:.3f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]" if v.get("ci") else f"{v['value']:.3f}")
            lines.append(f"| {c['model']} | {c['method']} | {c['condition']} | {b['epochs']} | "
                         f"{b['sentences_per_fact']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def evidence_at(ev: CurveEvidence, chosen: dict[Condition, int], base: Evidence) -> Evidence:
    """One Evidence holding each chosen condition's scores at its chosen budget; the capability control
    and the answer-form marks come from the run's single-budget evidence `base`."""
    out = Evidence(control=base.control, marked=base.marked, facts=ev.facts)
    for key, epochs in chosen.items():
        for task, scores in ev.at(key, epochs).items():
            out.scores[(*key, task)] = scores
    return out

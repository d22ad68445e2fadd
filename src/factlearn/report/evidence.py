"""The evidence a run's conclusions are drawn from: per-item scores, per-fact probes, ablation items.

Point scores are not enough to conclude anything: intervals and paired tests need the score of
every item (or fact) in every condition. This module gathers them from a run folder into plain
dataclasses, keyed by (model, method, condition[, task]) exactly as the run's cells are labelled:
method "base" / condition "base" is the untrained model (seed None), trained conditions are
"narrative", "referencing", "narrative+forgetting", ...

Sources in a run folder: eval cells write cells/<key>/records.jsonl (one row per item: task,
doc_index and each metric), probe cells keep per-fact ratios in their result.json
(ProbeResult.facts), ablate cells keep per-k item correctness (AblationResult.sweeps[...]["items"]).
The capability control, when the run has one, arrives as results["control"]: see `control_flags`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

Seed = Optional[int]  # None for the base model (it is not trained, so it has no seed)
BASE = ("base", "base")  # (method, condition) of the untrained model


@dataclass
class TaskScores:
    """One condition's item scores on one task: seed -> doc_index -> score of `metric`."""

    task: str
    metric: str
    by_seed: dict[Seed, dict[int, float]] = field(default_factory=dict)


@dataclass
class AblationSweep:
    """One ablated model's bottom-up sweep on one task: item scores at each k, and at both ends."""

    num_layers: int
    bottom_up: dict[int, dict[int, float]]  # k (first k layers reset to base) -> doc_index -> score
    finetuned: dict[int, float]  # nothing reset
    base: dict[int, float]  # everything reset: the base model
    top_down: dict[int, dict[int, float]] = field(default_factory=dict)  # k (last k layers reset) -> items


@dataclass
class Evidence:
    """Everything the conclusions read. Keys: (model, method, condition) plus the task where relevant."""

    scores: dict[tuple[str, str, str, str], TaskScores] = field(default_factory=dict)
    # (model, method, condition) -> seed -> fact id ("head|relation") -> {"comparison", "negation"}
    probes: dict[tuple[str, str, str], dict[Seed, dict[str, dict[str, float]]]] = field(default_factory=dict)
    # (model, method, condition, task) -> seed -> sweep
    ablations: dict[tuple[str, str, str, str], dict[Seed, AblationSweep]] = field(default_factory=dict)
    # (model, task) -> {"beyond": bool, ...}: the capability control on real facts
    control: dict[tuple[str, str], dict] = field(default_factory=dict)
    # (model, method, condition, task) -> why the task is out of that condition's evidence (report/forms.py:
    # answers in the wrong form, or a capability training broke)
    marked: dict[tuple[str, str, str, str], str] = field(default_factory=dict)
    # task -> doc_index -> fact key (records' "fact"): the cluster bootstrap draws a fact's items together
    facts: dict[str, dict[int, str]] = field(default_factory=dict)

    def models(self) -> list[str]:
        keys = [k[0] for k in self.scores] + [k[0] for k in self.probes] + [k[0] for k in self.ablations]
        return list(dict.fromkeys(keys))

    def methods(self, model: str) -> list[str]:
        """The training methods of a model (not "base"), in first-seen order."""
        keys = list(self.scores) + list(self.probes) + list(self.ablations)
        return list(dict.fromkeys(k[1] for k in keys if k[0] == model and k[1] != "base"))

    def tasks(self) -> list[str]:
        return list(dict.fromkeys(k[3] for k in self.scores))

    def beyond(self, model: str, task: str) -> bool:
        """True when the control found `task` beyond `model` (no control entry: not known to be beyond)."""
        return bool(self.control.get((model, task), {}).get("beyond", False))

    def marked_reason(self, model: str, conditions: list[tuple[str, str]], task: str) -> str | None:
        """Why `task` cannot be judged for one of the (method, condition)s (None when it can)."""
        reasons = [self.marked[(model, *mc, task)] for mc in conditions if (model, *mc, task) in self.marked]
        return "; ".join(reasons) or None

    def task_scores(self, model: str, method: str, condition: str, task: str) -> TaskScores | None:
        return self.scores.get((model, method, condition, task))


def pair_items(a: dict[Seed, dict], b: dict[Seed, dict]) -> tuple[list[list], list[list], list[Seed]] | None:
    """Align two conditions item by item, per seed: (a_by_seed, b_by_seed, seeds) or None.

    Seeds pair with the same seed; a condition with a single seed (the base model) pairs with every
    seed of the other. Items are the doc indices (or fact ids) both have, in sorted order.
    """
    if not a or not b:
        return None
    if len(b) == 1 and len(a) >= 1 and set(a) != set(b):
        (only,) = b.values()
        pairs = [(s, a[s], only) for s in a]
    elif len(a) == 1 and set(a) != set(b):
        (only,) = a.values()
        pairs = [(s, only, b[s]) for s in b]
    else:
        pairs = [(s, a[s], b[s]) for s in a if s in b]
    a_by, b_by, seeds = [], [], []
    for s, xa, xb in sorted(pairs, key=lambda p: (p[0] is None, p[0] if p[0] is not None else 0)):
        items = sorted(set(xa) & set(xb), key=str)
        if items:
            a_by.append([xa[i] for i in items])
            b_by.append([xb[i] for i in items])
            seeds.append(s)
    return (a_by, b_by, seeds) if a_by else None


# --------------------------------------------------------------------------- building from a run

def control_flags(control) -> dict[tuple[str, str], dict]:
    """(model, task) -> {"beyond": bool, ...} from results["control"].

    Accepted shapes: {model: {task: {"beyond": bool, ...}}}, {model: {"tasks": {task: {...}}}}, or a list
    of {"model", "task", "beyond", ...}. Anything else yields no flags (nothing known to be beyond).
    """
    flags: dict[tuple[str, str], dict] = {}
    if isinstance(control, list):
        for entry in control:
            if isinstance(entry, dict) and "model" in entry and "task" in entry:
                flags[(entry["model"], entry["task"])] = dict(entry)
    elif isinstance(control, dict):
        for model, tasks in control.items():
            if isinstance(tasks, dict) and isinstance(tasks.get("tasks"), dict):
                tasks = tasks["tasks"]
            if isinstance(tasks, dict):
                for task, entry in tasks.items():
                    if isinstance(entry, dict) and "beyond" in entry:
                        flags[(model, task)] = dict(entry)
    return flags


def marks_index(marks: list[dict]) -> dict[tuple[str, str, str, str], str]:
    """(model, method, condition, task) -> reason, from results["marks"] (report/forms.py)."""
    out: dict[tuple[str, str, str, str], str] = {}
    for m in marks:
        key = (m["model"], m["method"], m["condition"], m["task"])
        out[key] = f"{out[key]}; {m['reason']}" if key in out else m["reason"]
    return out


def _labels(entry: dict) -> tuple[str, str, str]:
    return entry["model"], entry["method"], entry["condition"]


def read_records(cell_dir: Path) -> list[dict]:
    """The per-item rows an eval cell wrote (records.jsonl); empty when the cell kept none."""
    path = cell_dir / "records.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _item_score(record: dict, metric: str) -> float:
    return float(record[metric]) if metric in record else float(bool(record.get("correct")))


def evidence_from_run(run_dir: str | Path, results: dict) -> Evidence:
    """Gather the evidence of a run folder; `results` is report.build.collect_results(run_dir)."""
    from factlearn.report.tables import metric_of
    from factlearn.run.cells import CellStore

    store = CellStore(run_dir)
    ev = Evidence(control=control_flags(results.get("control")), marked=marks_index(results.get("marks", [])))
    for entry in results.get("evaluations", []):
        for rec in read_records(store.path(entry["key"])):
            task = rec["task"]
            metric = metric_of(task)
            scores = ev.scores.setdefault((*_labels(entry), task), TaskScores(task, metric))
            scores.by_seed.setdefault(entry.get("seed"), {})[int(rec["doc_index"])] = _item_score(rec, metric)
            if rec.get("fact"):
                ev.facts.setdefault(task, {})[int(rec["doc_index"])] = str(rec["fact"])
    for entry in results.get("probes", []):
        facts = {f"{f['head']}|{f['relation']}": {"comparison": float(f["comparison"]),
                                                  "negation": float(f["negation"])}
                 for f in entry["result"].get("facts", [])}
        ev.probes.setdefault(_labels(entry), {})[entry.get("seed")] = facts
    for entry in results.get("ablations", []):
        for task, sweep in ablation_sweeps(entry["result"]).items():
            ev.ablations.setdefault((*_labels(entry), task), {})[entry.get("seed")] = sweep
    return ev


def ablation_sweeps(result: dict) -> dict[str, AblationSweep]:
    """Per task, the bottom-up sweep of an AblationResult dict, as item scores (1.0 = correct)."""

    def items(point: dict, task: str) -> dict[int, float]:
        return {int(r["doc_index"]): float(bool(r.get("correct"))) for r in (point.get("items") or {}).get(task, [])}

    sweeps = {}
    entries = result.get("entries", {})
    rows = result.get("sweeps", {}).get("bottom_up", [])
    for task in result.get("tasks", []):
        if "finetuned" not in entries or "all" not in entries or not rows:
            continue
        sweep = AblationSweep(num_layers=int(result["num_layers"]),
                              bottom_up={int(r["k"]): items(r, task) for r in rows},
                              finetuned=items(entries["finetuned"], task), base=items(entries["all"], task),
                              top_down={int(r["k"]): items(r, task)
                                        for r in result.get("sweeps", {}).get("top_down", [])})
        if sweep.finetuned and sweep.base:
            sweeps[task] = sweep
    return sweeps

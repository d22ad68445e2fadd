"""Tasks a condition cannot be judged on: answers in the wrong form, and capabilities training broke.

Two marks, each per (model, method, condition, task) of a trained model, each taking the task out of the
findings' evidence for that condition (conclusions say so, and use the task's likelihood form where it has
one), except where the claim says the marked side is the higher one: both marks can only lower a score
(such answers score as wrong), so there the effect is a lower bound (conclusions.as_lower_bound):

- wrong form: more than `wrong_form_share` (run config, default 0.25) of the condition's generated
  answers are not of the asked-for kind (a reference phrase such as "the former", another entity type,
  empty or other text; factlearn.evaluate.forms). An exact-match score then measures the answer form
  the corpus taught, not the knowledge.
- broken by training: the trained model's capability-control score (real capitals, facts it knew
  before training) is below the base model's, paired over the control items, at `ci_level` (the CI of
  trained - base lies below 0). A low score on such a task says finetuning broke the skill, not that
  the fictional facts failed to transfer.

Counts live in results["answer_forms"] (one entry per eval cell and generated task), the marks in
results["marks"]; tables show each with its own symbol.
"""

from __future__ import annotations

import json
from pathlib import Path

WRONG_FORM, BROKEN = "wrong form", "broken by training"
MARK_SYMBOLS = {WRONG_FORM: "‡", BROKEN: "§"}
MARK_NOTES = {
    WRONG_FORM: ("{symbol} wrong form: more than {share:.0%} of this condition's generated answers are not of the "
                 "asked-for kind (a reference phrase such as \"the former\", another entity type, empty or other "
                 "text; counts in results.json answer_forms), so exact match measures the answer form, not the "
                 "knowledge; conclusions leave it out for this condition and use its likelihood form where it has one."),
    BROKEN: ("{symbol} broken by training: this model's score on the capability control (real facts it knew "
             "before training) fell below the base model's (paired over the control items, at ci_level); "
             "conclusions leave the task out for this condition."),
}


def _world_facts(run_dir: Path) -> list[dict]:
    path = run_dir / "data" / "Facts.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _records(cell_dir: Path) -> list[dict]:
    """An eval cell's records.jsonl (the same file report.evidence reads; read here to keep imports one-way)."""
    path = cell_dir / "records.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def answer_forms(run_dir: str | Path, evaluations: list[dict]) -> list[dict]:
    """One entry per eval cell and generated task: labels, seed, form counts and the wrong-form share.

    A record's own `form` is used when the cell wrote one; older cells are classified here, against the
    run's world (<run>/data/Facts.jsonl), by the same classifier."""
    from factlearn.evaluate.forms import FormClassifier, answer_types, classify_records
    from factlearn.evaluate.tasks import GENERATE, TASKS
    from factlearn.run.cells import CellStore

    run_dir = Path(run_dir)
    store = CellStore(run_dir)
    classifier = FormClassifier(answer_types(_world_facts(run_dir)))
    out = []
    for entry in evaluations:
        by_task: dict[str, list[dict]] = {}
        for rec in _records(store.path(entry["key"])):
            if rec["task"] in TASKS and TASKS[rec["task"]].kind == GENERATE:
                by_task.setdefault(rec["task"], []).append(rec)
        for task, records in by_task.items():
            counts = classify_records(records, classifier)
            out.append({**{k: entry.get(k) for k in ("model", "method", "condition", "seed", "key")},
                        "task": task, **counts})
    return out


def wrong_form_marks(forms: list[dict], share: float) -> list[dict]:
    """The trained (model, method, condition, task) whose wrong-form share, pooled over seeds, exceeds `share`.

    The base model is never marked: it never saw the fictional facts, so its answers are guesses in any
    form, and whether it can answer a task's form at all is the capability control's decision (beyond)."""
    pooled: dict[tuple, list[int]] = {}
    for f in forms:
        if f["method"] == "base":
            continue
        key = (f["model"], f["method"], f["condition"], f["task"])
        wrong = round(f["wrong_form_share"] * f["n"])
        total = pooled.setdefault(key, [0, 0])
        total[0], total[1] = total[0] + wrong, total[1] + f["n"]
    marks = []
    for (model, method, condition, task), (wrong, n) in pooled.items():
        if n and wrong / n > share:
            marks.append({"model": model, "method": method, "condition": condition, "task": task, "mark": WRONG_FORM,
                          "reason": f"{wrong}/{n} generated answers of {condition} ({method}) on {task} are in the "
                                    f"wrong form ({wrong / n:.0%} > wrong_form_share {share:g})"})
    return marks


def _who(run: dict) -> str:
    """`narrative (full, seed 2)`: the seed named, so one note per seed reads as its own evidence."""
    seed = f", seed {run['seed']}" if run.get("seed") is not None else ""
    return f"{run['condition']} ({run['method']}{seed})"


def broken_marks(control_runs: list[dict], level: float) -> list[dict]:
    """Tasks whose control score a trained model lost: paired trained - base over the control items.

    `control_runs`: {"model", "method", "condition", "seed", "records": {task: [record]}} per control
    evaluation, the base model's with method "base". The test is the stats module's paired comparison;
    a task is broken when the CI of (trained - base) lies below 0."""
    from factlearn.stats import paired_comparison

    base = {r["model"]: r["records"] for r in control_runs if r["method"] == "base"}
    marks = []
    for run in control_runs:
        if run["method"] == "base" or run["model"] not in base:
            continue
        for task, records in run["records"].items():
            before = {int(r["doc_index"]): float(bool(r["correct"])) for r in base[run["model"]].get(task, [])}
            after = {int(r["doc_index"]): float(bool(r["correct"])) for r in records}
            items = sorted(set(before) & set(after))
            if not items:
                continue
            c = paired_comparison([[after[i] for i in items]], [[before[i] for i in items]], level)
            if c["ci"][1] < 0:
                marks.append({"model": run["model"], "method": run["method"], "condition": run["condition"],
                              "task": task, "mark": BROKEN, "diff": c["diff"], "ci": list(c["ci"]),
                              "p_value": c["p_value"],
                              "seed": run.get("seed"),
                              "reason": f"{_who(run)} lost the capability control on {task}: "
                                        f"trained - base {c['diff']:+.2f}, CI [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}] "
                                        f"over {len(items)} control items"})
    return marks


def mark_rows(rows: list[dict], marks: list[dict], share: float) -> None:
    """Put each mark on its table value (value["marks"] = [mark, ...], plus the threshold it was judged
    at) for the table writers."""
    by_key: dict[tuple, list[str]] = {}
    for m in marks:
        by_key.setdefault((m["model"], m["method"], m["condition"], m["task"]), []).append(m["mark"])
    for r in rows:
        for task, v in r["values"].items():
            found = by_key.get((r["model"], r["method"], r["condition"], task))
            if found:
                v["marks"] = list(dict.fromkeys(found))
                v["wrong_form_share"] = share


def mark_suffix(value: dict) -> str:
    """The symbols of a table value's marks, e.g. " ‡" (empty when unmarked)."""
    return "".join(" " + MARK_SYMBOLS[m] for m in value.get("marks", []))


def mark_notes(rows: list[dict]) -> list[str]:
    """The explanation of every mark the table shows, one sentence each."""
    marked = [v for r in rows for v in r["values"].values() if v.get("marks")]
    used = list(dict.fromkeys(m for v in marked for m in v["marks"]))
    share = marked[0].get("wrong_form_share", 0.0) if marked else 0.0
    return [MARK_NOTES[m].format(symbol=MARK_SYMBOLS[m], share=share) for m in used]


def add_marks(results: dict, run_dir: str | Path) -> None:
    """results["answer_forms"] and results["marks"] (in place), and the marks on the table's rows."""
    from factlearn.evaluate.forms import DEFAULT_WRONG_FORM_SHARE

    cfg = results.get("run_config", {})
    share = cfg.get("wrong_form_share", DEFAULT_WRONG_FORM_SHARE)
    results["answer_forms"] = answer_forms(run_dir, results.get("evaluations", []))
    marks = wrong_form_marks(results["answer_forms"], share)
    marks += broken_marks(results.get("control_runs", []), results["ci_level"])
    results["marks"] = marks
    results["wrong_form_share"] = share
    if "table" in results:
        mark_rows(results["table"]["rows"], marks, share)

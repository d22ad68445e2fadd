"""The capability control as an evaluation: which tasks can this model answer at all?

The control world (factlearn.data.control) asks the CCA questions about real capitals the model
already knows. A task whose control score is not above chance at the chosen confidence is *beyond
this model*: a low score on it after finetuning says nothing about what finetuning taught, so reports
mark it and conclusions leave it out.

Chance is 1/choices for the choice tasks (letter MC, cloze) and, for generated answers, a uniform guess
among the task's distinct gold answers (1/20 for the capitals of 20 countries): exact match of free
text has no natural chance level, and "guess one of the right kind of answer" is the honest floor.
"""

from __future__ import annotations

from typing import Any, Mapping

from factlearn.errors import UserError
from factlearn.evaluate.tasks import CHOICE_KINDS, Task, get_tasks, TASKS
from factlearn.data.control import control_dataset, CONTROL_CONFIGS, NO_CONTROL_REASON
from factlearn.stats import above_chance, wilson_interval
from factlearn.evaluate.engine import task_docs

BEYOND = "beyond this model"


def control_data() -> dict[str, Any]:
    """The control world's configs that have rows, as datasets keyed by config."""
    return control_dataset()


def control_tasks(names: list[str] | str | None = None) -> list[Task]:
    """The tasks asked for (default: every built-in task with a control) that have control data.

    A task named explicitly that has no control (the animal relation is fictional) is a UserError.
    """
    if names is None:
        return [t for t in get_tasks(None) if t.config in CONTROL_CONFIGS]
    tasks = get_tasks(names)
    missing = [t.name for t in tasks if t.config not in CONTROL_CONFIGS]
    if missing:
        raise UserError(f"task(s) {', '.join(missing)} have no control: {NO_CONTROL_REASON}; "
                        f"drop them from --tasks (tasks with a control: "
                        f"{', '.join(t.name for t in control_tasks())})")
    return tasks


def chance_level(task: Task, docs: list[dict]) -> float:
    """The score of guessing: 1/choices for choice tasks, 1/distinct gold answers for generated answers."""
    if task.kind in CHOICE_KINDS:
        return 1.0 / max(len(docs[0]["choices"]), 1)
    return 1.0 / max(len({task.gold(d) for d in docs}), 1)


def control_counts(metrics: Mapping[str, Mapping[str, float]], records: Mapping[str, list[dict]],
                   dataset: Mapping[str, Any]) -> dict[str, dict]:
    """Per task: the headline score, its successes out of n and the chance score: all the capability
    decision needs. No confidence level here, so a run's control cell (which stores these) is reused
    when only ci_level changes; `capability_of` decides at report time.

    Uses the records' 0/1 `correct` field (the headline metric of every built-in task: acc or exact match).
    """
    out = {}
    for name, recs in records.items():
        task = TASKS[name]
        out[name] = {"metric": task.headline_metric, "value": metrics[name][task.headline_metric],
                     "successes": sum(bool(r["correct"]) for r in recs), "n": len(recs),
                     "chance": chance_level(task, task_docs(dataset, task))}
    return out


def capability_of(counts: Mapping[str, Mapping[str, Any]], level: float) -> dict[str, dict]:
    """Per task: the counts, the exact one-sided binomial test against chance at `level`, the Wilson
    `interval` (with its `level`), and whether the task is beyond the model (not above chance)."""
    out = {}
    for name, c in counts.items():
        test = above_chance(c["successes"], c["n"], c["chance"], level)
        out[name] = {**c, "interval": list(wilson_interval(c["successes"], c["n"], level)), "level": level,
                     "p_value": test["p_value"], "beyond": not test["above"]}
    return out


def capability(metrics: Mapping[str, Mapping[str, float]], records: Mapping[str, list[dict]],
               dataset: Mapping[str, Any], level: float) -> dict[str, dict]:
    """control_counts, then capability_of: the decision for one evaluation (`factlearn eval --control`)."""
    return capability_of(control_counts(metrics, records, dataset), level)

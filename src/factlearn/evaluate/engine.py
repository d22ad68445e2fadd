"""The evaluator: turn tasks and data into prompts, score them with scoring.py, and aggregate metrics.

One code path for every task: a task is data (tasks.py), prompts come from fewshot.py, the model is
only touched through scoring.py (score_choices for multiple choice, generate_until for generation).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from factlearn.errors import UserError
from factlearn.evaluate.fewshot import Prompt, build_prompts
from factlearn.evaluate.metrics import GENERATIVE_METRICS, choice_predictions, mean
from factlearn.evaluate.scoring import generate_until, score_choices
from factlearn.evaluate.tasks import GENERATE, Task, get_tasks


# --------------------------------------------------------------------------- data

def resolve_data(data, configs: Sequence[str], n_countries: int = 20, seed: int = 0) -> Mapping[str, Any]:
    """A mapping config -> rows. `data` is such a mapping (e.g. load_cca's DatasetDict), or a source
    for factlearn.data.load_cca (None = the built-in generator, "hub", or a local folder)."""
    if data is not None and not isinstance(data, (str, Path)):
        return data
    try:
        from factlearn.data import load_cca
    except ImportError:
        raise UserError("factlearn.data is not installed, so no dataset can be loaded; pass `data` as a "
                        "dict of datasets keyed by config name") from None
    return {c: load_cca(c, source=str(data) if data is not None else None, n_countries=n_countries, seed=seed)
            for c in dict.fromkeys(configs)}


def task_docs(dataset: Mapping[str, Any], task: Task) -> list[dict]:
    """The task's documents as plain dicts, in the split's original order."""
    if task.config not in dataset:
        raise UserError(f"the data has no config '{task.config}' needed by task {task.name}; "
                        f"available: {', '.join(map(str, dataset)) or 'none'}")
    rows = dataset[task.config]
    if isinstance(rows, Mapping):  # a DatasetDict of splits rather than one split
        if task.split not in rows:
            raise UserError(f"config '{task.config}' has no split '{task.split}' (has: {', '.join(rows)})")
        rows = rows[task.split]
    docs = rows.to_list() if hasattr(rows, "to_list") else [dict(r) for r in rows]
    missing = [f for f in task.fields if docs and f not in docs[0]]
    if missing:
        raise UserError(f"config '{task.config}' lacks column(s) {', '.join(missing)} needed by task {task.name}; "
                        f"expected columns: {', '.join(task.fields)}")
    if not docs:
        raise UserError(f"config '{task.config}' is empty; task {task.name} needs at least one row")
    return docs


# --------------------------------------------------------------------------- evaluation

@dataclass
class EvalResult:
    """Per-task metrics, per-item records, and timing (seconds) of one evaluation."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    records: dict[str, list[dict]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def _run_generate(model, tokenizer, task: Task, docs: list[dict], prompts: list[Prompt], batch_size: int) -> list[dict]:
    predictions = generate_until(model, tokenizer, [p.context for p in prompts], task.stop, task.max_new_tokens,
                                 batch_size)
    records = []
    for prompt, prediction in zip(prompts, predictions):
        gold = task.gold(docs[prompt.doc_index])
        scores = {m: GENERATIVE_METRICS[m](prediction, gold) for m in task.metrics}
        correct = bool(scores.get("exact_match", GENERATIVE_METRICS["exact_match"](prediction, gold)))
        records.append({"doc_index": prompt.doc_index, "prompt": prompt.context, "prediction": prediction,
                        "gold": gold, "correct": correct, **scores, "fewshot": list(prompt.fewshot_indices)})
    return records


def _run_multiple_choice(model, tokenizer, task: Task, docs: list[dict], prompts: list[Prompt],
                         batch_size: int) -> list[dict]:
    logliks = score_choices(model, tokenizer, [p.context for p in prompts], task.continuations(), batch_size)
    records = []
    for prompt, lls in zip(prompts, logliks):
        gold_index = int(docs[prompt.doc_index]["answer"])
        picks = choice_predictions(lls, task.choice_labels)
        records.append({"doc_index": prompt.doc_index, "prompt": prompt.context,
                        "prediction": task.choice_labels[picks["acc"]], "gold": task.choice_labels[gold_index],
                        "correct": picks["acc"] == gold_index, "acc": float(picks["acc"] == gold_index),
                        "acc_norm": float(picks["acc_norm"] == gold_index), "logliks": lls,
                        "fewshot": list(prompt.fewshot_indices)})
    return records


def evaluate(model, tokenizer, tasks: list[str] | str | None = None, data=None, num_fewshot: int = 5,
             limit: int | None = None, batch_size: int = 16, n_countries: int = 20, seed: int = 0,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Evaluate a model in memory (plain or peft) on tasks; usable inside training (eval-in-the-loop).

    `data`: a dict of datasets keyed by config name (as load_cca(None) returns) or a load_cca source.
    `limit` keeps the first N items of each task in the original's shuffled order (so a limited run
    is a prefix of the full one). The model's train/eval mode is restored afterwards.
    """
    selected = get_tasks(tasks)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, not {batch_size}")
    dataset = resolve_data(data, [t.config for t in selected], n_countries, seed)
    plan = []
    for task in selected:  # build every prompt first: bad input fails before any model time is spent
        docs = task_docs(dataset, task)
        plan.append((task, docs, build_prompts(task, docs, num_fewshot, limit)))
    result = EvalResult(config={"tasks": [t.name for t in selected], "num_fewshot": num_fewshot, "limit": limit,
                                "batch_size": batch_size})
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        for task, docs, prompts in plan:
            t0 = time.perf_counter()
            run = _run_generate if task.kind == GENERATE else _run_multiple_choice
            records = run(model, tokenizer, task, docs, prompts, batch_size)
            result.records[task.name] = records
            result.metrics[task.name] = {m: mean([r[m] for r in records]) for m in task.metrics}
            result.timing[task.name] = time.perf_counter() - t0
            if log:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics[task.name].items())
                log(f"{task.name}: {len(records)} items, {shown} ({result.timing[task.name]:.1f} s)")
    finally:
        if was_training:
            model.train()
    result.timing["total"] = time.perf_counter() - started
    return result

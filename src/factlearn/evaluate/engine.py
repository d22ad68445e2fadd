"""The evaluator: turn tasks and data into prompts, score them with scoring.py, and aggregate metrics.

One code path for every task: a task is data (tasks.py), prompts come from fewshot.py, the model is
only touched through scoring.py (score_choices for letter multiple choice, score_shared for
cloze, generate_until for generation). Every metric is stored with its 95 % interval over items, and
every task with its few-shot contamination (share of items whose shots hold the same fact).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from factlearn.errors import UserError
from factlearn.evaluate.fewshot import SAME_SPLIT, Prompt, build_prompts, check_shots, contamination, fact_keys
from factlearn.evaluate.forms import FormClassifier, answer_types, classify_records
from factlearn.evaluate.metrics import GENERATIVE_METRICS, choice_predictions, mean
from factlearn.evaluate.scoring import generate_until, score_choices, score_shared
from factlearn.evaluate.tasks import CLOZE, GENERATE, Task, get_tasks
from factlearn.data import load_cca
from factlearn.data.custom import facts_configs
from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED
from factlearn.stats import CI_LEVEL, check_level, item_interval


# --------------------------------------------------------------------------- data

def resolve_data(data, configs: Sequence[str], n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED) -> Mapping[str, Any]:
    """A mapping config -> rows. `data` is such a mapping (e.g. load_cca's DatasetDict), or a source
    for factlearn.data.load_cca (None = the built-in generator, "hub", or a local folder).

    "Facts" is optional (contamination is measured with it, evaluation runs without it): a source
    that lacks it is not an error. A facts-file world has no CCA-only configs (indirect reasoning,
    animal commonsense); they are left out, and `available_tasks` skips their tasks.
    """
    if data is not None and not isinstance(data, (str, Path)):
        return data

    source = str(data) if data is not None else None
    have = facts_configs(source)
    out = {}
    for config in dict.fromkeys(configs):
        if have is not None and config not in have:
            continue
        try:
            out[config] = load_cca(config, source=source, n_countries=n_countries, seed=seed)
        except UserError:
            if config != "Facts":
                raise
    return out


def available_tasks(tasks: list[Task], dataset: Mapping[str, Any],
                    log: Callable[[str], None] | None = None) -> list[Task]:
    """The tasks whose config the data has; each other one is skipped with a message (not available
    in this world, e.g. Eval_animal_commonsense for a facts file). None left is a UserError."""
    kept = [t for t in tasks if t.config in dataset]
    for task in tasks:
        if task not in kept and log:
            log(f"{task.name}: skipped, this world has no {task.config} config (the task is not available)")
    if not kept:
        raise UserError(f"none of the tasks {', '.join(t.name for t in tasks)} is available in this world (it has "
                        f"no {', '.join(dict.fromkeys(t.config for t in tasks))} config); choose other tasks "
                        "(`factlearn data show --source WORLD` lists its configs)")
    return kept


def world_entities(dataset: Mapping[str, Any]) -> set[str]:
    """Heads and tails of the data's Facts config (empty without one): what contamination matches on."""
    if "Facts" not in dataset:
        return set()
    rows = dataset["Facts"]
    rows = rows.to_list() if hasattr(rows, "to_list") else [dict(r) for r in rows]
    return {r["head"] for r in rows} | {r["tail"] for r in rows}


def answer_form_classifier(dataset: Mapping[str, Any]) -> FormClassifier:
    """The form classifier of the data's world: its Facts' entity types (none without Facts), yes/no, numbers."""
    rows = dataset["Facts"] if "Facts" in dataset else []
    rows = rows.to_list() if hasattr(rows, "to_list") else [dict(r) for r in rows]
    return FormClassifier(answer_types(rows))


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
    intervals: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # task -> metric -> [low, high] at `level`
    contamination: dict[str, dict] = field(default_factory=dict)  # task -> {"items", "contaminated", "share"}
    capability: dict[str, dict] = field(default_factory=dict)  # control runs only: task -> chance test
    answer_forms: dict[str, dict] = field(default_factory=dict)  # generated tasks: task -> forms.form_counts
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


def _cloze_logliks(model, tokenizer, task: Task, docs: list[dict], prompts: list[Prompt],
                   batch_size: int) -> list[list[float]]:
    """Each choice's text scored as a continuation of the context (lm-eval's requests), the context's
    forward pass shared by all its choices (score_shared)."""
    return score_shared(model, tokenizer, [p.context for p in prompts],
                        [task.doc_continuations(docs[p.doc_index]) for p in prompts], batch_size)


def _run_multiple_choice(model, tokenizer, task: Task, docs: list[dict], prompts: list[Prompt],
                         batch_size: int) -> list[dict]:
    if task.kind == CLOZE:
        logliks = _cloze_logliks(model, tokenizer, task, docs, prompts, batch_size)
    else:
        logliks = score_choices(model, tokenizer, [p.context for p in prompts], task.continuations(), batch_size)
    records = []
    for prompt, lls in zip(prompts, logliks):
        doc = docs[prompt.doc_index]
        gold_index = int(doc["answer"])
        names = task.choice_texts(doc)
        picks = choice_predictions(lls, names)
        records.append({"doc_index": prompt.doc_index, "prompt": prompt.context,
                        "prediction": names[picks["acc"]], "gold": names[gold_index],
                        "correct": picks["acc"] == gold_index, "acc": float(picks["acc"] == gold_index),
                        "acc_norm": float(picks["acc_norm"] == gold_index), "logliks": lls,
                        "fewshot": list(prompt.fewshot_indices)})
    return records


def evaluate(model, tokenizer, tasks: list[str] | str | None = None, data=None, num_fewshot: int = 5,
             limit: int | Mapping[str, int | None] | None = None, batch_size: int = 16, n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED,
             log: Callable[[str], None] | None = None, shots: str = SAME_SPLIT, level: float = CI_LEVEL) -> EvalResult:
    """Evaluate a model in memory (plain or peft) on tasks; usable inside training (eval-in-the-loop).

    `data`: a dict of datasets keyed by config name (as load_cca(None) returns) or a load_cca source.
    `limit` keeps the first N items of each task in the original's shuffled order (so a limited run
    is a prefix of the full one); a mapping gives each task its own limit (missing/None -> all). `shots`: "same-split" (the original) or "other-facts" (no shot about
    the item's own fact). The model's train/eval mode is restored afterwards.
    """
    selected = get_tasks(tasks)
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, not {batch_size}")
    check_shots(shots)
    level = check_level(level)
    dataset = resolve_data(data, [t.config for t in selected] + ["Facts"], n_countries, seed)
    entities = world_entities(dataset)
    classifier = answer_form_classifier(dataset)
    available = available_tasks(selected, dataset, log)
    skipped = [t.name for t in selected if t not in available]
    selected = available
    plan = []
    result = EvalResult(config={"tasks": [t.name for t in selected], **({"skipped": skipped} if skipped else {}), "num_fewshot": num_fewshot, "limit": limit,
                                "batch_size": batch_size, "shots": shots, "level": level})
    for task in selected:  # build every prompt first: bad input fails before any model time is spent
        docs = task_docs(dataset, task)
        keys = fact_keys(task, docs, entities)
        task_limit = limit.get(task.name) if isinstance(limit, Mapping) else limit
        prompts = build_prompts(task, docs, num_fewshot, task_limit, shots=shots, keys=keys)
        result.contamination[task.name] = contamination(prompts, docs, keys)
        plan.append((task, docs, prompts, keys))
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        for task, docs, prompts, keys in plan:
            t0 = time.perf_counter()
            run = _run_generate if task.kind == GENERATE else _run_multiple_choice
            records = run(model, tokenizer, task, docs, prompts, batch_size)
            for r in records:  # the fact an item is about: the report's cluster bootstrap draws facts
                r["fact"] = "|".join(sorted(keys[int(r["doc_index"])]))
            result.records[task.name] = records
            if task.kind == GENERATE:  # which answers are even of the asked-for kind (forms.py)
                result.answer_forms[task.name] = classify_records(records, classifier)
            result.metrics[task.name] = {m: mean([r[m] for r in records]) for m in task.metrics}
            result.intervals[task.name] = {m: _interval([r[m] for r in records], level) for m in task.metrics}
            result.timing[task.name] = time.perf_counter() - t0
            if log:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics[task.name].items())
                log(f"{task.name}: {len(records)} items, {shown} ({result.timing[task.name]:.1f} s)")
    finally:
        if was_training:
            model.train()
    result.timing["total"] = time.perf_counter() - started
    return result


def _interval(values: list[float], level: float) -> list[float]:
    """The item-level interval of a mean score: Wilson for 0/1 scores (acc, exact match), else bootstrap."""
    low, high, _ = item_interval(values, level)
    return [low, high]

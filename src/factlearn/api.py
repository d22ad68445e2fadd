"""The Python API: measure a model trained anywhere, in memory, with the CLI's engine and records.

A facade over the stages (it may import every one of them): load a world, evaluate a model + tokenizer
on chosen tasks (metrics with intervals, per-item records, the same results files as `factlearn eval`),
probe it, and judge the paper's findings from a set of evaluated conditions. docs/python-api.md has
examples; for evaluation *during* someone else's training see factlearn.evaluate.callback.

    from factlearn import api
    world = api.load_world()                         # the built-in generated world
    base = api.evaluate_model(model, tok, world, tasks=["Eval_QA"], out_dir="runs/base-eval")
    trained = api.evaluate_model(model2, tok, world, tasks=["Eval_QA"])
    api.conclusions({("m", "base", "base"): base, ("m", "full", "narrative"): trained})
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from factlearn.analyze.probes import ProbeResult, probe_facts
from factlearn.data import load_cca
from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED
from factlearn.errors import UserError
from factlearn.evaluate import EvalResult, evaluate, get_tasks, save_results
from factlearn.evaluate.callback import FactlearnEvalCallback, check_world_has_tasks
from factlearn.report.conclusions import conclude
from factlearn.report.evidence import Evidence, TaskScores
from factlearn.report.tables import metric_of
from factlearn.stats import CI_LEVEL

__all__ = ["World", "load_world", "evaluate_model", "probe_model", "conclusions", "evidence_from_results",
           "FactlearnEvalCallback", "UserError"]


@dataclass
class World:
    """A loaded world: its configs (config name -> rows) and where it came from."""

    data: Mapping[str, Any]
    source: str | None

    @property
    def configs(self) -> list[str]:
        return list(self.data)

    @property
    def tasks(self) -> list[str]:
        """The tasks this world can be evaluated on (a facts file lacks some CCA-only ones)."""
        from factlearn.evaluate import TASKS

        return [name for name, task in TASKS.items() if task.config in self.data]


def load_world(source: str | Path | None = None, n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED) -> World:
    """A world: None (generated; `n_countries`, `seed`), a facts file (.yaml/.json/.csv), "hub" (the
    published CCA dataset, from the local cache when offline), or a folder written by `factlearn data`."""
    source = None if source is None else str(source)
    return World(load_cca(None, source=source, n_countries=n_countries, seed=seed), source)


def _data(world: World | Mapping | str | None) -> Mapping[str, Any]:
    if isinstance(world, World):
        return world.data
    if world is None or isinstance(world, (str, Path)):
        return load_world(world).data
    return world


def evaluate_model(model, tokenizer, world: World | Mapping | str | None = None,
                   tasks: Sequence[str] | str | None = None, limit: int | None = None, num_fewshot: int = 5,
                   batch_size: int = 16, level: float = CI_LEVEL, out_dir: str | Path | None = None) -> EvalResult:
    """Evaluate an in-memory model (plain or peft) on `tasks` of `world` (default: every task it has).

    Returns the EvalResult (metrics, 95 % intervals, per-item records, contamination). `out_dir`: also
    write results.json + records/ exactly as `factlearn eval` does. A task the world lacks: UserError
    naming it, before any model time or file.
    """
    data = _data(world)
    names = [t.name for t in get_tasks(tasks)] if tasks is not None else World(data, None).tasks
    check_world_has_tasks(data, names)
    result = evaluate(model, tokenizer, tasks=names, data=data, num_fewshot=num_fewshot, limit=limit,
                      batch_size=batch_size, level=level)
    if out_dir is not None:
        save_results(result, out_dir, {"source": "factlearn.api.evaluate_model"})
    return result


def probe_model(model, tokenizer, world: World | Mapping | str | None = None, label: str = "model",
                templates: dict[str, Sequence[str]] | None = None, max_wrong: int | None = None,
                batch_size: int = 32) -> ProbeResult:
    """The comparison and negation ratios of every fact in the world's Facts (factlearn probe's numbers)."""
    data = _data(world)
    if "Facts" not in data:
        raise UserError("this world has no Facts config to probe; load it with api.load_world(...)")
    rows = data["Facts"]
    rows = rows.to_list() if hasattr(rows, "to_list") else [dict(r) for r in rows]
    return probe_facts(model, tokenizer, rows, templates=templates, batch_size=batch_size, label=label,
                       max_wrong=max_wrong)


def evidence_from_results(evaluated: Mapping[tuple, EvalResult],
                          probes: Mapping[tuple, ProbeResult] | None = None) -> Evidence:
    """The conclusions' evidence from in-memory results keyed (model, method, condition[, seed]).

    Conditions are the grid's names: ("base", "base") for the untrained model, then method "full" or
    "lora" with condition "narrative", "referencing", "narrative+forgetting", "narrative+continued".
    """
    ev = Evidence()
    for key, result in evaluated.items():
        model, method, condition, seed = _key(key)
        for task, records in result.records.items():
            metric = metric_of(task)
            scores = ev.scores.setdefault((model, method, condition, task), TaskScores(task, metric))
            scores.by_seed.setdefault(seed, {}).update(
                {int(r["doc_index"]): float(r[metric]) if metric in r else float(bool(r.get("correct")))
                 for r in records})
    for key, probe in (probes or {}).items():
        model, method, condition, seed = _key(key)
        ev.probes.setdefault((model, method, condition), {})[seed] = {
            f"{f['head']}|{f['relation']}": {"comparison": float(f["comparison"]), "negation": float(f["negation"])}
            for f in probe.facts}
    return ev


def _key(key: tuple) -> tuple[str, str, str, int | None]:
    if not isinstance(key, tuple) or len(key) not in (3, 4):
        raise UserError(f"condition key {key!r} must be (model, method, condition) or (model, method, condition, "
                        "seed), e.g. ('smollm2', 'full', 'narrative')")
    return (*key, None) if len(key) == 3 else key


def conclusions(evaluated: Mapping[tuple, EvalResult], probes: Mapping[tuple, ProbeResult] | None = None,
                level: float = CI_LEVEL) -> list[dict]:
    """The paper's findings (F1..F6) judged from these conditions, as `factlearn report` judges a run:
    one dict per finding with its verdict, rule and evidence (a finding lacking cells: not measurable)."""
    return conclude(evidence_from_results(evaluated, probes), level=level)

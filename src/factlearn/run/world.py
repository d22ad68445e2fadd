"""The world of a run: its CCA rows (generated, or from data_source), what identifies them in every cell
key, and the checks that the grid's tasks exist and are large enough in it."""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factlearn.atomic import atomic_write_json, atomic_write_jsonl
from factlearn.errors import UserError
from factlearn.run.cells import stable_hash
from factlearn.run.config import RunConfig


@dataclass
class RunWorld:
    """The CCA data of a run (a DatasetDict keyed by config name) and what identifies it.

    Not factlearn.data.World (the generator's countries and facts): this is the generated rows plus the
    spec that goes into every cell key.
    """

    data: Any
    spec: dict  # n_countries, world_seed, source, fingerprint of the rows


def make_run_world(cfg: RunConfig) -> RunWorld:
    """Generate (or load) the CCA world of the run; its content hash goes into every cell key."""
    from factlearn.data import load_cca
    from factlearn.data.custom import spec_for_source
    from factlearn.data.schema import LIKELIHOOD_CONFIGS

    data = load_cca(None, source=cfg.data_source, n_countries=cfg.n_countries, seed=cfg.world_seed)
    # the likelihood configs are derived from the others: hashing them too would change every existing key
    rows = {name: data[name].to_list() for name in sorted(data.keys()) if name not in LIKELIHOOD_CONFIGS}
    # n_countries sizes the built-in generator only; a data source fixes its own world
    spec = {"source": cfg.data_source, "n_countries": None if cfg.data_source else cfg.n_countries,
            "world_seed": cfg.world_seed, "fingerprint": stable_hash(rows)}
    facts = spec_for_source(cfg.data_source)
    if facts is not None:  # a facts-file world: the report names its relations (CCA keys stay as they were)
        spec["relations"] = [r.name for r in facts.relations]
    return RunWorld(data=data, spec=spec)


def save_run_world(world: RunWorld, run_dir: Path) -> Path:
    """The run's data as JSONL per config under <run>/data/, so results can be traced to rows."""
    folder = run_dir / "data"
    for name in world.data.keys():
        atomic_write_jsonl(folder / f"{name}.jsonl", world.data[name].to_list())
    atomic_write_json(folder / "world.json", world.spec)
    return folder


def available_in_world(cfg: RunConfig, world: RunWorld) -> RunConfig:
    """The run config without the tasks whose config the world lacks (a facts-file world has no CCA-only
    tasks such as Eval_animal_commonsense); what is dropped is said once on stderr."""
    from factlearn.evaluate.tasks import get_tasks

    def keep(tasks: list[str]) -> list[str]:
        return [t.name for t in get_tasks(list(tasks)) if t.config in world.data] if tasks else list(tasks)

    if cfg.curve.budgets is not None:  # asked for by name: a missing curve task is an error, not a skip
        lacking = [t for t in cfg.curve.tasks if t not in keep([t])]
        if lacking:
            raise UserError(f"curve.tasks {lacking} are not in this world (it has no such config); drop them, "
                            f"e.g. curve.tasks={[t for t in cfg.curve.tasks if t not in lacking]}")
    dropped = [t for t in dict.fromkeys([*cfg.tasks, *cfg.ablation.tasks]) if t not in keep([t])]
    if not dropped:
        return cfg
    print(f"factlearn run: {', '.join(dropped)} skipped: this world has no such config (the task is not "
          "available)", file=sys.stderr)
    ablation = dataclasses.replace(cfg.ablation, tasks=keep(cfg.ablation.tasks))
    return dataclasses.replace(cfg, tasks=keep(cfg.tasks), ablation=ablation)


def check_world_fits(cfg: RunConfig, world: RunWorld) -> None:
    """Fail at plan time, before anything is written, if a task has too few items for few-shot sampling.

    Each item is scored with num_fewshot other items of its task as context, so every task needs
    num_fewshot + 1 items. The generator makes a fixed number of items per country and task, so the
    smallest task says how many countries are needed.
    """
    if cfg.num_fewshot == 0:
        return
    need = cfg.num_fewshot + 1
    tasks = sorted(set(cfg.tasks) | set(cfg.ablation.tasks))
    task = min(tasks, key=lambda t: len(world.data[t]))
    have = len(world.data[task])
    if have >= need:
        return
    fix = f"num_fewshot={max(have - 1, 0)} or less"
    if cfg.data_source:
        where = f"in data_source {cfg.data_source}"
    else:
        where = f"with n_countries={cfg.n_countries}"
        if have:
            fix = f"n_countries={math.ceil(need * cfg.n_countries / have)} or more, or {fix}"
    raise UserError(f"num_fewshot={cfg.num_fewshot} needs {need} items per task, but {where} {task} has "
                    f"{have}; set {fix}")

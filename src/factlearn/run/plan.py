"""Planning a `factlearn run`: every cell of the experiment grid, decided before any weight is loaded.

For each model: evaluate and probe the base model; for each method x seed, train on each corpus (and
on the forgetting corpora with active forgetting), then evaluate all tasks, probe, and ablate the
ablation corpora. Planning is cheap and deterministic (it builds the world and reads model configs,
no weights) and writes nothing; runner.execute_plan skips every cell whose key has a finished folder.
Each cell carries its predicted seconds and peak memory per device (estimate.py) on the plan's hardware.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factlearn.atomic import atomic_write_json, atomic_write_jsonl
from factlearn.config import to_dict
from factlearn.errors import UserError
from factlearn.run import estimate, sizing
from factlearn.run.cells import Cell, stable_hash, topological
from factlearn.run.config import RunConfig
from factlearn.train.config import TrainConfig, default_forget_start_layer


@dataclass
class RunWorld:
    """The CCA data of a run (a DatasetDict keyed by config name) and what identifies it.

    Not factlearn.data.World (the generator's countries and facts): this is the generated rows plus the
    spec that goes into every cell key.
    """

    data: Any
    spec: dict  # n_countries, world_seed, source, fingerprint of the rows


@dataclass
class BaseModel:
    """A model spec of the grid, resolved to something loadable, with its identity for cache keys."""

    spec: str
    path: str
    identity: dict
    size: estimate.ModelSize
    display: str


@dataclass
class GridPlan:
    """Everything a run does, decided before any weight is loaded."""

    cfg: RunConfig
    world: RunWorld
    models: dict[str, BaseModel]
    cells: list[Cell]
    # train cell key -> its TrainConfig; forgetting cells get forget.from_model at execution (with_first_pass)
    train_cfgs: dict[str, TrainConfig] = field(default_factory=dict)
    hardware: estimate.Hardware | None = None  # what est_seconds / est_memory are costed for
    estimated_tokens: list[str] = field(default_factory=list)  # models counted as characters/4 (no tokenizer)


def condition_of(corpus: str, forgetting: bool) -> str:
    """The row label of a training condition: `narrative`, `referencing`, `narrative+forgetting`."""
    return corpus.removeprefix("Corpus_") + ("+forgetting" if forgetting else "")


def make_run_world(cfg: RunConfig) -> RunWorld:
    """Generate (or load) the CCA world of the run; its content hash goes into every cell key."""
    from factlearn.data import load_cca

    data = load_cca(None, source=cfg.data_source, n_countries=cfg.n_countries, seed=cfg.world_seed)
    rows = {name: data[name].to_list() for name in sorted(data.keys())}
    # n_countries sizes the built-in generator only; a data source fixes its own world
    spec = {"source": cfg.data_source, "n_countries": None if cfg.data_source else cfg.n_countries,
            "world_seed": cfg.world_seed, "fingerprint": stable_hash(rows)}
    from factlearn.data.custom import spec_for_source

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


def resolve_base_model(spec: str, config_only: bool = False) -> BaseModel:
    """Resolve a model spec and fingerprint its weights (size + mtime), so replaced weights invalidate.

    `config_only` (for --plan): the model's config.json is enough, weights need not exist."""
    from factlearn.models import WEIGHT_FILES, resolve_model_path

    if config_only:
        path, config = sizing.read_model_config(spec)
        size = estimate.size_from_config(config)
    else:
        path = resolve_model_path(spec)
        size = estimate.model_size(path)
    folder = Path(path)
    files = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if name in WEIGHT_FILES or name.endswith(".safetensors") or name == "config.json":
                st = (folder / name).stat()
                files[name] = [st.st_size, st.st_mtime_ns]
    identity = {"spec": spec, "path": str(path), "files": files}
    display = spec if not Path(spec).exists() else Path(spec).name
    return BaseModel(spec=spec, path=str(path), identity=identity, size=size, display=display)


def forget_start_layer(cfg: RunConfig, num_layers: int) -> int:
    """The first reset layer: as configured, else train.config's default (a third of the layers)."""
    start = cfg.forgetting.start_layer
    if start is None:
        start = default_forget_start_layer(num_layers)
    if start >= num_layers:
        raise UserError(f"forgetting.start_layer={start} leaves nothing to reset in a {num_layers}-layer model; "
                        f"choose 1..{num_layers - 1}")
    return start


def ablation_ks(cfg: RunConfig, num_layers: int) -> list[int]:
    """The k grid: as configured, else `points` values evenly spread over 0..num_layers."""
    if cfg.ablation.ks:
        bad = [k for k in cfg.ablation.ks if k > num_layers]
        if bad:
            raise UserError(f"ablation.ks {bad} exceed the model's {num_layers} layers; use values 0..{num_layers}")
        return sorted(set(cfg.ablation.ks))
    points = min(cfg.ablation.points, num_layers + 1)
    return sorted({round(i * num_layers / (points - 1)) for i in range(points)})


def build_train_config(cfg: RunConfig, method: str, base: BaseModel, corpus: str, seed: int,
                       forget_layer: int | None = None) -> TrainConfig:
    """The TrainConfig of one training cell: the method's recipe (+ the corpus's overrides), with the
    cell's model/corpus/seed/world set as typed fields.

    Active forgetting is the original's two-run form: this run copies the plain run's layers below
    `forget_layer`, keeps the upper layers pretrained, and trains another pass with the same recipe.
    The plain run's folder exists only at execution, so forget.from_model stays None here and
    `with_first_pass` sets it; the first pass's cell key stands for it in the cache key.
    """
    from factlearn.config import load_config

    recipe = cfg.recipes[method]
    train_cfg = load_config(TrainConfig, "train", recipe.config,
                            list(recipe.overrides) + list(cfg.corpus_overrides.get(corpus, [])))
    train_cfg = dataclasses.replace(train_cfg, model=base.path, subset=corpus, n_countries=cfg.n_countries,
                                    data_seed=cfg.world_seed, seed=seed, method=method, device=cfg.device)
    if cfg.data_source:  # its world is fixed by the source: n_countries (generator only) must not split the cache
        train_cfg.data_source = cfg.data_source
        train_cfg.n_countries = TrainConfig.n_countries
    train_cfg.check()
    if forget_layer is not None:
        if train_cfg.forget.at_epoch is not None:
            raise UserError(f"recipes.{method} sets forget.at_epoch, but the run's forgetting continues from the "
                            f"plain run's weights; remove forget.at_epoch from recipes.{method}.overrides")
        train_cfg.forget = dataclasses.replace(train_cfg.forget, start_layer=forget_layer)
    return train_cfg


def with_first_pass(train_cfg: TrainConfig, save: str, first_pass: str | None) -> TrainConfig:
    """A cell's TrainConfig made runnable: its output folder and, with forgetting, the first pass's model."""
    ready = copy.deepcopy(train_cfg)
    ready.save = save
    if first_pass is not None:
        ready.forget.from_model = first_pass
    ready.check()
    return ready


def _train_spec(train_cfg) -> dict:
    """The parts of a resolved TrainConfig that decide the trained weights (not where they are saved)."""
    d = to_dict(train_cfg)
    for volatile in ("save", "device", "overwrite", "checkpoint_every", "keep_checkpoints"):
        d.pop(volatile, None)
    d.get("forget", {}).pop("from_model", None)  # set at execution; the first pass's cell key stands for it
    return d


def available_in_world(cfg: RunConfig, world: RunWorld) -> RunConfig:
    """The run config without the tasks whose config the world lacks (a facts-file world has no CCA-only
    tasks such as Eval_animal_commonsense); what is dropped is said once on stderr."""
    from factlearn.evaluate.tasks import get_tasks

    def keep(tasks: list[str]) -> list[str]:
        return [t.name for t in get_tasks(list(tasks)) if t.config in world.data] if tasks else list(tasks)

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


def plan_grid(cfg: RunConfig, world: RunWorld | None = None, config_only: bool = False) -> GridPlan:
    """All cells of the grid, in execution order, with cost predictions. Reads only; writes nothing.

    `config_only` (for --plan): models need only their config.json; without a tokenizer, tokens are
    estimated from characters."""
    from factlearn.run.workers import worker_count

    world = world or make_run_world(cfg)
    cfg = available_in_world(cfg, world)
    check_world_fits(cfg, world)
    device = sizing.plan_hardware(cfg, worker_count(cfg))
    plan = GridPlan(cfg=cfg, world=world, models={}, cells=[], hardware=device)
    limits = {t: cfg.limit_for(t) for t in cfg.tasks}
    eval_spec = {"tasks": list(cfg.tasks), "num_fewshot": cfg.num_fewshot,
                 "limit": cfg.eval_limit if len(set(limits.values())) <= 1 else limits}
    if cfg.shots != "same-split":  # only then part of the key, so earlier runs' cells stay valid
        eval_spec["shots"] = cfg.shots
    control_tasks = _control_tasks(cfg)
    probe_spec = {"templates": probe_templates(cfg.data_source)} if "probe" in cfg.analyses else {}
    for spec in cfg.models:
        base = resolve_base_model(spec, config_only)
        plan.models[spec] = base
        tokenizer, exact = sizing.token_counter(base.path, config_only)
        if not exact:
            plan.estimated_tokens.append(spec)
        items = sizing.eval_items(cfg, world.data, tokenizer, list(cfg.tasks), cfg.limit_for)
        eval_cost = estimate.eval_seconds(base.size, items, cfg.eval_batch_size, device)
        eval_memory = estimate.eval_peak_bytes(base.size, device, batch_size=cfg.eval_batch_size,
                                               ctx_tokens=max((c for _, c, _ in items.values()), default=0))
        n = len(world.data["Facts"]) // 2  # probes: 2n facts x ~3.5 templates x (n tails + 1 negated) prompts
        probe_cost = estimate.eval_seconds(base.size, {"probe": (int(2 * n * 3.5 * (n + 1)), 20.0, True)},
                                           cfg.eval_batch_size, device)
        abl_items = sizing.eval_items(cfg, world.data, tokenizer, list(cfg.ablation.tasks), cfg.ablation.limit)
        ks = ablation_ks(cfg, base.size.num_layers)
        abl_cost = (2 * len(ks) + 2) * (
            estimate.eval_seconds(base.size, abl_items, cfg.eval_batch_size, device) - base.size.load_seconds) \
            + 2 * base.size.load_seconds

        abl = {"tasks": list(cfg.ablation.tasks), "limit": cfg.ablation.limit, "ks": ks,
               "num_fewshot": cfg.num_fewshot}

        def downstream(model_id: dict, labels: dict, train_cell: Cell | None, adapter: float = 0.0) -> None:
            deps = () if train_cell is None else (train_cell.key,)
            plan.cells.append(Cell("eval", {"model": model_id, "eval": eval_spec, "data": world.spec},
                                   labels, deps, est_seconds=eval_cost,
                                   est_memory=eval_memory + adapter * (2 if device.kind == "cuda" else 4)))
            if "probe" in cfg.analyses:
                plan.cells.append(Cell("probe", {"model": model_id, "data": world.spec, "probe": probe_spec},
                                       labels, deps, est_seconds=probe_cost, est_memory=estimate.eval_peak_bytes(
                                           base.size, device, batch_size=cfg.eval_batch_size, ctx_tokens=20,
                                           extra_params=adapter)))
            if ("ablate" in cfg.analyses and train_cell is not None and labels["corpus"] in cfg.ablation.corpora
                    and labels["forget_start_layer"] is None):
                memory = estimate.eval_peak_bytes(base.size, device, batch_size=cfg.eval_batch_size,
                                                  ctx_tokens=max((c for _, c, _ in abl_items.values()), default=0),
                                                  copies=1 if adapter else 3, extra_params=adapter)
                plan.cells.append(Cell("ablate", {"model": model_id, "base": base.identity, "ablation": abl,
                                                  "data": world.spec}, labels, deps, est_seconds=abl_cost,
                                       est_memory=memory))

        base_labels = {"model": base.display, "method": "base", "condition": "base", "corpus": None, "seed": None,
                       "forget_start_layer": None}
        if control_tasks:
            from factlearn.evaluate.control import control_data

            control_items = sizing.eval_items(cfg, control_data(), tokenizer, control_tasks, None)
            control_cost = estimate.eval_seconds(base.size, control_items, cfg.eval_batch_size, device)
            control_memory = estimate.eval_peak_bytes(base.size, device, batch_size=cfg.eval_batch_size,
                                                      ctx_tokens=max(c for _, c, _ in control_items.values()))
            plan.cells.append(Cell("control", {"model": base.identity, "control": {
                "tasks": control_tasks, "num_fewshot": cfg.num_fewshot, "shots": cfg.shots, "level": cfg.ci_level}},
                {**base_labels, "condition": "control"}, (), est_seconds=control_cost, est_memory=control_memory))
        downstream(base.identity, base_labels, None)
        for method in cfg.methods:
            for seed in cfg.seeds:
                conditions = [(c, None) for c in cfg.corpora]
                if cfg.forgetting.enabled and method in cfg.forgetting.methods:
                    conditions += [(c, forget_start_layer(cfg, base.size.num_layers)) for c in cfg.forgetting.corpora]
                first_passes: dict[str, Cell] = {}
                for corpus, forget_layer in conditions:
                    first = first_passes.get(corpus) if forget_layer is not None else None
                    train_cfg = build_train_config(cfg, method, base, corpus, seed, forget_layer)
                    condition = condition_of(corpus, forget_layer is not None)
                    labels = {"model": base.display, "method": method, "condition": condition, "corpus": corpus,
                              "seed": seed, "forget_start_layer": forget_layer}
                    rows, mean_tokens, longest = sizing.corpus_tokens(world, corpus, tokenizer)
                    # LoRA skips the frozen weights' gradients: about a quarter less compute
                    size = base.size if method == "full" else dataclasses.replace(base.size,
                                                                                  params=base.size.params * 0.75)
                    cost = estimate.train_seconds(size, rows, mean_tokens, float(train_cfg.epochs),
                                                  int(train_cfg.batch_size * train_cfg.grad_accum), 1, device)
                    adapter = 0.0 if method == "full" else estimate.lora_params(
                        base.size, train_cfg.lora.r, list(train_cfg.lora.target_modules))
                    memory = estimate.train_peak_bytes(
                        base.size, device, trainable=adapter if method != "full" else None,
                        autocast=device.kind == "cuda" and train_cfg.dtype in ("auto", "bf16", "bfloat16", "fp16",
                                                                               "float16"),
                        micro_rows=train_cfg.batch_size, row_tokens=min(longest, train_cfg.max_length),
                        checkpointing=train_cfg.gradient_checkpointing)
                    spec = {"train": _train_spec(train_cfg), "base": base.identity, "data": world.spec}
                    if first is not None:
                        spec["first_pass"] = first.key
                    cell = Cell("train", spec, labels, deps=(first.key,) if first else (), est_seconds=cost,
                                est_memory=memory)
                    plan.train_cfgs[cell.key] = train_cfg
                    plan.cells.append(cell)
                    if forget_layer is None:
                        first_passes[corpus] = cell
                    downstream({"trained": cell.key}, labels, cell, adapter)
    plan.cells = list(topological(plan.cells))
    return plan


def _control_tasks(cfg: RunConfig) -> list[str]:
    """The run's tasks that have a capability control, in the run's order (none when control=false)."""
    if not cfg.control:
        return []
    from factlearn.evaluate.control import control_tasks

    with_control = {t.name for t in control_tasks()}
    return [name for name in cfg.tasks if name in with_control]


def probe_templates(source: str | None = None) -> dict[str, list[str]]:
    """The probe prompts: a facts file's own (its relations'), else the analyze module's; part of the
    probe cells' key, so edited prompts re-probe."""
    from factlearn.analyze.probes import default_templates
    from factlearn.data.custom import probe_templates as facts_templates

    templates = facts_templates(source) or default_templates()
    return {relation: list(t) for relation, t in templates.items()}

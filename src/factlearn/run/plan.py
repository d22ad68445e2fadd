"""Planning a `factlearn run`: every cell of the experiment grid, decided before any weight is loaded.

For each model: evaluate and probe the base model; for each method x seed, train on each corpus (and
on the forgetting corpora with active forgetting), then evaluate all tasks, probe, and ablate the
ablation corpora. Planning is cheap and deterministic (it builds the world and reads model configs,
no weights) and writes nothing; runner.execute_plan skips every cell whose key has a finished folder.
Each cell carries its predicted seconds and peak memory per device (estimate.py) on the plan's hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

from factlearn.errors import UserError
from factlearn.run import estimate, sizing
from factlearn.run.base_model import BaseModel, resolve_base_model
from factlearn.run.cells import Cell, topological
from factlearn.run.config import RunConfig
from factlearn.run.curves import plan_curve_cell
from factlearn.run.grid import GridPlan
from factlearn.run.recipes import forgets
from factlearn.run.training import cell_train_config, train_spec
from factlearn.run.world import RunWorld, available_in_world, check_world_fits, make_run_world
from factlearn.train.config import default_forget_start_layer


def condition_of(corpus: str, forgetting: bool, continued: bool = False) -> str:
    """The row label of a training condition: `narrative`, `referencing`, `narrative+forgetting`, and
    `narrative+continued` (the second pass with nothing reset: start layer = the layer count)."""
    return corpus.removeprefix("Corpus_") + ("+continued" if continued else "+forgetting" if forgetting else "")


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


@dataclass
class _ModelCosts:
    """One base model's downstream cells: their specs and predicted costs (the same for every trained copy)."""

    eval_spec: dict
    probe_spec: dict
    ablation: dict
    eval_seconds: float
    eval_memory: float
    probe_seconds: float
    ablate_seconds: float
    ablate_ctx: float
    curve_point_seconds: float  # one curve point: the curve tasks evaluated once


def plan_grid(cfg: RunConfig, world: RunWorld | None = None, config_only: bool = False) -> GridPlan:
    """All cells of the grid, in execution order, with cost predictions. Reads only; writes nothing.

    `config_only` (for --plan): models need only their config.json; without a tokenizer, tokens are
    estimated from characters."""
    from factlearn.run.workers import worker_count

    world = world or make_run_world(cfg)
    cfg = available_in_world(cfg, world)
    check_world_fits(cfg, world)
    plan = GridPlan(cfg=cfg, world=world, models={}, cells=[], hardware=sizing.plan_hardware(cfg, worker_count(cfg)))
    for spec in cfg.models:
        base = resolve_base_model(spec, config_only)
        plan.models[spec] = base
        tokenizer, exact = sizing.token_counter(base.path, config_only)
        if not exact:
            plan.estimated_tokens.append(spec)
        _plan_model(plan, base, tokenizer)
    plan.cells = list(topological(plan.cells))
    return plan


def _eval_spec(cfg: RunConfig) -> dict:
    limits = {t: cfg.limit_for(t) for t in cfg.tasks}
    spec = {"tasks": list(cfg.tasks), "num_fewshot": cfg.num_fewshot,
            "limit": cfg.eval_limit if len(set(limits.values())) <= 1 else limits}
    if cfg.shots != "same-split":  # only then part of the key, so earlier runs' cells stay valid
        spec["shots"] = cfg.shots
    return spec


def _model_costs(plan: GridPlan, base: BaseModel, tokenizer) -> _ModelCosts:
    cfg, data, hw, batch = plan.cfg, plan.world.data, plan.hardware, plan.cfg.eval_batch_size
    items = sizing.eval_items(cfg, data, tokenizer, list(cfg.tasks), cfg.limit_for)
    abl_items = sizing.eval_items(cfg, data, tokenizer, list(cfg.ablation.tasks), cfg.ablation.limit)
    ks = ablation_ks(cfg, base.size.num_layers)
    curve_items = (sizing.eval_items(cfg, data, tokenizer, list(cfg.curve.tasks), cfg.curve.limit)
                   if cfg.curve.budgets else {})
    return _ModelCosts(
        eval_spec=_eval_spec(cfg),
        probe_spec={"templates": probe_templates(cfg.data_source)} if "probe" in cfg.analyses else {},
        ablation={"tasks": list(cfg.ablation.tasks), "limit": cfg.ablation.limit, "ks": ks,
                  "num_fewshot": cfg.num_fewshot, "refine_budget": cfg.ablation.refine_budget},
        eval_seconds=estimate.eval_seconds(base.size, items, batch, hw),
        eval_memory=estimate.eval_peak_bytes(base.size, hw, batch_size=batch,
                                             ctx_tokens=max((c for _, c, _ in items.values()), default=0)),
        probe_seconds=estimate.probe_seconds(base.size, len(data["Facts"]), batch, hw),
        ablate_seconds=estimate.ablation_seconds(base.size, abl_items, len(ks), batch, hw),
        ablate_ctx=max((c for _, c, _ in abl_items.values()), default=0),
        curve_point_seconds=estimate.eval_seconds(base.size, curve_items, batch, hw) if curve_items else 0.0)


def _plan_model(plan: GridPlan, base: BaseModel, tokenizer) -> None:
    """The cells of one base model: its control, its own evaluation, and every training condition's."""
    cfg = plan.cfg
    costs = _model_costs(plan, base, tokenizer)
    base_labels = {"model": base.display, "method": "base", "condition": "base", "corpus": None, "seed": None,
                   "forget_start_layer": None}
    control_tasks = _control_tasks(cfg)
    if control_tasks:
        plan.cells.append(_control_cell(plan, base, tokenizer, control_tasks, {**base_labels, "condition": "control"}))
    _downstream(plan, base, costs, base.identity, base_labels, None)
    for method in cfg.methods:
        for seed in cfg.seeds:
            first_passes: dict[str, Cell] = {}
            conditions = [(c, None) for c in cfg.corpora]
            conditions += [(c, forget_start_layer(cfg, base.size.num_layers)) for c in cfg.forgetting.corpora
                           if forgets(cfg, method, c)]
            if cfg.forgetting.continued:  # the same two passes, nothing reset: forgetting's budget-matched control
                conditions += [(c, base.size.num_layers) for c in cfg.forgetting.corpora if forgets(cfg, method, c)]
            for corpus, forget_layer in conditions:
                first = first_passes.get(corpus) if forget_layer is not None else None
                cell, adapter = _train_cell(plan, base, tokenizer, method, corpus, seed, forget_layer, first)
                if forget_layer is None:
                    first_passes[corpus] = cell
                plan_curve_cell(plan, base, tokenizer, cell,
                                None if first is None else plan.train_cfgs[first.key].epochs, costs.curve_point_seconds)
                _downstream(plan, base, costs, {"trained": cell.key}, cell.labels, cell, adapter)
                if control_tasks:  # did training break a skill the base model had? (report/forms.py)
                    plan.cells.append(_control_cell(plan, base, tokenizer, control_tasks, cell.labels,
                                                    {"trained": cell.key}, (cell.key,)))


def _train_cell(plan: GridPlan, base: BaseModel, tokenizer, method: str, corpus: str, seed: int,
                forget_layer: int | None, first: Cell | None) -> tuple[Cell, float]:
    """One training cell (its TrainConfig recorded in the plan) and its adapter's parameter count (0: full)."""
    hw = plan.hardware
    train_cfg = cell_train_config(plan.cfg.train_config(method, corpus), base.path, seed, forget_layer)
    labels = {"model": base.display, "method": method,
              "condition": condition_of(corpus, forget_layer is not None, forget_layer == base.size.num_layers),
              "corpus": corpus, "seed": seed, "forget_start_layer": forget_layer}
    rows, mean_tokens, longest = sizing.corpus_tokens(plan.world, corpus, tokenizer)
    cost = estimate.train_seconds(estimate.trained_size(base.size, method), rows, mean_tokens, float(train_cfg.epochs),
                                  int(train_cfg.batch_size * train_cfg.grad_accum), 1, hw)
    adapter = 0.0 if method == "full" else estimate.lora_params(base.size, train_cfg.lora.r,
                                                                list(train_cfg.lora.target_modules))
    memory = estimate.train_peak_bytes(base.size, hw, trainable=adapter if method != "full" else None,
                                       autocast=estimate.autocasts(hw, train_cfg.dtype),
                                       micro_rows=train_cfg.batch_size,
                                       row_tokens=min(longest, train_cfg.max_length),
                                       checkpointing=train_cfg.gradient_checkpointing)
    spec = {"train": train_spec(train_cfg), "base": base.identity, "data": plan.world.spec}
    if first is not None:
        spec["first_pass"] = first.key
    cell = Cell("train", spec, labels, deps=(first.key,) if first else (), est_seconds=cost, est_memory=memory)
    plan.train_cfgs[cell.key] = train_cfg
    plan.cells.append(cell)
    return cell, adapter


def _downstream(plan: GridPlan, base: BaseModel, costs: _ModelCosts, model_id: dict, labels: dict,
                train_cell: Cell | None, adapter: float = 0.0) -> None:
    """The eval, probe and ablate cells of one model (base or trained)."""
    cfg, hw, world_spec = plan.cfg, plan.hardware, plan.world.spec
    deps = () if train_cell is None else (train_cell.key,)
    plan.cells.append(Cell("eval", {"model": model_id, "eval": costs.eval_spec, "data": world_spec}, labels, deps,
                           est_seconds=costs.eval_seconds,
                           est_memory=costs.eval_memory + estimate.adapter_bytes(hw, adapter)))
    if "probe" in cfg.analyses:
        plan.cells.append(Cell("probe", {"model": model_id, "data": world_spec, "probe": costs.probe_spec}, labels,
                               deps, est_seconds=costs.probe_seconds, est_memory=estimate.eval_peak_bytes(
                                   base.size, hw, batch_size=cfg.eval_batch_size, ctx_tokens=20,
                                   extra_params=adapter)))
    if ("ablate" in cfg.analyses and train_cell is not None and labels["corpus"] in cfg.ablation.corpora
            and labels["forget_start_layer"] is None):
        memory = estimate.eval_peak_bytes(base.size, hw, batch_size=cfg.eval_batch_size, ctx_tokens=costs.ablate_ctx,
                                          copies=1 if adapter else 3, extra_params=adapter)
        plan.cells.append(Cell("ablate", {"model": model_id, "base": base.identity, "ablation": costs.ablation,
                                          "data": world_spec}, labels, deps, est_seconds=costs.ablate_seconds,
                               est_memory=memory))


def _control_cell(plan: GridPlan, base: BaseModel, tokenizer, tasks: list[str], labels: dict,
                  model_id: dict | None = None, deps: tuple[str, ...] = ()) -> Cell:
    """A model (default: the base model) on the real-capitals control (evaluate/control.py)."""
    from factlearn.evaluate.control import control_data

    cfg, hw = plan.cfg, plan.hardware
    items = sizing.eval_items(cfg, control_data(), tokenizer, tasks, None)
    return Cell("control", {"model": model_id or base.identity, "control": {
        "tasks": tasks, "num_fewshot": cfg.num_fewshot, "shots": cfg.shots}},  # the level applies at report time
        labels, deps, est_seconds=estimate.eval_seconds(base.size, items, cfg.eval_batch_size, hw),
        est_memory=estimate.eval_peak_bytes(base.size, hw, batch_size=cfg.eval_batch_size,
                                            ctx_tokens=max(c for _, c, _ in items.values())))


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

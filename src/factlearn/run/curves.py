"""Planning learning curves: one `curve` cell per training condition, next to its training cell.

What a curve point is: the condition's recipe trained again from the base model with the same seed,
data order and warm-up (in steps, the recipe's own), but a constant learning rate after warm-up, and
evaluated at the end of each budget's epoch. With a constant rate the model after N epochs does not
depend on how long the run goes on, so the point at N epochs is the model a separate N-epoch run
would give (tests/test_train_curve.py checks it). The recipe's decaying rate would not allow that,
so the single-budget cells stay as they are and the curve is its own training run.

Forgetting conditions (and the continued control) train their two passes in one run (forget.at_epoch
= the first pass's epochs); their budgets count the epochs after the reset, since before it they are
the narrative curve. Every point records its total epochs.
"""

from __future__ import annotations

import copy
import math

from factlearn.run import estimate, sizing
from factlearn.run.base_model import BaseModel
from factlearn.run.cells import Cell
from factlearn.run.grid import GridPlan
from factlearn.run.training import train_spec
from factlearn.train.config import TrainConfig
from factlearn.train.schedule import warmup_steps

CONSTANT_AFTER_WARMUP = "constant_with_warmup"


def curve_eval_spec(plan: GridPlan) -> dict:
    """What each curve point evaluates (part of the curve cell's key)."""
    cfg = plan.cfg
    return {"tasks": list(cfg.curve.tasks), "num_fewshot": cfg.num_fewshot, "limit": cfg.curve.limit,
            "shots": cfg.shots}


def curve_train_config(cell_cfg: TrainConfig, budgets: list[int], rows: int,
                       first_pass_epochs: int | None) -> TrainConfig:
    """The curve run of one training cell's TrainConfig.

    `first_pass_epochs`: with forgetting, the plain run's epochs; the reset comes after them and each
    budget counts the epochs after the reset (as the recipe's second pass does). None otherwise.
    """
    curve = copy.deepcopy(cell_cfg)
    steps_per_epoch = math.ceil(rows / (cell_cfg.batch_size * cell_cfg.grad_accum))
    curve.warmup_steps = warmup_steps(steps_per_epoch * cell_cfg.epochs, cell_cfg.warmup_ratio)  # the recipe's
    curve.lr_scheduler = CONSTANT_AFTER_WARMUP
    offset = first_pass_epochs or 0
    curve.epochs = offset + budgets[-1]
    curve.curve_epochs = [offset + b for b in budgets]
    if first_pass_epochs is not None:
        curve.forget.at_epoch, curve.forget.from_model = first_pass_epochs, None
    return curve


def plan_curve_cell(plan: GridPlan, base: BaseModel, tokenizer, train_cell: Cell, first_pass_epochs: int | None,
                    eval_seconds_per_point: float) -> Cell | None:
    """The curve cell of `train_cell` (appended to the plan), or None when the run asks for no curve of it."""
    budgets, seeds = plan.cfg.curve.budgets, plan.cfg.curve.seeds
    if not budgets or (seeds is not None and train_cell.labels["seed"] not in seeds):
        return None
    cell_cfg = plan.train_cfgs[train_cell.key]
    corpus = train_cell.labels["corpus"]
    rows, mean_tokens, _ = sizing.corpus_tokens(plan.world, corpus, tokenizer)
    curve_cfg = curve_train_config(cell_cfg, list(budgets), rows, first_pass_epochs)
    train_seconds = estimate.train_seconds(estimate.trained_size(base.size, curve_cfg.method), rows, mean_tokens,
                                           float(curve_cfg.epochs), int(curve_cfg.batch_size * curve_cfg.grad_accum),
                                           1, plan.hardware)
    spec = {"curve": {"train": train_spec(curve_cfg), "budgets": curve_cfg.curve_epochs,
                      "eval": curve_eval_spec(plan)}, "base": base.identity,
            "data": plan.world.spec}
    labels = {**train_cell.labels, "rows_per_fact": rows / max(1, len(plan.world.data["Facts"]))}
    cell = Cell("curve", spec, labels, est_seconds=train_seconds + eval_seconds_per_point * len(curve_cfg.curve_epochs),
                est_memory=train_cell.est_memory)
    plan.train_cfgs[cell.key] = curve_cfg
    plan.cells.append(cell)
    return cell

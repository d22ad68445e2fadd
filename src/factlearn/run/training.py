"""A training cell's TrainConfig: from the run's resolved recipe (run/recipes.py) to runnable.

Two steps, at two times. Planning sets what belongs to the cell (base model, seed, forgetting layer) and
keys the cell by `train_spec`. Execution adds what exists only then (`with_first_pass`): the output
folder and, with active forgetting, the finished first pass's model, which the original's two-run form
continues from.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from factlearn.config import to_dict
from factlearn.train.config import TrainConfig


@dataclass(frozen=True)
class TrackingTarget:
    """Where one training cell logs with the run's `report_to`: one tracker run per cell, all of them in
    the run folder's tracking/ (outside the cell's atomic folder, so TensorBoard sees one log dir)."""

    report_to: tuple[str, ...]
    folder: str
    name: str


def cell_run_name(title: str, key: str) -> str:
    """A tracker run's name for a cell: its title as a slug and its key's hash, unique within a run folder
    (`train-smollm2-135m-full-narrative-seed-1-3f2a9c`)."""
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", title).strip("-")  # a model given as a path has slashes
    return f"{slug}-{key.rsplit('-', 1)[-1][:6]}"


def cell_train_config(recipe: TrainConfig, model_path: str, seed: int, forget_layer: int | None) -> TrainConfig:
    """The recipe for one cell: its base model and seed; with forgetting, the first reset layer (already
    checked against the model by plan.forget_start_layer)."""
    train_cfg = copy.deepcopy(recipe)  # cells share the recipe; none may change another's sections
    train_cfg.model, train_cfg.seed = model_path, seed
    if forget_layer is not None:
        train_cfg.forget.start_layer = forget_layer
    return train_cfg


def with_first_pass(train_cfg: TrainConfig, save: str, first_pass: str | None,
                    tracking: TrackingTarget | None = None) -> TrainConfig:
    """A cell's TrainConfig made runnable: its output folder, with forgetting the first pass's model, and
    with the run's `report_to` where its trackers log.

    Not re-checked: the recipe was checked at load, and start_layer and from_model come together here."""
    ready = copy.deepcopy(train_cfg)
    ready.save = save
    if tracking is not None:
        ready.report_to, ready.tracking_dir, ready.run_name = list(tracking.report_to), tracking.folder, tracking.name
    if first_pass is not None:
        ready.forget.from_model = first_pass
    return ready


def train_spec(train_cfg: TrainConfig) -> dict:
    """The parts of a cell's TrainConfig that decide the trained weights (not where they are saved)."""
    d = to_dict(train_cfg)
    # Where a cell is saved, checkpointed or logged (report_to, tracking_dir) does not change its weights.
    for volatile in ("save", "device", "overwrite", "checkpoint_every", "keep_checkpoints",
                     "report_to", "tracking_dir", "run_name"):
        d.pop(volatile, None)
    # Keys added after cells were cached leave the key alone at their defaults (those cells stay valid);
    # curve_epochs says where a run is evaluated, not what it trains, so it never enters it.
    d.pop("curve_epochs", None)
    if d.get("warmup_steps") is None:
        d.pop("warmup_steps", None)
    d.get("forget", {}).pop("from_model", None)  # set at execution; the first pass's cell key stands for it
    return d

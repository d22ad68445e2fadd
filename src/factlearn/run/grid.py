"""GridPlan: everything a run does, decided before any weight is loaded (made by run/plan.py, executed
by run/runner.py and run/execute.py, which need only this record of it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from factlearn.run import estimate
from factlearn.run.base_model import BaseModel
from factlearn.run.cells import Cell
from factlearn.run.config import RunConfig
from factlearn.run.world import RunWorld
from factlearn.train.config import TrainConfig


@dataclass
class GridPlan:
    """Everything a run does, decided before any weight is loaded."""

    cfg: RunConfig
    world: RunWorld
    models: dict[str, BaseModel]
    cells: list[Cell]
    # train cell key -> its TrainConfig; forgetting cells get forget.from_model at execution (training.with_first_pass)
    train_cfgs: dict[str, TrainConfig] = field(default_factory=dict)
    hardware: estimate.Hardware | None = None  # what est_seconds / est_memory are costed for
    estimated_tokens: list[str] = field(default_factory=list)  # models counted as characters/4 (no tokenizer)

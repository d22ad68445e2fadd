"""Learning-rate schedules and the phases they run in.

A schedule is one of transformers' named schedules with a warmup ratio, as HF Trainer does (or a
fixed warm-up step count, so that warm-up does not scale with the run length). A phase
is a stretch of epochs with one optimizer and one schedule; a forgetting reset starts a new phase,
so the pass after it gets a fresh AdamW state and a fresh warmup + decay, as the original's
second run did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from factlearn.train.config import SCHEDULERS, TrainConfig  # noqa: F401 (SCHEDULERS: named here too)


def warmup_steps(total_steps: int, warmup_ratio: float, fixed: int | None = None) -> int:
    """HF Trainer's rule, ceil(total * ratio), unless a fixed count is given (cfg.warmup_steps).

    A fixed count does not grow with the phase's length, so with a constant learning rate after it
    the first N steps of a long run are those of a short one: a snapshot at epoch N along a run is
    the model an N-epoch run with the same seed would give (a learning-curve point).
    """
    return fixed if fixed is not None else math.ceil(total_steps * warmup_ratio)


def make_scheduler(name: str, optimizer, total_steps: int, warmup_ratio: float, fixed_warmup: int | None = None):
    """A LambdaLR stepping once per optimizer step; linear = warmup then linear decay to 0.

    `fixed_warmup` (cfg.warmup_steps): the warm-up length in steps whatever `total_steps` is; None =
    ceil(total_steps * warmup_ratio). A decaying schedule still depends on `total_steps`.
    """
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(total_steps, warmup_ratio, fixed_warmup),
                         num_training_steps=total_steps)


@dataclass(frozen=True)
class Phase:
    """Epochs [first_epoch, end_epoch) trained with one optimizer and schedule."""

    after_reset: bool  # trains the model after a forgetting reset (the reset itself, if any, opens it)
    first_epoch: int
    end_epoch: int

    @property
    def number(self) -> int:
        """0 before a forgetting reset, 1 after: the `phase` of log rows and checkpoint positions."""
        return int(self.after_reset)


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """No forgetting: one phase. forget.at_epoch=N: epochs [0,N) then [N,epochs). from_model: all after it."""
    forget = cfg.forget
    if forget.start_layer is not None and forget.at_epoch is not None:
        return [Phase(False, 0, forget.at_epoch), Phase(True, forget.at_epoch, cfg.epochs)]
    return [Phase(bool(forget.from_model), 0, cfg.epochs)]

"""Learning-rate schedules and the phases they run in.

A schedule is one of transformers' named schedules with a warmup ratio, as HF Trainer does. A phase
is a stretch of epochs with one optimizer and one schedule; a forgetting reset starts a new phase,
so the pass after it gets a fresh AdamW state and a fresh warmup + decay, as the original's
second run did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from factlearn.train.config import SCHEDULERS, TrainConfig  # noqa: F401 (SCHEDULERS: named here too)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """HF Trainer's rule: ceil(total * ratio)."""
    return math.ceil(total_steps * warmup_ratio)


def make_scheduler(name: str, optimizer, total_steps: int, warmup_ratio: float):
    """A LambdaLR stepping once per optimizer step; linear = warmup then linear decay to 0."""
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(total_steps, warmup_ratio),
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

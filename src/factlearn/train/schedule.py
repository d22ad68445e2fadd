"""Learning-rate schedules: transformers' named schedules with a warmup ratio, as HF Trainer does."""

from __future__ import annotations

import math

# Schedules that take (warmup, total) and nothing else; the others need extra knobs we do not expose.
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "inverse_sqrt")


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """HF Trainer's rule: ceil(total * ratio)."""
    return math.ceil(total_steps * warmup_ratio)


def make_scheduler(name: str, optimizer, total_steps: int, warmup_ratio: float):
    """A LambdaLR stepping once per optimizer step; linear = warmup then linear decay to 0."""
    from transformers import get_scheduler

    return get_scheduler(name, optimizer, num_warmup_steps=warmup_steps(total_steps, warmup_ratio),
                         num_training_steps=total_steps)

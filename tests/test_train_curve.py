"""Learning-curve points: train(on_budget=...) at cfg.curve_epochs, and the claim behind them.

The claim (README): a curve point at N epochs is the model a separate N-epoch run with the same seed
would give. It holds when warm-up is a fixed step count (warmup_steps) and the learning rate after it
is constant; with a schedule that decays over the whole run it does not, and a test shows that too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from factlearn.train import train
from test_train_core import corpus_file, one_thread, read_log, tiny_cfg  # noqa: F401 (fixtures)

CONSTANT = ("lr_scheduler=constant_with_warmup", "warmup_steps=2")


def final_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def max_abs_diff(captured: dict, saved: dict) -> float:
    """Largest weight difference over the saved tensors (a tied lm_head may be absent from the file)."""
    assert set(saved) <= set(captured), set(saved) - set(captured)
    return max(float((captured[k].float() - saved[k].float()).abs().max()) for k in saved)


def snapshot_and_short_run(tiny_model_dir, corpus_file, tmp_path, long_epochs: int, short_epochs: int,
                           *overrides: str) -> tuple[dict, dict]:
    """Weights captured at epoch `short_epochs` of a `long_epochs` run, and a `short_epochs` run's final ones."""
    captured = {}

    def keep(model, tokenizer, epochs_done):
        captured.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "long", f"epochs={long_epochs}",
                   f"curve_epochs=[{short_epochs}]", *overrides), on_budget=keep)
    short = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "short", f"epochs={short_epochs}", *overrides))
    return captured, final_weights(short)


@pytest.mark.parametrize("forget", [(), ("forget.start_layer=1", "forget.at_epoch=1")], ids=["plain", "forgetting"])
def test_a_curve_point_is_the_shorter_run(tiny_model_dir, corpus_file, tmp_path, forget):
    captured, short = snapshot_and_short_run(tiny_model_dir, corpus_file, tmp_path, 3, 2, *CONSTANT, *forget)
    assert max_abs_diff(captured, short) <= 1e-6


@pytest.mark.parametrize("schedule", [("lr_scheduler=linear", "warmup_ratio=0.1"),
                                      ("lr_scheduler=constant_with_warmup", "warmup_ratio=0.1")],
                         ids=["linear-decay", "warmup-ratio"])
def test_a_schedule_that_scales_with_the_run_breaks_the_claim(tiny_model_dir, corpus_file, tmp_path, schedule):
    """linear decays over the whole run; warmup_ratio's warm-up grows with it: epoch 2 of 3 is not a 2-epoch run."""
    captured, short = snapshot_and_short_run(tiny_model_dir, corpus_file, tmp_path, 3, 2, *schedule)
    assert max_abs_diff(captured, short) > 1e-4


def test_on_budget_is_called_at_curve_epochs_in_eval_mode(tiny_model_dir, corpus_file, tmp_path):
    import torch

    calls, models = [], []

    def point(model, tokenizer, epochs_done):
        calls.append((epochs_done, model.training, torch.is_grad_enabled()))
        models.append(model)

    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "run", "epochs=3", "curve_epochs=[1,3]", *CONSTANT),
                on_budget=point)
    assert calls == [(1, False, False), (3, False, False)]
    assert all(m.training for m in models)  # back in train mode after each call
    log = read_log(out)
    points = [r for r in log if r.get("event") == "curve_point"]
    assert points == [{"step": 5, "event": "curve_point", "epochs": 1}, {"step": 15, "event": "curve_point", "epochs": 3}]

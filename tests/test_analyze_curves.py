"""Training curves: parsing the documented train_log.jsonl format, reset markers, bad logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from factlearn.analyze.curves import choose_metrics, plot_training_curves, read_train_log
from factlearn.errors import UserError


def write_log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def forgetting_log(tmp_path, restart_steps: bool = False):
    """Two phases with a reset between; phase 2 either continues or restarts the step counter."""
    rows = []
    for step in range(1, 11):
        rows.append({"step": step, "epoch": step / 5, "loss": 3.0 / step, "lr": 1e-4, "tokens_per_s": 100.0, "phase": 1})
        if step % 5 == 0:
            rows.append({"step": step, "eval": {"Eval_multiple_choice": {"acc": 0.25 + step / 100, "acc_norm": 0.3},
                                                "Eval_QA": {"exact_match": step / 20, "f1": step / 15}}})
    rows.append({"step": 10, "event": "forget_reset", "forget_start_layer": 2})
    for i in range(1, 11):
        step = i if restart_steps else 10 + i
        rows.append({"step": step, "epoch": i / 5, "loss": 2.0 / i, "lr": 1e-4, "tokens_per_s": 100.0, "phase": 2})
        if i % 5 == 0:
            rows.append({"step": step, "eval": {"Eval_multiple_choice": {"acc": 0.4 + i / 50}}})
    return write_log(tmp_path / "train_log.jsonl", rows)


@pytest.mark.parametrize("restart_steps", [False, True])
def test_log_parsed_onto_one_step_axis(tmp_path, restart_steps):
    log = read_train_log(forgetting_log(tmp_path, restart_steps))
    assert len(log.steps) == 20 and len(log.resets) == 1 and len(log.evals) == 4
    xs = [s["x"] for s in log.steps]
    assert xs == list(range(1, 21))  # restarted counters continue the axis
    assert log.resets[0]["x"] == 10
    xs, ys = log.metric_series("Eval_multiple_choice/acc")
    assert xs == [5, 10, 15, 20] and ys == pytest.approx([0.3, 0.35, 0.5, 0.6])
    assert log.metric_series("Eval_QA/exact_match")[0] == [5, 10]


def test_metric_choice(tmp_path):
    log = read_train_log(forgetting_log(tmp_path))
    assert choose_metrics(log, None) == ["Eval_multiple_choice/acc"]
    assert choose_metrics(log, ["exact_match"]) == ["Eval_QA/exact_match"]
    assert choose_metrics(log, ["acc_norm", "Eval_QA/f1"]) == ["Eval_multiple_choice/acc_norm", "Eval_QA/f1"]
    with pytest.raises(UserError, match="available: Eval_multiple_choice/acc"):
        choose_metrics(log, ["Eval_reverse/f1"])


def test_plot_with_reset_and_metric(tmp_path):
    out = plot_training_curves(forgetting_log(tmp_path), tmp_path / "plots" / "curves.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]  # no temp left


def test_plot_title_from_run_config(tmp_path):
    from factlearn.analyze.curves import run_title

    (tmp_path / "config.yaml").write_text("model: smollm2-135m\nsubset: Corpus_referencing\nforget:\n  start_layer: 2\n")
    assert run_title(forgetting_log(tmp_path)) == "smollm2-135m on Corpus_referencing + forgetting (layers ≥ 2)"


def test_loss_only_log(tmp_path):
    path = write_log(tmp_path / "train_log.jsonl", [{"step": i, "loss": 1.0 / i} for i in range(1, 4)])
    log = read_train_log(path)
    assert choose_metrics(log, None) == [] and log.resets == []
    assert plot_training_curves(log, tmp_path / "c.png").stat().st_size > 5_000
    with pytest.raises(UserError, match="no eval lines"):
        choose_metrics(log, ["acc"])


@pytest.mark.parametrize("lines, lineno, what", [
    (['{"step": 1, "loss": 1.0}', '{"step": 2, "loss": 0.9'], 2, "not valid JSON"),
    (['{"step": 1, "loss": 1.0}', '[1, 2]'], 2, "not a JSON object"),
    (['{"loss": 1.0}'], 1, "integer 'step'"),
    (['{"step": 1, "loss": "high"}'], 1, "not a number"),
    (['{"step": 1, "loss": 1.0}', '', '{"step": 2, "lr": 0.1}'], 3, "none of 'loss'"),
])
def test_bad_log_names_line(tmp_path, lines, lineno, what):
    path = tmp_path / "train_log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=rf"train_log.jsonl:{lineno}: .*{what}"):
        read_train_log(path)


def test_empty_log(tmp_path):
    path = tmp_path / "train_log.jsonl"
    path.write_text("\n")
    with pytest.raises(UserError, match="no step lines"):
        read_train_log(path)


def test_cli_curves(run_cli, tmp_path):
    forgetting_log(tmp_path)
    r = run_cli("curves", str(tmp_path), "--metric", "acc")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "curves.png").stat().st_size > 20_000
    assert "1 reset(s)" in r.stdout


@pytest.mark.parametrize("content", ["{broken\n", None])
def test_cli_curves_bad_input(run_cli, tmp_path, content):
    path = tmp_path / "train_log.jsonl"
    if content is not None:
        path.write_text(content)
    r = run_cli("curves", str(path))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("factlearn: error:")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "curves.png").exists()


def test_real_training_log_with_forgetting_and_eval(run_cli, tiny_model_dir, tmp_path):
    """The trainer's own log (forgetting after epoch 1, eval-in-the-loop) parses and plots."""
    from factlearn.train import TrainConfig, train

    cfg = TrainConfig(model=str(tiny_model_dir), subset="Corpus_narrative", n_countries=2, lr=3e-3, epochs=2,
                      batch_size=12, save=str(tmp_path / "run"), device="cpu", eval_every=2,
                      eval_tasks=["Eval_multiple_choice"], eval_limit=2)
    cfg.forget.start_layer, cfg.forget.at_epoch = 2, 1
    out = train(cfg)
    log = read_train_log(out / "train_log.jsonl")
    assert len(log.resets) == 1 and log.resets[0]["forget_start_layer"] == 2
    assert log.steps[0]["x"] < log.resets[0]["x"] < log.steps[-1]["x"]
    assert choose_metrics(log, None) == ["Eval_multiple_choice/acc"] and len(log.evals) >= 2
    r = run_cli("curves", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "curves.png").stat().st_size > 20_000

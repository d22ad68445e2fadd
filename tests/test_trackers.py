"""report_to: training metrics reach real tracker stores (read back with each tracker's own reader),
unknown or missing trackers fail in one line before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factlearn.errors import UserError
from factlearn.tracking import check_report_to, row_metrics
from factlearn.train import load_train_config, train

TEXTS = [f"The capital city of Country{i} is City{i}." for i in range(12)]


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


def step_eval_hook(model, tokenizer, step):
    """A metric that differs per step, so the read-back proves which step each point belongs to."""
    return {"Eval_toy": {"acc": step / 100}}


def tiny_train(tiny_model_dir, corpus_file, tmp_path, *overrides):
    cfg = load_train_config("cpu_small", [f"model={tiny_model_dir}", f"subset={corpus_file}",
                                          f"save={tmp_path / 'out'}", "epochs=2", "batch_size=4", "lr=3e-3",
                                          "eval_every=2", f"tracking_dir={tmp_path / 'tracking'}", *overrides])
    out = train(cfg, eval_hook=step_eval_hook)
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    return out, rows


def test_report_to_is_validated():
    assert check_report_to(["none"]) == [] and check_report_to("tensorboard") == ["tensorboard"]
    with pytest.raises(UserError, match="unknown tracker 'tensorbord'.*tensorboard, wandb, mlflow, trackio or none"):
        load_train_config("cpu_small", ["report_to=[tensorbord]"])
    with pytest.raises(UserError, match="'none' together with wandb"):
        load_train_config("cpu_small", ["report_to=[none,wandb]"])


def test_a_tracker_not_installed_names_the_pip_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"report_to=wandb needs the wandb package.*`pip install wandb`"):
        load_train_config("cpu_small", ["report_to=[wandb]"])


def test_cli_unknown_tracker_is_one_line_exit_2(run_cli, tmp_path):
    result = run_cli("train", "cpu_small", "report_to=[comet]", f"save={tmp_path / 'x'}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown tracker 'comet'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_row_metrics_names():
    assert row_metrics({"step": 3, "loss": 1.5, "lr": 0.1, "tokens_per_s": 9.0, "epoch": 0.5, "phase": 1}) == {
        "train/loss": 1.5, "train/lr": 0.1, "train/tokens_per_s": 9.0, "train/epoch": 0.5}
    assert row_metrics({"step": 2, "eval": {"Eval_QA": {"exact_match": 0.25}}}) == {"eval/Eval_QA/exact_match": 0.25}


def test_tensorboard_and_mlflow_hold_the_logged_curve(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out, rows = tiny_train(tiny_model_dir, corpus_file, tmp_path, "report_to=[tensorboard,mlflow]")
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    evals = {r["step"]: r["eval"]["Eval_toy"]["acc"] for r in rows if "eval" in r}
    assert len(losses) == 6 and set(evals) == {0, 2, 4, 6}

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tracking" / "out"))
    acc.Reload()
    tb_loss = {e.step: e.value for e in acc.Scalars("train/loss")}
    assert tb_loss.keys() == losses.keys()
    assert all(tb_loss[s] == pytest.approx(losses[s], rel=1e-6) for s in losses)
    assert {e.step: round(e.value, 6) for e in acc.Scalars("eval/Eval_toy/acc")} == evals
    assert {"train/lr", "train/tokens_per_s", "summary/final_loss"} <= set(acc.Tags()["scalars"])

    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("factlearn").experiment_id])
    assert run.info.run_name == "out" and run.info.status == "FINISHED"
    assert float(run.data.params["lr"]) == 3e-3 and run.data.params["method"] == "full"
    ml_loss = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/loss")}
    assert ml_loss.keys() == losses.keys() and all(ml_loss[s] == pytest.approx(losses[s]) for s in losses)
    assert {m.step: round(m.value, 6) for m in client.get_metric_history(run.info.run_id, "eval/Eval_toy/acc")} == evals
    mlflow.set_tracking_uri(None)
    # the finished model folder holds only what it did before: trackers write beside it
    assert not any(p.name in ("mlruns", "wandb", "tracking") for p in out.iterdir())


def test_wandb_offline_run_holds_the_metrics(tiny_model_dir, corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _, rows = tiny_train(tiny_model_dir, corpus_file, tmp_path, "report_to=[wandb]", "epochs=1")
    import wandb

    wandb.teardown()  # the wandb-core service writes the run's record file out when it stops
    (run_dir,) = (tmp_path / "tracking" / "wandb").glob("offline-run-*")
    (record_file,) = run_dir.glob("run-*.wandb")
    data = record_file.read_bytes()  # wandb's record log (protobuf): keys and JSON values are plain bytes
    for key in (b"train/loss", b"train/lr", b"train/tokens_per_s", b"eval/Eval_toy/acc", b"summary/final_loss"):
        assert key in data, key
    last_loss = [r for r in rows if "loss" in r][-1]["loss"]
    assert json.dumps(last_loss).encode() in data

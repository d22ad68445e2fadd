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


# -- report_to for a whole grid: a tracker run per training cell, one for the report ---------------------

@pytest.fixture(scope="module")
def tracked_grid(tiny_model_dir, tmp_path_factory):
    from factlearn.cli import _write_report
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid
    from factlearn.run.runner import execute_plan

    out = tmp_path_factory.mktemp("tracked") / "grid"
    overrides = [f"models=[{tiny_model_dir}]", "n_countries=2", "seeds=[1]", "num_fewshot=1", "eval_limit=3",
                 "recipes.full.overrides=[epochs=1,batch_size=8,lr=1e-3]", "forgetting.enabled=false",
                 "analyses=[]", "control=false", "eval_batch_size=8", "curve.budgets=[1]", "curve.limit=3",
                 "curve.tasks=[Eval_QA,Eval_multiple_choice_cloze]", "report_to=[tensorboard]"]
    plan = plan_grid(load_run_config("default", overrides))
    execute_plan(plan, out, profile="test", write_report=_write_report)
    return out, plan


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_a_grid_with_report_to_logs_each_training_cell_and_its_report(tracked_grid):
    from factlearn.run.cells import CellStore
    from factlearn.run.training import cell_run_name

    out, plan = tracked_grid
    store, tracking = CellStore(out), out / "tracking"
    trained = [c for c in plan.cells if c.kind in ("train", "curve")]
    assert len(trained) == 4  # narrative and referencing, each a train cell and a curve cell
    # one TensorBoard run per training cell, named after it; none inside a cell's (atomic) folder
    assert {p.name for p in tracking.iterdir() if p.is_dir()} == {cell_run_name(c.title, c.key) for c in trained} | {
        "grid-report"}
    assert not list((out / "cells").rglob("events.out.tfevents*"))
    for cell in trained:
        scalars = _scalars(tracking / cell_run_name(cell.title, cell.key))
        log = [json.loads(line) for line in
               (store.path(cell.key) / "model" / "train_log.jsonl").read_text().splitlines()]
        losses = {r["step"]: r["loss"] for r in log if "loss" in r}
        assert losses and scalars["train/loss"].keys() == losses.keys()
        assert all(scalars["train/loss"][s] == pytest.approx(losses[s], rel=1e-6) for s in losses)
        if cell.kind == "curve":  # the curve point's scores, at the step it was taken
            (point,) = json.loads((store.path(cell.key) / "result.json").read_text())["points"]
            qa = point["metrics"]["Eval_QA"]["exact_match"]
            (step,) = [r["step"] for r in log if r.get("event") == "curve_point"]
            assert scalars["eval/Eval_QA/exact_match"] == {step: pytest.approx(qa)}
        else:
            assert not any(tag.startswith("eval/") for tag in scalars)

    # the report's run: the verdicts' codes and effects as results.json has them
    results = json.loads((out / "results.json").read_text())
    report = _scalars(tracking / "grid-report")
    f1 = next(c for c in results["conclusions"] if c["id"] == "F1")
    name = f"conclusions/F1/{f1['model']}/{f1['method']}"
    assert report[f"{name}/verdict"][0] == {"supported": 1.0, "contradicted": -1.0}.get(f1["verdict"], 0.0)
    assert report[f"{name}/effect"][0] == pytest.approx(f1["evidence"]["measurements"][0]["value"])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tracking / "grid-report"))
    acc.Reload()
    texts = {tag: acc.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in acc.Tags()["tensors"]}
    verdicts = next(v for k, v in texts.items() if k.startswith("verdicts"))
    assert f"F1 {f1['verdict'].upper()}" in verdicts
    table = next(v for k, v in texts.items() if k.startswith("results"))
    assert table.splitlines()[0].startswith("| model | method | condition | n_seeds | Eval_QA |")
    assert len(table.splitlines()) == 2 + len(results["table"]["rows"])


def test_report_to_of_a_run_is_checked_at_load():
    from factlearn.run.config import load_run_config

    with pytest.raises(UserError, match="unknown tracker 'tensorbord'"):
        load_run_config("default", ["report_to=[tensorbord]"])
    assert load_run_config("default").report_to == ["none"]

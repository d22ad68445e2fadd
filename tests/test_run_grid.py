"""`factlearn run` end to end on the tiny model and a 2-country world: report files, table shape and
values, resume after SIGKILL without redoing finished cells, and invalidation of only affected cells."""

from __future__ import annotations

import csv
import json
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factlearn.run.config import load_run_config
from factlearn.run.plan import plan_grid
from factlearn.report.build import build_report
from factlearn.run.runner import execute_plan

TASKS = ["Eval_QA", "Eval_multiple_choice", "Eval_reverse", "Eval_indirect_reasoning", "Eval_2hop_reasoning",
         "Eval_2hop_reasoning_raw", "Eval_animal_commonsense", "Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze"]


def tiny_overrides(model_dir: Path) -> list[str]:
    """A grid that keeps every stage but takes seconds on the tiny model."""
    return [f"models=[{model_dir}]", "n_countries=2", "seeds=[1]", "num_fewshot=1", "eval_limit=3",
            "recipes.full.overrides=[epochs=2,batch_size=8,lr=1e-3]", "corpus_overrides.Corpus_referencing=[epochs=1]", "ablation.limit=2", "ablation.points=2",
            "eval_batch_size=8"]


def write_config(path: Path, model_dir: Path, extra: list[str] = ()) -> Path:
    from factlearn.config import to_yaml

    path.write_text(to_yaml(load_run_config("default", tiny_overrides(model_dir) + list(extra))))
    return path


def done_markers(run_dir: Path) -> dict[str, int]:
    """Finished cells: a done marker in a cell folder, not in one still being built (.<key>.<random>.tmp)."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (run_dir / "cells").glob("*/done.json")
            if not p.parent.name.startswith(".")}


def kill_after_first_cell(cmd: list[str], run_dir: Path, env: dict) -> dict[str, int]:
    """Start `factlearn run`, SIGKILL it as soon as a cell is done, return the done markers seen then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    while not done_markers(run_dir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return done_markers(run_dir)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "out"
    cfg = load_run_config("default", tiny_overrides(tiny_model_dir))
    outcome = execute_plan(plan_grid(cfg), run_dir, profile="test", write_report=build_report)
    return run_dir, outcome, cfg


def test_grid_writes_every_report_file(tiny_run):
    run_dir, outcome, _ = tiny_run
    for name in ("results.json", "table.md", "table.csv", "report.html", "run_config.yaml", "plan.json"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    kinds = [c["kind"] for c in results["cells"]]
    # base + narrative + referencing + narrative+forgetting: 3 trainings, 4 evals and probes, 2 ablations
    assert kinds.count("train") == 3 and kinds.count("eval") == 4 and kinds.count("probe") == 4
    assert kinds.count("ablate") == 2
    assert not results["missing_cells"] and len(outcome.executed) == len(kinds) and not outcome.reused
    assert results["versions"]["torch"] and results["versions"]["transformers"] and results["versions"]["peft"]
    assert results["run_config"]["n_countries"] == 2
    trains = {t["condition"]: t for t in results["training"]}
    assert set(trains) == {"narrative", "referencing", "narrative+forgetting"}
    assert trains["narrative+forgetting"]["config"]["forget"]["start_layer"] == 1  # a third of 4 layers
    assert all(t["summary"]["steps"] > 0 for t in trains.values())
    plots = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert any(p.startswith("scores_") for p in plots) and any(p.startswith("probes_") for p in plots)
    assert sum(p.startswith("ablation_") for p in plots) == 2 and sum(p.startswith("curve_") for p in plots) == 3


def test_table_shape_and_values_match_results(tiny_run):
    run_dir, _, cfg = tiny_run
    results = json.loads((run_dir / "results.json").read_text())
    with open(run_dir / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["condition"] for r in rows] == ["base", "narrative", "referencing", "narrative+forgetting"]
    # per task: value, std, interval low and high; then the tasks beyond the model by the control, and
    # (only when some score carries an answer-form mark) the marks as task:mark
    has_marks = "marked" in rows[0]
    assert set(TASKS) <= set(rows[0]) and len(rows[0]) == 4 + 4 * len(TASKS) + 1 + has_marks
    marks = [m for r in rows if has_marks and r["marked"] for m in r["marked"].split(";")]
    assert has_marks == bool(marks) and all(m.split(":")[0] in TASKS for m in marks), marks
    assert all(float(row[f"{t}_ci_low"]) <= float(row[t]) <= float(row[f"{t}_ci_high"]) for row in rows for t in TASKS)
    assert rows[0]["beyond_model"] == ";".join(t for t in TASKS if results["control"][rows[0]["model"]].get(t, {}).get("beyond"))
    evals = {e["condition"]: e for e in results["evaluations"]}
    for row in rows:
        for task in TASKS:
            value = float(row[task])
            assert 0.0 <= value <= 1.0
            metric = "acc" if "multiple_choice" in task or task.startswith("Eval_2hop_reasoning") and "raw" not in task \
                else "exact_match"
            assert value == pytest.approx(evals[row["condition"]]["metrics"][task][metric], abs=1e-6)
            assert row[f"{task}_std"] == ""  # one seed: no std
    md_lines = [l for l in (run_dir / "table.md").read_text().splitlines() if l.startswith("|")]
    assert len(md_lines) == 2 + 4 and all(l.count("|") == 3 + len(TASKS) + 1 for l in md_lines)
    # every eval really ran the limited number of items per task (the profile keeps headline tasks whole)
    sizes = {t: len((run_dir / "data" / f"{t}.jsonl").read_text().splitlines()) for t in TASKS}
    expected = {t: sizes[t] if cfg.limit_for(t) is None else min(cfg.limit_for(t), sizes[t]) for t in TASKS}
    assert cfg.limit_for("Eval_QA") is None and cfg.limit_for("Eval_multiple_choice") == 3
    assert all(n == expected[t] for e in results["evaluations"] for t, n in e["items"].items())


def test_report_html_is_self_contained(tiny_run):
    run_dir, _, _ = tiny_run
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(list((run_dir / "plots").glob("*.png")))
    assert 'src="http' not in page and "<link" not in page
    import html

    from factlearn.analyze.probes import ANIMAL_TEMPLATES, CAPITAL_TEMPLATES

    assert all(html.escape(t) in page for t in CAPITAL_TEMPLATES + ANIMAL_TEMPLATES)
    assert "co-occur" in page and "negation" in page


def test_report_command_rebuilds_without_computing(tiny_run):
    run_dir, _, _ = tiny_run
    before = done_markers(run_dir)
    for name in ("report.html", "table.md", "results.json"):
        (run_dir / name).unlink()
    proc = subprocess.run([sys.executable, "-m", "factlearn", "report", str(run_dir)], capture_output=True,
                          text=True, timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert "narrative+forgetting" in proc.stdout  # the table is printed
    assert (run_dir / "report.html").is_file() and (run_dir / "table.md").is_file()
    assert done_markers(run_dir) == before
    bad = subprocess.run([sys.executable, "-m", "factlearn", "report", str(run_dir / "nope")], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "not a factlearn run folder" in bad.stderr


def test_changed_setting_recomputes_only_affected_cells(tiny_run, tmp_path):
    import shutil

    run_dir, first, cfg = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    kinds = {c["key"]: c["kind"] for c in json.loads((copy / "plan.json").read_text())["cells"]}
    base = tiny_overrides(Path(cfg.models[0]))
    # executed for real: a new eval limit recomputes the eval cells only
    outcome = execute_plan(plan_grid(load_run_config("default", base + ["eval_limit=2"])), copy, profile="test",
                           write_report=build_report)
    assert sorted(kinds.get(k, k.split("-")[0]) for k in outcome.executed) == ["eval"] * 4
    # the control has no item limit, so it is reused too
    assert {kinds[k] for k in outcome.reused} == {"train", "probe", "ablate", "control"}
    limited = load_run_config("default", base + ["eval_limit=2"])
    assert all(n <= 2 for e in json.loads((copy / "results.json").read_text())["evaluations"]
               for t, n in e["items"].items() if limited.limit_for(t) is not None)

    # planned only (keys decide what reruns): which cells each change invalidates
    def new_cells(extra: list[str]) -> list[str]:
        plan = plan_grid(load_run_config("default", base + extra))
        return sorted(c.kind + ("/base" if c.labels["method"] == "base" else "") for c in plan.cells
                      if c.key not in kinds)

    assert new_cells([]) == []
    assert new_cells(["ablation.limit=3"]) == ["ablate", "ablate"]
    # every trained model has its own capability control, so a retrained model gets a new control too
    assert new_cells(["corpus_overrides.Corpus_referencing=[epochs=2]"]) == ["ablate", "control", "eval", "probe",
                                                                             "train"]
    # a new narrative recipe retrains narrative, its forgetting continuation and all their downstream cells
    assert new_cells(["recipes.full.overrides=[epochs=2,batch_size=8,lr=2e-3]"]) == sorted(
        ["train"] * 3 + ["eval"] * 3 + ["probe"] * 3 + ["ablate"] * 2 + ["control"] * 3)
    assert new_cells(["forgetting.start_layer=2"]) == ["control", "eval", "probe", "train"]
    assert new_cells(["ci_level=0.9"]) == []  # the level applies at report time: even the control is reused
    assert "eval/base" in new_cells(["world_seed=1"])  # a new world changes every cell


@pytest.mark.multiprocess
def test_killed_run_resumes_without_redoing_finished_cells(tiny_model_dir, tmp_path):
    # a short grid: base eval, narrative training, its eval
    config = write_config(tmp_path / "tiny.yaml", tiny_model_dir, [
        "corpora=[Corpus_narrative]", "forgetting.enabled=false", "analyses=[]",
        "tasks=[Eval_QA,Eval_multiple_choice]"])
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "factlearn", "run", str(config), "--out", str(run_dir)]
    env = dict(os.environ)
    finished = kill_after_first_cell(cmd, run_dir, env)
    plan = json.loads((run_dir / "plan.json").read_text())
    assert finished, "no cell finished before the kill"
    assert len(finished) < len(plan["cells"]), "the run finished before it could be killed"
    assert not (run_dir / "results.json").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = done_markers(run_dir)
    assert len(after) == len(plan["cells"])
    assert all(after[k] == mtime for k, mtime in finished.items())  # finished cells were not rewritten
    invocation = json.loads((run_dir / "last_invocation.json").read_text())
    assert set(invocation["reused"]) == set(finished)
    assert set(invocation["executed"]) == set(after) - set(finished)
    leftovers = [p.name for p in (run_dir / "cells").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_live_training_progress_counts_optimizer_steps_not_log_lines(tiny_model_dir, tmp_path):
    """The progress display's `step i/n` comes from train(on_progress=), so log_every > 1 does not skew it."""
    from factlearn.run.cells import CellStore
    from factlearn.run.execute import CURVE_LOG, CellExecutor

    cfg = load_run_config("default", tiny_overrides(tiny_model_dir) + [
        "corpora=[Corpus_narrative]", "forgetting.enabled=false", "analyses=[]",
        "recipes.full.overrides=[epochs=2,batch_size=8,lr=1e-3,log_every=5]"])
    plan = plan_grid(cfg)
    cell = next(c for c in plan.cells if c.kind == "train")
    store = CellStore(tmp_path)
    executor = CellExecutor(plan, store)
    seen = []
    report = executor._on_train_progress

    def spy(done: int, total: int) -> None:
        report(done, total)
        seen.append(executor.live_fraction())

    executor._on_train_progress = spy
    result = store.execute(cell, lambda folder: executor.run(cell, folder))
    steps = result["summary"]["steps"]
    assert steps > 5 and [done for done, _ in seen] == list(range(steps + 1))
    assert {total for _, total in seen} == {steps}
    assert executor.live_fraction() is None  # nothing shown once the cell is done
    logged = (store.path(cell.key) / CURVE_LOG).read_text().count('"loss"')
    assert logged < steps  # the old count of log lines would have stopped short



def test_intervals_are_named_ci_at_the_stated_level_and_old_folders_still_report(tiny_run, tmp_path):
    """Result keys say `ci` beside `ci_level` (not `ci95` whatever the level); cells store no interval
    (the report computes them), so a folder whose run config predates `ci_level` rebuilds to the same
    results at the default level."""
    run_dir, _, _ = tiny_run
    text = (run_dir / "results.json").read_text()
    new = json.loads(text)
    assert new["ci_level"] == 0.95 and '"ci95"' not in text and '"ci"' in text
    assert all("ci" in v for row in new["table"]["rows"] for v in row["values"].values()) and new["table"]["rows"]
    old_dir = tmp_path / "old"
    shutil.copytree(run_dir, old_dir)
    assert not any("ci95" in f.read_text() or '"ci"' in f.read_text() for f in (old_dir / "cells").glob("*/result.json"))
    plan = json.loads((old_dir / "plan.json").read_text())
    del plan["run_config"]["ci_level"]
    (old_dir / "plan.json").write_text(json.dumps(plan))
    rebuilt = build_report(old_dir)
    assert rebuilt["ci_level"] == 0.95
    assert rebuilt["table"] == new["table"] and rebuilt["conclusions"] == new["conclusions"]

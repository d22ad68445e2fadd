"""`factlearn run` pieces that need no model: config rules, cell keys, ordering, tables, time-left."""

from __future__ import annotations

import time

import pytest

from factlearn.report.tables import TABLE_ORDER

from factlearn.errors import UserError
from factlearn.run.cells import Cell, CellStore, stable_hash, topological
from factlearn.run.config import RunConfig, load_run_config
from factlearn.run.progress import Estimator, format_seconds
from factlearn.report.tables import table_rows, to_csv, to_markdown


def test_profiles_load_and_differ():
    default = load_run_config("default")
    paper = load_run_config("paper")
    assert default.n_countries < paper.n_countries == 20
    assert paper.seeds == [1, 2, 3] and set(paper.methods) == {"full", "lora"}
    assert paper.recipes["full"].config == "finetune_full" and paper.recipes["lora"].config == "finetune_lora"
    assert default.eval_limit is not None and paper.eval_limit is None


def test_default_tasks_are_the_papers_seven_then_the_cloze_additions_and_all_tasks_are_allowed():
    from factlearn.data.schema import CLOZE_OF
    from factlearn.evaluate.tasks import ALL_TASKS, ORIGINAL_TASKS

    assert RunConfig().tasks[:7] == list(TABLE_ORDER) and set(TABLE_ORDER) == set(ORIGINAL_TASKS)
    assert RunConfig().tasks[7:] == list(CLOZE_OF)
    assert load_run_config("default").tasks == RunConfig().tasks
    assert load_run_config("default", [f"tasks=[{','.join(ALL_TASKS)}]"]).tasks == list(ALL_TASKS)


def test_run_config_defaults_are_the_default_profile():
    """RunConfig() and configs/run/default.yaml are one set of defaults: a key given in neither agrees."""
    from factlearn.config import to_dict

    defaults, profile = to_dict(RunConfig()), to_dict(load_run_config("default"))
    assert defaults == profile, {k: (defaults[k], profile[k]) for k in defaults if defaults[k] != profile[k]}
    assert defaults["n_countries"] == 8


def test_recipes_resolve_once_at_load_to_a_checked_train_config_per_method_and_corpus():
    from factlearn.train.config import TrainConfig

    cfg = load_run_config("default", ["methods=[full,lora]"])
    narrative, referencing = cfg.train_config("full", "Corpus_narrative"), cfg.train_config("full", "Corpus_referencing")
    assert isinstance(narrative, TrainConfig) and (narrative.epochs, referencing.epochs) == (5, 1)  # corpus_overrides
    assert (narrative.subset, referencing.subset, narrative.n_countries) == ("Corpus_narrative", "Corpus_referencing", 8)
    lora = cfg.train_config("lora", "Corpus_narrative")
    from factlearn.train.config import load_train_config

    assert (lora.method, lora.lr, lora.epochs) == ("lora", 1e-3, load_train_config("cpu_small").epochs)
    # a bad recipe fails when the run config loads, before any planning
    with pytest.raises(UserError, match="epochs must be >= 1"):
        load_run_config("default", ["recipes.full.overrides=[epochs=0]"])
    with pytest.raises(UserError, match="remove forget.at_epoch from recipes.full.overrides"):
        load_run_config("default", ["recipes.full.overrides=[epochs=5,forget.start_layer=2,forget.at_epoch=1]"])
    # the two-pass forgetting is the grid's own: a recipe that forgets in one run is fine off the forgetting grid
    assert load_run_config("default", ["forgetting.enabled=false", "corpora=[Corpus_narrative]",
                                       "recipes.full.overrides=[epochs=5,forget.start_layer=2,forget.at_epoch=1]"])


def test_planning_parses_no_recipe_and_a_cell_runs_its_resolved_config(tiny_model_dir, monkeypatch):
    """plan_grid reads the TrainConfigs resolved at load; parsing a config there would raise here. The
    runnable config of a forgetting cell is its plan's config plus the output folder and first pass."""
    import factlearn.config
    from factlearn.run.plan import plan_grid
    from factlearn.run.training import with_first_pass

    cfg = load_run_config("default", [f"models=[{tiny_model_dir}]", "n_countries=2", "num_fewshot=1",
                                      "forgetting.start_layer=1"])

    def refuse(*args, **kwargs):
        raise AssertionError("a config was parsed while planning")

    monkeypatch.setattr(factlearn.config, "load_config", refuse)
    monkeypatch.setattr(factlearn.config, "parse_overrides", refuse)
    plan = plan_grid(cfg)
    train = [c for c in plan.cells if c.kind == "train"]
    assert len(train) == 3 and len(plan.train_cfgs) == 3
    forgetting = next(c for c in train if c.labels["forget_start_layer"] is not None)
    ready = with_first_pass(plan.train_cfgs[forgetting.key], save="out/model", first_pass="first/model")
    assert (ready.save, ready.forget.from_model, ready.forget.start_layer) == ("out/model", "first/model", 1)
    ready.check()  # runnable as it stands
    assert plan.train_cfgs[forgetting.key].forget.from_model is None  # the plan's own is untouched


@pytest.mark.parametrize("override, message", [
    ("ci_level=1.5", "ci_level must be a probability strictly between 0 and 1"),
    ("ci_level=0", "ci_level must be a probability strictly between 0 and 1"),
    ("shots=nearby", "unknown shots option 'nearby'"),
    ("tasks=[Eval_QA,Eval_nope]", "tasks has unknown value"),
    ("eval_limit_tasks=[Eval_nope]", "eval_limit_tasks has unknown value"),
    ("methods=[sgd]", "methods has unknown value"),
    ("corpora=[]", "corpora is empty"),
    ("seeds=[1,1]", "duplicates"),
    ("tasks=[Eval_QA,Eval_nope]", "tasks has unknown value"),
    ("eval_limit=0", "eval_limit must be >= 1"),
    ("n_countries=1", "n_countries must be >= 2"),
    ("analyses=[probe,plots]", "analyses has unknown value"),
    ("nonsense=1", "unknown run key"),
    ("parity_margin=1.0", "parity_margin must be a score difference in"),
    ("parity_margin=-0.1", "parity_margin must be a score difference in"),
    ("ablation.refine_budget=0", "refine_budget must be an integer >= 1"),
])
def test_bad_run_configs_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_run_config("default", [override])


def test_continued_control_trains_the_same_two_passes_without_a_reset(tiny_model_dir):
    from factlearn.run.plan import plan_grid
    from factlearn.run.training import with_first_pass

    plan = plan_grid(load_run_config("default", [f"models=[{tiny_model_dir}]", "n_countries=2", "num_fewshot=1",
                                                 "forgetting.start_layer=1", "forgetting.continued=true"]))
    train = {c.labels["condition"]: c for c in plan.cells if c.kind == "train"}
    assert set(train) == {"narrative", "referencing", "narrative+forgetting", "narrative+continued"}
    cont, forget = train["narrative+continued"], train["narrative+forgetting"]
    assert cont.deps == forget.deps == (train["narrative"].key,)  # both continue from the same first pass
    layers = plan.train_cfgs[cont.key].forget.start_layer
    assert layers == 4 and plan.train_cfgs[forget.key].forget.start_layer == 1  # 4 of 4 layers: nothing reset
    assert plan.train_cfgs[cont.key].epochs == plan.train_cfgs[forget.key].epochs  # equal training
    with_first_pass(plan.train_cfgs[cont.key], save="o", first_pass="f").check_against_model(4)
    assert load_run_config("default").forgetting.continued is False  # the quick profile's 15 minutes
    assert load_run_config("cpu-full").forgetting.continued is True


def test_forgetting_needs_its_corpus_in_the_grid():
    with pytest.raises(UserError, match="forgetting.corpora"):
        load_run_config("default", ["corpora=[Corpus_referencing]"])
    cfg = load_run_config("default", ["corpora=[Corpus_referencing]", "forgetting.enabled=false"])
    assert cfg.corpora == ["Corpus_referencing"]


def test_cell_key_depends_on_spec_not_labels():
    a = Cell("eval", {"model": {"trained": "train-1"}, "limit": 4}, labels={"seed": 1})
    b = Cell("eval", {"limit": 4, "model": {"trained": "train-1"}}, labels={"seed": 2})
    c = Cell("eval", {"model": {"trained": "train-2"}, "limit": 4})
    assert a.key == b.key  # dict order and labels do not matter
    assert a.key != c.key and a.key.startswith("eval-")
    assert stable_hash({"x": [1, 2]}) != stable_hash({"x": [2, 1]})


def test_topological_puts_dependencies_first_and_drops_duplicates():
    train = Cell("train", {"n": 1})
    ev = Cell("eval", {"m": train.key}, deps=(train.key,))
    again = Cell("eval", {"m": train.key}, deps=(train.key,))
    order = list(topological([ev, train, again]))
    assert [c.kind for c in order] == ["train", "eval"]


def test_failed_cell_leaves_no_folder(tmp_path):
    store = CellStore(tmp_path)
    cell = Cell("eval", {"x": 1})

    def work(folder):
        (folder / "half.txt").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.execute(cell, work)
    assert not store.is_done(cell.key) and not store.path(cell.key).exists()
    result = store.execute(cell, lambda folder: {"value": 3})
    assert store.is_done(cell.key) and store.result(cell.key) == {"value": 3}
    assert store.info(cell.key)["kind"] == "eval"


def test_second_run_on_same_folder_is_refused(tmp_path):
    store = CellStore(tmp_path)
    with store.lock():
        with pytest.raises(UserError, match="another factlearn run"):
            with CellStore(tmp_path).lock():
                pass
    with CellStore(tmp_path).lock():  # released after the first one ends
        pass


def _ev(condition, seed, qa, mc, method="full"):
    return {"model": "m", "method": method, "condition": condition, "seed": seed,
            "metrics": {"Eval_QA": {"exact_match": qa, "f1": qa}, "Eval_multiple_choice": {"acc": mc, "acc_norm": mc}}}


def test_table_mean_and_std_over_seeds():
    tasks = ["Eval_QA", "Eval_multiple_choice"]
    evs = [_ev("referencing", 1, 0.2, 0.5), _ev("narrative", 1, 0.5, 0.25), _ev("narrative", 2, 0.7, 0.25),
           {**_ev("base", None, 0.0, 0.25), "method": "base"}]
    rows = table_rows(evs, tasks)
    assert [r["condition"] for r in rows] == ["base", "narrative", "referencing"]
    narrative = rows[1]
    assert narrative["values"]["Eval_QA"]["mean"] == pytest.approx(0.6)
    assert narrative["values"]["Eval_QA"]["std"] == pytest.approx(0.1414, abs=1e-3)
    assert narrative["seeds"] == [1, 2] and rows[2]["values"]["Eval_QA"]["std"] is None
    md = to_markdown(rows, tasks)
    assert "0.600 ± 0.141" in md and "| m | full | referencing | 0.200 | 0.500 |" in md
    csv_lines = to_csv(rows, tasks).strip().splitlines()
    assert csv_lines[0].split(",") == ["model", "method", "condition", "n_seeds", "Eval_QA", "Eval_QA_std",
                                       "Eval_multiple_choice", "Eval_multiple_choice_std"]
    assert len(csv_lines) == 1 + 3


def test_estimator_scales_remaining_cells_by_measured_time():
    cells = [Cell("train", {"i": i}, est_seconds=10.0) for i in range(3)] + [Cell("eval", {"i": 0}, est_seconds=5.0)]
    est = Estimator(cells)
    assert est.seconds_left() == pytest.approx(35.0)
    est.finish(cells[0], 20.0)  # training is twice as slow as predicted
    assert est.seconds_left() == pytest.approx(2 * 20.0 + 5.0 * 2.0)  # eval has no evidence yet: pooled ratio
    est.finish(cells[3], 5.0)
    assert est.seconds_left() == pytest.approx(40.0)
    est.finish(cells[1], None)  # reused from cache: removes work, adds no evidence
    assert est.seconds_left() == pytest.approx(20.0)
    est.start(cells[2])
    time.sleep(0.05)
    assert est.seconds_left() < 20.0
    assert format_seconds(125) == "2m05s" and format_seconds(7) == "7s"


def test_too_small_world_is_refused_at_plan_time_and_nothing_is_written(tmp_path):
    """n_countries=3 gives Eval_2hop_reasoning_raw 3 items; 5-shot needs 6. One line naming the settings."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "factlearn", "run", "n_countries=3", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=os.environ)
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("factlearn: error:")]
    assert len(error) == 1 and "Traceback" not in proc.stderr
    assert "Eval_2hop_reasoning_cloze has 3" in error[0]
    assert "n_countries=6 or more" in error[0] and "num_fewshot=2 or less" in error[0]
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_the_control_stores_counts_and_its_capability_is_decided_at_the_reports_level():
    """ci_level is not in the control cell's key; the report decides `beyond` from the stored counts at
    the run's level, and a run folder from before (capability with `ci95`, no counts) reads as it was."""
    from factlearn.evaluate.control import capability_of
    from factlearn.report.build import _capability

    # 5 of 20 right against chance 0.1: one-sided binomial p ~ 0.043, above chance at 0.95, not at 0.99
    counts = {"Eval_QA": {"metric": "exact_match", "value": 0.25, "successes": 5, "n": 20, "chance": 0.1}}
    at95 = _capability({"metrics": {}, "counts": counts}, 0.95)["Eval_QA"]
    at99 = _capability({"metrics": {}, "counts": counts}, 0.99)["Eval_QA"]
    assert (at95["beyond"], at99["beyond"]) == (False, True)
    assert (at95["level"], at99["level"]) == (0.95, 0.99) and "ci95" not in at95
    assert at99["interval"][0] < at95["interval"][0] < 0.25 < at95["interval"][1] < at99["interval"][1]
    assert capability_of(counts, 0.95) == {"Eval_QA": at95}
    old = {"Eval_QA": {"metric": "exact_match", "value": 0.25, "ci95": [0.11, 0.47], "n": 20, "chance": 0.1,
                       "p_value": 0.043, "beyond": False}}
    assert _capability({"metrics": {}, "capability": old}, 0.99) == old


def test_tracker_settings_do_not_enter_a_training_cells_key():
    """report_to / tracking_dir only say where a run logs; cells cached before them keep their keys."""
    import dataclasses

    from factlearn.run.training import train_spec
    from factlearn.train.config import TrainConfig

    plain = TrainConfig()
    logged = dataclasses.replace(plain, report_to=["tensorboard"], tracking_dir="/tmp/somewhere")
    assert stable_hash(train_spec(plain)) == stable_hash(train_spec(logged))
    assert "report_to" not in train_spec(logged) and "tracking_dir" not in train_spec(logged)
    # and a setting that does change the weights still changes the key
    assert stable_hash(train_spec(plain)) != stable_hash(train_spec(dataclasses.replace(plain, lr=plain.lr * 2)))

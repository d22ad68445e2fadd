"""Dose-response: the matched-knowledge verdict comes out each way under built evidence, and bad curve
settings are one line, exit 2, nothing written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from factlearn.report.conclusions import Judge
from factlearn.report.dose import CurveEvidence
from factlearn.report.evidence import BASE, Evidence, TaskScores
from factlearn.report.fairness import NOT_COMPARABLE
from factlearn.report.matched import f3_matched, forgetting_curve, matched_budgets

MODEL, METHOD = "m", "full"
QA, REASON = "Eval_QA", "Eval_indirect_reasoning_cloze"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def scores(task: str, share: float, n: int, seed=1) -> TaskScores:
    """n items, the first round(share * n) right."""
    k = round(share * n)
    return TaskScores(task, "acc", {seed: {i: float(i < k) for i in range(n)}})


def curve(levels: dict[int, tuple[float, float]]) -> dict:
    """epochs -> (QA share, reasoning share) as per-task item scores (40 QA items, 60 reasoning items)."""
    return {e: {QA: scores(QA, q, 40), REASON: scores(REASON, r, 60)} for e, (q, r) in levels.items()}


def judge(ref: dict, narr: dict, base_qa: float = 0.0, extra: dict | None = None) -> tuple[Judge, CurveEvidence]:
    curves = CurveEvidence(points={(MODEL, METHOD, "referencing"): curve(ref), (MODEL, METHOD, "narrative"): curve(narr),
                                   **(extra or {})},
                           rows_per_fact={(MODEL, METHOD, "referencing"): 48.0, (MODEL, METHOD, "narrative"): 9.0})
    base = Evidence(scores={(MODEL, *BASE, QA): scores(QA, base_qa, 40, seed=None)})
    return Judge(base, 0.95, n_boot=400, parity_margin=0.15), curves


# Narrative learns fast; referencing slowly. At equal epochs narrative always knows more, so only a
# comparison at matched knowledge is fair: referencing at 3 epochs (QA 0.6) against narrative at 2 (0.6).
NARR = {1: (0.3, 0.2), 2: (0.6, 0.3), 3: (0.9, 0.4)}


def test_matched_budgets_pair_the_highest_common_knowledge():
    j, curves = judge({1: (0.1, 0.5), 2: (0.3, 0.6), 3: (0.6, 0.8)}, NARR)
    match, _, _ = matched_budgets(curves, j.ev, MODEL, METHOD, 0.15)
    assert match["task"] == QA and match["referencing"][0] == 3 and match["narrative"][0] == 2


def test_referencing_better_at_matched_knowledge_is_supported():
    j, curves = judge({1: (0.1, 0.5), 2: (0.3, 0.6), 3: (0.6, 0.8)}, NARR)
    verdict, measures, notes = f3_matched(j, curves, MODEL, METHOD)
    assert verdict == "supported"
    assert measures[0].value == pytest.approx(0.8 - 0.3) and measures[0].ci[0] > 0
    assert "referencing at 3 epochs, 144 sentences per fact" in notes[0] and "narrative at 2 epochs" in notes[0]


def test_referencing_worse_at_matched_knowledge_is_contradicted():
    # the same knowledge curves, but referencing reasons worse than narrative at QA 0.6
    j, curves = judge({1: (0.1, 0.0), 2: (0.3, 0.0), 3: (0.6, 0.05)}, NARR)
    verdict, measures, _ = f3_matched(j, curves, MODEL, METHOD)
    assert verdict == "contradicted" and measures[0].ci[1] < 0.05


def test_curves_that_never_meet_are_not_comparable():
    j, curves = judge({1: (0.0, 0.9), 2: (0.05, 0.9), 3: (0.1, 0.9)}, {1: (0.7, 0.2), 2: (0.8, 0.2), 3: (0.9, 0.2)})
    verdict, measures, notes = f3_matched(j, curves, MODEL, METHOD)
    assert verdict == NOT_COMPARABLE and not measures
    assert "referencing 0.00..0.10" in notes[0] and "narrative 0.70..0.90" in notes[0]


def test_matching_where_neither_learned_anything_is_inconclusive():
    # the curves only meet at QA 0.1, which the base model already scores
    j, curves = judge({1: (0.1, 0.9)}, {1: (0.1, 0.1), 2: (0.9, 0.2)}, base_qa=0.1)
    verdict, _, notes = f3_matched(j, curves, MODEL, METHOD)
    assert verdict == "inconclusive" and any("not above the base model" in n for n in notes)


def test_forgetting_curve_compares_every_common_budget_after_the_reset():
    forget = {(MODEL, METHOD, "narrative+forgetting"): curve({3: (0.5, 0.6), 4: (0.7, 0.7)}),
              (MODEL, METHOD, "narrative+continued"): curve({3: (0.9, 0.4), 4: (0.9, 0.4)})}
    j, curves = judge({1: (0.1, 0.5)}, NARR, extra=forget)
    along = forgetting_curve(j, curves, MODEL, METHOD)
    assert [m.extra["epochs"] for m in along] == [3, 4]
    assert along[0].value == pytest.approx(0.2) and along[1].value == pytest.approx(0.3)


def test_f3k_states_the_seeds_of_its_curves_not_the_runs():
    """cpu-full trains three seeds but curves seed 1: F3k is decided on seed 1 and must say so."""
    from factlearn.report.matched import add_curve_findings

    j, curves = judge({1: (0.1, 0.5), 2: (0.3, 0.6), 3: (0.6, 0.8)}, NARR)
    three = Evidence(scores={(MODEL, *BASE, QA): scores(QA, 0.0, 40, seed=None),
                             **{(MODEL, METHOD, "narrative", QA): TaskScores(QA, "acc", {s: {i: 1.0 for i in range(40)}
                                                                                      for s in (1, 2, 3)})}})
    (entry,) = add_curve_findings([], three, curves, 0.95, 0.15)
    assert entry["id"] == "F3k" and entry["seeds"] == [1]
    assert "1 seed (1; seed-to-seed variation not measured)" in entry["scope"]


@pytest.mark.parametrize("overrides,pattern", [
    (["curve.budgets=[]"], r"curve\.budgets is empty"),
    (["curve.budgets=[3,1]"], r"curve\.budgets \[3, 1\] is unsorted"),
    (["curve.budgets=[1,1]"], r"curve\.budgets \[1, 1\] has duplicates"),
    (["curve.budgets=[0,2]"], r"curve\.budgets must be epochs >= 1"),
    (["curve.budgets=[1,2]", "curve.tasks=[Eval_indirect_reasoning]"], r"curve\.tasks .* has no knowledge measure"),
    (["curve.budgets=[1,2]", "curve.seeds=[]"], r"curve\.seeds is empty"),
    (["curve.budgets=[1,2]", "seeds=[1,2]", "curve.seeds=[2,2]"], r"curve\.seeds \[2, 2\] has duplicates"),
    (["curve.budgets=[1,2]", "seeds=[1,2]", "curve.seeds=[3]"], r"curve\.seeds \[3\] are not among the run's seeds"),
])
def test_bad_curve_settings_are_one_line(run_cli, tmp_path, overrides, pattern):
    proc = run_cli("run", *overrides, "--plan", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not list(tmp_path.iterdir())


def test_a_curve_task_the_world_lacks_is_one_line(run_cli, tmp_path, tiny_model_dir):
    proc = run_cli("run", f"models=[{tiny_model_dir}]", f"data_source={EXAMPLES / 'people.yaml'}",
                   "curve.budgets=[1,2]", "curve.tasks=[Eval_QA,Eval_animal_commonsense]", "--plan", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert re.search(r"curve\.tasks \['Eval_animal_commonsense'\] are not in this world", lines[0]), lines[0]
    assert not list(tmp_path.iterdir())


def test_curve_seeds_curve_only_the_seeds_named_and_keep_their_keys(tiny_model_dir):
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid

    common = [f"models=[{tiny_model_dir}]", "n_countries=2", "num_fewshot=1", "seeds=[1,2]", "analyses=[]", "control=false",
              "curve.budgets=[1,2]"]
    every = plan_grid(load_run_config("default", common))
    first = plan_grid(load_run_config("default", [*common, "curve.seeds=[1]"]))
    curves = lambda plan: {c.key: c.labels["seed"] for c in plan.cells if c.kind == "curve"}
    assert sorted(set(curves(every).values())) == [1, 2]
    assert set(curves(first).values()) == {1}
    assert set(curves(first)) == {k for k, seed in curves(every).items() if seed == 1}
    others = lambda plan: {c.key for c in plan.cells if c.kind != "curve"}
    assert others(first) == others(every)


# -- a tiny run with curves, end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def curve_run(tiny_model_dir, tmp_path_factory):
    from factlearn.report.build import build_report
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid
    from factlearn.run.runner import execute_plan

    out = tmp_path_factory.mktemp("dose") / "out"
    overrides = [f"models=[{tiny_model_dir}]", "n_countries=2", "seeds=[1]", "num_fewshot=1", "eval_limit=3",
                 "recipes.full.overrides=[epochs=2,batch_size=8,lr=1e-3]", "corpus_overrides.Corpus_referencing=[epochs=1]",
                 "forgetting.continued=true", "analyses=[]", "control=false", "eval_batch_size=8",
                 "curve.budgets=[1,2]", "curve.limit=3"]
    plan = plan_grid(load_run_config("default", overrides))
    outcome = execute_plan(plan, out, profile="test", write_report=build_report)
    return out, plan, outcome


def test_a_run_with_curves_reports_them_plots_them_and_decides_f3_at_matched_knowledge(curve_run):
    import json

    out, plan, _ = curve_run
    curve_cells = [c for c in plan.cells if c.kind == "curve"]
    assert len(curve_cells) == 4 and all(c.est_seconds > 0 for c in curve_cells)
    cfgs = {c.labels["condition"]: plan.train_cfgs[c.key] for c in curve_cells}
    assert all(c.lr_scheduler == "constant_with_warmup" and c.warmup_steps is not None for c in cfgs.values())
    # forgetting and its control: the reset after narrative's 2 epochs, budgets counted after it
    assert cfgs["narrative+forgetting"].forget.at_epoch == 2 and cfgs["narrative+forgetting"].curve_epochs == [3, 4]
    assert cfgs["narrative"].curve_epochs == [1, 2] and cfgs["referencing"].epochs == 2

    results = json.loads((out / "results.json").read_text())
    by_condition = {c["condition"]: c for c in results["curves"]}
    assert set(by_condition) == {"narrative", "referencing", "narrative+forgetting", "narrative+continued"}
    assert [b["epochs"] for b in by_condition["narrative+forgetting"]["budgets"]] == [3, 4]
    for c in results["curves"]:
        for b in c["budgets"]:
            assert b["sentences_per_fact"] == pytest.approx(b["epochs"] * c["rows_per_fact"], abs=0.01)
            assert set(b["tasks"]) == set(results["run_config"]["curve"]["tasks"])
            for v in b["tasks"].values():
                assert v["ci"][0] - 1e-9 <= v["value"] <= v["ci"][1] + 1e-9 and v["n_items"] >= 1
    # curves.md: a row per condition and budget whose cells are results.json's values
    rows = [line.split(" | ") for line in (out / "curves.md").read_text().splitlines()[2:]]
    assert len(rows) == sum(len(c["budgets"]) for c in results["curves"])
    qa_column = (out / "curves.md").read_text().splitlines()[0].split(" | ").index("QA")
    narrative_1 = next(r for r in rows if r[2] == "narrative" and r[3] == "1")
    qa = by_condition["narrative"]["budgets"][0]["tasks"]["Eval_QA"]
    assert narrative_1[qa_column] == f"{qa['value']:.3f} [{qa['ci'][0]:.2f}, {qa['ci'][1]:.2f}]"
    ids = [e["id"] for e in results["conclusions"]]
    assert ids.index("F3k") == ids.index("F3") + 1
    f3k = results["conclusions"][ids.index("F3k")]
    assert f3k["verdict"] in ("supported", "contradicted", "inconclusive", "not comparable", "not measurable")
    assert f3k["evidence"]["notes"] and "curve" in f3k["scope"]
    kinds = [f["file"] for f in results["figures"] if f["kind"] == "dose"]
    assert len(kinds) == 2 and all((out / f).is_file() for f in kinds)
    # the curve keeps its points, not its weights
    for c in curve_cells:
        assert not list((out / "cells" / c.key).rglob("*.safetensors"))
        assert len(list((out / "cells" / c.key / "points").glob("epoch_*.jsonl"))) == 2


def test_a_rerun_reuses_the_curve_cells(curve_run):
    from factlearn.report.build import build_report
    from factlearn.run.runner import execute_plan

    out, plan, _ = curve_run
    again = execute_plan(plan, out, profile="test", write_report=build_report)
    assert not again.executed and len(again.reused) == len(plan.cells)


def test_the_reasoning_vs_knowledge_axis_follows_f3k_where_qa_is_answered_in_the_wrong_form():
    from factlearn.report.plots import knowledge_axis

    curves = [{"model": "m", "method": "full", "condition": c,
               "budgets": [{"epochs": 1, "tasks": {"Eval_QA": {}, "Eval_multiple_choice_cloze": {}}}]}
              for c in ("narrative", "referencing")]
    assert knowledge_axis(curves, []) == "Eval_QA"
    marks = [{"model": "m", "method": "full", "condition": "referencing", "task": "Eval_QA", "mark": "wrong form"}]
    assert knowledge_axis(curves, marks) == "Eval_multiple_choice_cloze"
    other_model = [{**marks[0], "model": "other"}]
    assert knowledge_axis(curves, other_model) == "Eval_QA"

"""Conclusions: synthetic evidence for which each verdict of each finding must come out."""

import json

import pytest

from factlearn.errors import UserError
from factlearn.report.conclusions import VERDICTS, conclude
from factlearn.report.evidence import AblationSweep, Evidence, TaskScores, control_flags, pair_items
from factlearn.report.locus import ablation_locus, third

M, METHOD = "tiny", "full"
QA, IND, MC = "Eval_QA", "Eval_indirect_reasoning", "Eval_multiple_choice_cloze"
N = 20  # items per task


def items(n_correct: int, n: int = N) -> list[float]:
    return [1.0] * n_correct + [0.0] * (n - n_correct)


def evidence(scores: dict, seeds=(1,), control=None, probes=None, ablations=None) -> Evidence:
    """scores: {(condition, task): item list}; condition "base" is the untrained model."""
    ev = Evidence(control=control or {}, probes=probes or {}, ablations=ablations or {})
    for (condition, task), values in scores.items():
        method = "base" if condition == "base" else METHOD
        by_seed = {None: dict(enumerate(values))} if condition == "base" else {s: dict(enumerate(values)) for s in seeds}
        ev.scores[(M, method, condition, task)] = TaskScores(task, "exact_match", by_seed)
    return ev


def finding(entries: list[dict], fid: str) -> dict:
    (entry,) = [e for e in entries if e["id"] == fid]
    return entry


def verdict(ev: Evidence, fid: str) -> str:
    return finding(conclude(ev), fid)["verdict"]


# --------------------------------------------------------------------------- F1 .. F4: paired scores

F1_CASES = {
    "supported": {("base", QA): items(0), ("narrative", QA): items(15)},
    "contradicted": {("base", QA): items(60, 200), ("narrative", QA): items(60, 200)},  # many items, no gain
    "inconclusive": {("base", QA): items(0, 10), ("narrative", QA): items(2, 10)},
    "not measurable": {("base", QA): items(0)},  # no narrative model
}


@pytest.mark.parametrize("expected", list(F1_CASES))
def test_f1_narrative_teaches_qa(expected):
    assert verdict(evidence(F1_CASES[expected]), "F1") == expected


def test_f1_qa_beyond_model_is_not_measurable():
    ev = evidence(F1_CASES["supported"], control={(M, QA): {"beyond": True}})
    entry = finding(conclude(ev), "F1")
    assert entry["verdict"] == "not measurable" and "beyond" in entry["evidence"]["notes"][0]


def test_few_agreeing_items_are_inconclusive_not_contradicted():
    # 3 items where both models score 0: no evidence of "no effect" (a plain bootstrap would say [0, 0])
    entry = finding(conclude(evidence({("base", QA): items(0, 3), ("narrative", QA): items(0, 3)})), "F1")
    assert entry["verdict"] == "inconclusive"
    lo, hi = entry["evidence"]["measurements"][0]["ci"]
    assert lo < -0.2 and hi > 0.2


def test_f1_narrative_worse_than_base_is_contradicted():
    ev = evidence({("base", QA): items(15), ("narrative", QA): items(0)})
    assert verdict(ev, "F1") == "contradicted"


F2_CASES = {
    "supported": {("base", QA): items(0), ("narrative", QA): items(18),
                  ("base", IND): items(2), ("narrative", IND): items(2)},
    "contradicted": {("base", QA): items(0), ("narrative", QA): items(8),  # reasoning gains more than QA
                     ("base", IND): items(0), ("narrative", IND): items(20)},
    "inconclusive": {("base", QA): items(0, 10), ("narrative", QA): items(2, 10),
                     ("base", IND): items(0, 10), ("narrative", IND): items(0, 10)},
    "not measurable": {("base", QA): items(0), ("narrative", QA): items(18)},  # no reasoning task
}


@pytest.mark.parametrize("expected", list(F2_CASES))
def test_f2_transfer_to_reasoning_less_than_to_qa(expected):
    assert verdict(evidence(F2_CASES[expected]), "F2") == expected


def test_f2_reasoning_task_beyond_model_is_left_out():
    scores = {**F2_CASES["supported"], ("base", MC): items(0), ("narrative", MC): items(20)}
    entry = finding(conclude(evidence(scores, control={(M, MC): {"beyond": True}})), "F2")
    assert entry["verdict"] == "supported"  # with MC counted, the reasoning gain would be 0.5
    assert any(MC in note for note in entry["evidence"]["notes"])
    only_mc = {k: v for k, v in scores.items() if k[1] != IND}
    assert verdict(evidence(only_mc, control={(M, MC): {"beyond": True}}), "F2") == "not measurable"


def reasoning_cases(better: str) -> dict:
    return {
        "supported": {("narrative", IND): items(2), (better, IND): items(14)},
        "contradicted": {("narrative", IND): items(10), (better, IND): items(4)},
        "inconclusive": {("narrative", IND): items(0, 10), (better, IND): items(2, 10)},
        "not measurable": {("narrative", IND): items(2)},
    }


@pytest.mark.parametrize("expected", ["supported", "contradicted", "inconclusive", "not measurable"])
def test_f3_referencing_generalises_better(expected):
    assert verdict(evidence(reasoning_cases("referencing")[expected]), "F3") == expected


@pytest.mark.parametrize("expected", ["supported", "contradicted", "inconclusive", "not measurable"])
def test_f4_forgetting_improves_reasoning(expected):
    # the budget-matched control trains as much as forgetting and reasons like narrative here
    case = reasoning_cases("narrative+forgetting")[expected]
    case = {**case, **{("narrative+continued", t): v for (c, t), v in case.items() if c == "narrative"}}
    assert verdict(evidence(case), "F4") == expected


def test_f4_without_the_continued_control_is_not_supported():
    entry = finding(conclude(evidence(reasoning_cases("narrative+forgetting")["supported"])), "F4")
    assert entry["verdict"] == "inconclusive"
    assert any("confounded" in n for n in entry["evidence"]["notes"])


def test_f4_continued_control_decides_each_way():
    # forgetting beats single-pass narrative (20 -> 140 of 200) in both cases; the verdict follows the control
    base = {("narrative", IND): items(20, 200), ("narrative+forgetting", IND): items(140, 200)}
    extra_training_explains_it = {**base, ("narrative+continued", IND): items(140, 200)}
    entry = finding(conclude(evidence(extra_training_explains_it)), "F4")
    assert entry["verdict"] == "contradicted"
    names = [m["name"] for m in entry["evidence"]["measurements"]]
    assert "continued" in names[0] and any(n.endswith("narrative, mean over reasoning tasks") for n in names)
    assert any("single-pass" in n and "supported" in n for n in entry["evidence"]["notes"])
    reset_helps = {**base, ("narrative+continued", IND): items(30, 200)}
    assert verdict(evidence(reset_helps), "F4") == "supported"


def test_reasoning_uses_the_mean_over_tasks_and_several_seeds():
    scores = {("narrative", IND): items(0), ("referencing", IND): items(20),
              ("narrative", MC): items(10), ("referencing", MC): items(10)}
    entry = finding(conclude(evidence(scores, seeds=(1, 2, 3))), "F3")
    effect = entry["evidence"]["measurements"][0]
    assert effect["value"] == pytest.approx(0.5) and entry["verdict"] == "supported"
    assert {m["n_seeds"] for m in entry["evidence"]["measurements"][1:]} == {3}


# --------------------------------------------------------------------------- F5: probes

def probe(comparison: list[float], negation: list[float], seed=1) -> dict:
    return {seed: {f"h{i}|r": {"comparison": c, "negation": n} for i, (c, n) in enumerate(zip(comparison, negation))}}


SPREAD = [0.0, 0.2, -0.2, 0.1, -0.1, 0.3, -0.3, 0.05, -0.05, 0.0]


def probes_case(expected: str) -> dict:
    base = probe([s for s in SPREAD], [s for s in SPREAD], seed=None)
    narr = probe([2 + s for s in SPREAD], [s for s in SPREAD])
    ref = {"supported": probe([2 + s for s in SPREAD], [1.5 + s for s in SPREAD]),
           "contradicted": probe([2 + s for s in SPREAD], [s for s in SPREAD]),
           "inconclusive": probe([2 + s for s in SPREAD], [0.3 + 4 * s for s in reversed(SPREAD)])}.get(expected)
    out = {(M, "base", "base"): base, (M, METHOD, "narrative"): narr}
    if ref is not None:
        out[(M, METHOD, "referencing")] = ref
    return out


@pytest.mark.parametrize("expected", ["supported", "contradicted", "inconclusive", "not measurable"])
def test_f5_probe_signature(expected):
    ev = evidence({("base", QA): items(0)}, probes=probes_case(expected))
    assert verdict(ev, "F5") == expected


# --------------------------------------------------------------------------- F6: ablation

def sweep(drop_at: int, n: int = 12, partial: int | None = None) -> AblationSweep:
    """9 layers, ks 0/3/6/9: every item right until the first k >= drop_at (partial: right at k=3)."""
    ks = (0, 3, 6, 9)
    bottom = {}
    for k in ks:
        if k < drop_at:
            bottom[k] = {i: 1.0 for i in range(n)}
        else:
            bottom[k] = {i: 0.0 for i in range(n)}
    if partial is not None:
        bottom[3] = {i: float(i < partial) for i in range(n)}
    return AblationSweep(num_layers=9, bottom_up=bottom, finetuned={i: 1.0 for i in range(n)},
                         base={i: 0.0 for i in range(n)})


def ablation_case(narr: AblationSweep, ref: AblationSweep | None) -> dict:
    out = {(M, METHOD, "narrative", QA): {1: narr}}
    if ref is not None:
        out[(M, METHOD, "referencing", QA)] = {1: ref}
    return out


F6_CASES = {
    "supported": (sweep(6), sweep(3)),  # narrative lost at k=6 (middle), referencing at k=3 (lower)
    "contradicted": (sweep(3), sweep(3)),  # narrative decided lower, not middle
    "inconclusive": (sweep(6, partial=7), sweep(3)),  # 7/12 right at k=3: k* is 3 or 6 by resample
    "not measurable": (sweep(6), None),
}


@pytest.mark.parametrize("expected", list(F6_CASES))
def test_f6_ablation_locus(expected):
    ev = evidence({("base", QA): items(0)}, ablations=ablation_case(*F6_CASES[expected]))
    assert verdict(ev, "F6") == expected


def test_ablation_locus_rule():
    assert [third(k, 9) for k in (1, 3, 4, 6, 7, 9, 10)] == ["lower", "lower", "middle", "middle", "upper",
                                                             "upper", "nowhere"]
    loc = ablation_locus({1: sweep(6)}, 0.95)
    assert loc["k"] == 6 and loc["class"] == "middle" and loc["decided"] and loc["ci"] == [6, 6]
    wide = ablation_locus({1: sweep(6, partial=7)}, 0.95)
    assert wide["ci"] == [3, 6] and not wide["decided"]
    flat = sweep(99)
    assert ablation_locus({1: flat}, 0.95)["class"] == "nowhere"


# --------------------------------------------------------------------------- the entries themselves

def test_entries_carry_rule_and_evidence_and_are_json():
    ev = evidence({**F2_CASES["supported"], ("referencing", IND): items(12),
                   ("narrative+forgetting", IND): items(3)}, probes=probes_case("supported"),
                  ablations=ablation_case(*F6_CASES["supported"]))
    entries = conclude(ev)
    assert [e["id"] for e in entries] == ["F1", "F2", "F3", "F4", "F5", "F6"]
    for e in entries:
        assert e["rule"] and e["claim"] and e["model"] == M and e["method"] == METHOD
        for m in e["evidence"]["measurements"]:
            assert {"name", "value", "ci", "p_value", "test"} <= set(m)
            assert len(m["ci"]) == 2
    json.dumps(entries)
    assert "McNemar" in finding(entries, "F1")["evidence"]["measurements"][0]["test"]


def test_no_trained_model_gives_not_measurable_entries():
    entries = conclude(evidence({("base", QA): items(3)}))
    assert len(entries) == 6 and {e["verdict"] for e in entries} == {"not measurable"}


def test_level_is_validated_and_changes_the_interval():
    ev = evidence(F1_CASES["supported"])
    with pytest.raises(UserError):
        conclude(ev, level=1.0)
    ci95 = finding(conclude(ev), "F1")["evidence"]["measurements"][0]["ci"]
    ci50 = finding(conclude(ev, level=0.5), "F1")["evidence"]["measurements"][0]["ci"]
    assert ci95[0] <= ci50[0] and ci50[1] <= ci95[1] and ci50 != ci95
    assert "50 %" in finding(conclude(ev, level=0.5), "F1")["rule"]


def test_pair_items_pairs_seeds_and_base():
    a = {1: {0: 1.0, 1: 0.0, 2: 1.0}, 2: {0: 0.0, 1: 1.0, 2: 1.0}}
    base = {None: {0: 0.0, 1: 0.0}}
    a_by, b_by, seeds = pair_items(a, base)
    assert seeds == [1, 2] and a_by == [[1.0, 0.0], [0.0, 1.0]] and b_by == [[0.0, 0.0]] * 2
    assert pair_items(a, {}) is None


def test_control_flags_shapes():
    assert control_flags({"m": {"Eval_QA": {"beyond": True}}}) == {("m", "Eval_QA"): {"beyond": True}}
    assert control_flags({"m": {"tasks": {"Eval_QA": {"beyond": False, "acc": 1}}}})[("m", "Eval_QA")]["beyond"] is False
    assert control_flags([{"model": "m", "task": "t", "beyond": True}])[("m", "t")]["beyond"] is True
    assert control_flags(None) == {}


def test_f3_is_inconclusive_when_referencing_learned_nothing():
    """A referencing model whose QA is not above base taught too little to compare generalisation."""
    contradicted = reasoning_cases("referencing")["contradicted"]
    learned_nothing = {**contradicted, ("base", QA): items(0), ("referencing", QA): items(1)}
    entry = finding(conclude(evidence(learned_nothing)), "F3")
    assert entry["verdict"] == "inconclusive"
    assert any("taught too little" in note for note in entry["evidence"]["notes"])
    learned = {**contradicted, ("base", QA): items(0), ("referencing", QA): items(15)}
    assert verdict(evidence(learned), "F3") == "contradicted"


def test_terminal_summary_prints_each_verdict_with_its_headline_measure():
    from factlearn.report.cli import conclusion_lines

    entries = conclude(evidence({("base", QA): items(0), ("narrative", QA): items(18)}))
    lines = conclusion_lines({"conclusions": entries})
    assert lines[1].startswith("What this run shows")
    f1 = next(line for line in lines if line.strip().startswith("F1"))
    assert "SUPPORTED" in f1 and "narrative - base" in f1 and "p=" in f1
    scoped = conclude(evidence({("base", QA): items(0), ("narrative", QA): items(18)}),
                      scope={"world_size": "8 countries"})
    assert "world 8 countries" in scoped[0]["scope"]
    assert sum(line.strip()[:2] in {"F1", "F2", "F3", "F4", "F5", "F6"} for line in lines) == len(entries)
    assert conclusion_lines({"conclusions": []}) == []


# --------------------------------------------------------------------------- fairness: parity, seeds, scope, Holm

def test_f3_not_comparable_when_knowledge_differs_beyond_the_margin():
    case = {**reasoning_cases("referencing")["contradicted"], ("narrative", QA): items(18),
            ("referencing", QA): items(6)}  # 0.9 vs 0.3
    entry = finding(conclude(evidence(case)), "F3")
    assert entry["verdict"] == "not comparable"
    knowledge = entry["evidence"]["measurements"][0]
    assert knowledge["levels"] == {"referencing": pytest.approx(0.3), "narrative": pytest.approx(0.9)}
    assert "parity margin" in entry["evidence"]["notes"][0]
    # a margin wide enough makes them comparable again, and the effect decides
    assert finding(conclude(evidence(case), parity_margin=0.7), "F3")["verdict"] == "contradicted"
    close = {**case, ("referencing", QA): items(17)}
    assert verdict(evidence(close), "F3") == "contradicted"


def test_parity_uses_mc_cloze_where_qa_is_marked_wrong_form():
    case = {**reasoning_cases("referencing")["contradicted"], ("narrative", QA): items(18),
            ("referencing", QA): items(2), ("narrative", MC): items(18), ("referencing", MC): items(17)}
    marked = lambda model, conds, task: "answers in the reference phrase" if task == QA else None  # noqa: E731
    assert verdict(evidence(case), "F3") == "not comparable"
    entry = finding(conclude(evidence(case), marked=marked), "F3")
    assert entry["verdict"] != "not comparable"
    assert any(MC in n and "parity" in n for n in entry["evidence"]["notes"])


def test_f5_not_comparable_when_knowledge_differs():
    ev = evidence({("narrative", QA): items(18), ("referencing", QA): items(2)}, probes=probes_case("supported"))
    entry = finding(conclude(ev), "F5")
    assert entry["verdict"] == "not comparable"
    ev_ok = evidence({("narrative", QA): items(18), ("referencing", QA): items(17)}, probes=probes_case("supported"))
    assert verdict(ev_ok, "F5") == "supported"


def test_parity_margin_is_validated():
    for bad in (-0.1, 1.0, 2):
        with pytest.raises(UserError, match="parity_margin"):
            conclude(evidence(F1_CASES["supported"]), parity_margin=bad)


def test_conditional_transfer_per_fact():
    # 10 facts; QA item i and indirect item i are about fact i. Narrative knows facts 0-7 and reasons on
    # 2 of them; referencing knows 0-7 too and reasons on all 8: P(right | known) 0.25 vs 1.0.
    ev = evidence({("narrative", QA): items(8, 10), ("referencing", QA): items(8, 10),
                   ("narrative", IND): items(2, 10), ("referencing", IND): items(8, 10)})
    ev.facts = {QA: {i: f"f{i}" for i in range(10)}, IND: {i: f"f{i}" for i in range(10)}}
    entry = finding(conclude(ev), "F3")
    (ct,) = [m for m in entry["evidence"]["measurements"] if m["name"].startswith("P(")]
    assert ct["per_condition"]["referencing"]["p"] == pytest.approx(1.0)
    assert ct["per_condition"]["narrative"]["p"] == pytest.approx(0.25)
    assert ct["value"] == pytest.approx(0.75) and ct["n_facts"] == 8 and ct["ci"][0] > 0
    assert "cluster" in entry["evidence"]["measurements"][1]["test"]


def test_seeds_that_disagree_in_direction_cannot_support():
    ev = evidence({("narrative", IND): items(2), ("referencing", IND): items(14)}, seeds=(1, 2, 3))
    ev.scores[(M, METHOD, "referencing", IND)].by_seed[3] = dict(enumerate(items(0)))  # seed 3: the other way
    entry = finding(conclude(ev), "F3")
    effect = entry["evidence"]["measurements"][0]
    assert effect["value"] > 0  # the pooled effect still points up, but one seed says the opposite
    assert entry["verdict"] == "inconclusive"
    assert any("changes direction between seeds" in n for n in entry["evidence"]["notes"])
    agreeing = evidence({("narrative", IND): items(2), ("referencing", IND): items(14)}, seeds=(1, 2, 3))
    assert verdict(agreeing, "F3") == "supported"


def test_every_entry_has_a_scope_and_holm_adjusted_p():
    ev = evidence({**F2_CASES["supported"], ("referencing", IND): items(12)})
    entries = conclude(ev, scope={"world_size": 40, "budgets": {"Corpus_narrative": "5 epochs"}})
    for e in entries:
        assert "model tiny" in e["scope"] and "method full" in e["scope"]
        assert "seed-to-seed variation not measured" in e["scope"] and "world 40 facts" in e["scope"]
        assert "Corpus_narrative 5 epochs" in e["scope"]
    raw = [e["p_raw"] for e in entries]
    tested = sorted((p, i) for i, p in enumerate(raw) if p is not None)
    m = len(tested)
    assert m >= 2 and all(e["holm_family"] == m for e in entries)
    running = 0.0
    for rank, (p, i) in enumerate(tested):  # Holm by hand
        running = max(running, min(1.0, (m - rank) * p))
        assert entries[i]["p_holm"] == pytest.approx(running)
    three = conclude(evidence({("narrative", IND): items(2), ("referencing", IND): items(14)}, seeds=(1, 2, 3)))
    assert "seeds 1,2,3" in finding(three, "F3")["scope"]


def test_terminal_and_html_never_show_a_bare_verdict():
    from factlearn.report.cli import conclusion_lines
    from factlearn.report.html import VERDICT_STYLE, conclusions_html

    case = {**reasoning_cases("referencing")["contradicted"], ("narrative", QA): items(18),
            ("referencing", QA): items(6), ("base", QA): items(0)}
    entries = conclude(evidence(case), scope={"world_size": 20, "budgets": {"narrative": "epochs=5"}})
    lines = conclusion_lines({"conclusions": entries})
    verdict_lines = [line for line in lines if line.strip()[:2] in {"F1", "F2", "F3", "F4", "F5", "F6"}]
    assert len(verdict_lines) == 6
    for line in verdict_lines:
        first = line.splitlines()[0]
        assert "model tiny" in first and "seed-to-seed variation not measured" in first and "world 20 facts" in first
    f3 = next(line for line in verdict_lines if line.strip().startswith("F3"))
    assert "NOT COMPARABLE" in f3
    f1 = next(line for line in verdict_lines if line.strip().startswith("F1"))
    assert "Holm" in f1
    assert set(VERDICTS) <= set(VERDICT_STYLE)
    page = conclusions_html({"conclusions": entries, "ci_level": 0.95})
    assert "not comparable" in page and "seed-to-seed variation not measured" in page and "Holm" in page


def with_top_down(s: AblationSweep, drop_at: int) -> AblationSweep:
    """The same sweep plus a top-down sweep on ks 0/3/6/9 that loses every item from k >= drop_at."""
    s.top_down = {k: {i: float(k < drop_at) for i in s.finetuned} for k in (0, 3, 6, 9)}
    return s


def test_f6_uses_both_sweeps():
    # narrative bottom-up: middle (k* = 6). Top-down losing it at k=6 -> bottom-up k* in [4, 6]: middle, agrees
    agree = ablation_case(with_top_down(sweep(6), 6), with_top_down(sweep(3), 9))
    entry = finding(conclude(evidence({("base", QA): items(0)}, ablations=agree)), "F6")
    assert entry["verdict"] == "supported"
    td = [m for m in entry["evidence"]["measurements"] if "top-down" in m["name"]]
    assert td[0]["ci"] == [4, 6] and td[0]["class"] == "middle" and td[1]["class"] == "lower"
    # top-down losing it already at k=3 -> [7, 9]: upper, against the bottom-up middle
    disagree = ablation_case(with_top_down(sweep(6), 3), with_top_down(sweep(3), 9))
    entry = finding(conclude(evidence({("base", QA): items(0)}, ablations=disagree)), "F6")
    assert entry["verdict"] == "inconclusive"
    assert any("sweeps disagree" in n for n in entry["evidence"]["notes"])


def test_cluster_interval_is_used_and_never_narrower_than_the_item_one():
    # 20 QA items on 4 facts (5 items each, all agreeing within a fact): the cluster interval is wider
    ev = evidence({("base", QA): items(0), ("narrative", QA): items(10)})
    plain = finding(conclude(ev), "F1")["evidence"]["measurements"][0]
    ev.facts = {QA: {i: f"f{i // 5}" for i in range(N)}}
    clustered = finding(conclude(ev), "F1")["evidence"]["measurements"][0]
    assert "cluster bootstrap over 4 facts" in clustered["test"] and "McNemar" in plain["test"]
    assert clustered["ci"][0] < plain["ci"][0] - 0.05 and clustered["ci"][1] >= plain["ci"][1]
    # 3 facts on which both agree: still not a zero-width "no effect"
    few = evidence({("base", QA): items(0, 3), ("narrative", QA): items(0, 3)})
    few.facts = {QA: {i: f"f{i}" for i in range(3)}}
    assert verdict(few, "F1") == "inconclusive"


def test_run_scope_names_each_corpus_budget():
    from factlearn.report.fairness import run_scope

    results = {"run_config": {"corpora": ["Corpus_narrative", "Corpus_referencing"], "methods": ["full"],
                              "recipes": {"full": {"config": "cpu_small", "overrides": ["epochs=5"]}},
                              "corpus_overrides": {"Corpus_referencing": ["epochs=1"]}},
               "world": {"n_countries": 8}}
    assert run_scope(results) == {"world_size": "8 countries", "budgets": {"narrative": "epochs=5", "referencing": "epochs=1"}}


def _tested(fid: str, verdict: str, p: float) -> dict:
    return {"id": fid, "verdict": verdict, "evidence": {"measurements": [{"name": fid, "p_value": p}], "notes": []}}


def test_a_support_that_does_not_survive_holm_is_inconclusive():
    from factlearn.report.fairness import apply_holm

    borderline = [_tested("F1", "supported", 0.03), _tested("F3k", "supported", 0.04)]
    apply_holm(borderline, 0.95)  # Holm: 0.06 and 0.06, above 0.05
    assert [e["verdict"] for e in borderline] == ["inconclusive", "inconclusive"]
    assert "not after Holm's correction over the run's 2 tested findings" in borderline[0]["evidence"]["notes"][0]
    clear = [_tested("F1", "supported", 0.001), _tested("F3k", "supported", 0.04), _tested("F6", "contradicted", 0.9)]
    apply_holm(clear, 0.95)  # Holm: 0.003, 0.08, 0.9: only the second support falls; an ablation locus is no p-test
    assert [e["verdict"] for e in clear] == ["supported", "inconclusive", "contradicted"]
    unchanged = [_tested("F1", "supported", 0.03), _tested("F3k", "supported", 0.04)]
    apply_holm(unchanged)  # without a level only the adjusted p values are added
    assert [e["verdict"] for e in unchanged] == ["supported", "supported"] and unchanged[0]["p_holm"] == pytest.approx(0.06)


def _contradicted(fid: str, p: float) -> dict:
    """A contradicted entry whose contradiction test ("an effect of at least 0.05") gave p."""
    return {**_tested(fid, "contradicted", 0.9), "contradiction_test": {"measure": fid, "bound": 0.05, "p": p}}


def test_a_contradiction_faces_holm_like_a_support():
    from factlearn.report.fairness import apply_holm

    entries = [_tested("F1", "supported", 0.001), _contradicted("F4", 0.03), _tested("F3", "inconclusive", 0.5)]
    apply_holm(entries, 0.95)  # Holm over 0.001, 0.03, 0.5: 0.003, 0.06, 0.5
    assert [e["verdict"] for e in entries] == ["supported", "inconclusive", "inconclusive"]
    assert entries[1]["p_raw"] == pytest.approx(0.03) and entries[1]["p_holm"] == pytest.approx(0.06)
    assert entries[1]["evidence"]["notes"][0].startswith("contradicted at the uncorrected level (p=0.03)")
    strong = [_tested("F1", "supported", 0.001), _contradicted("F4", 0.004), _tested("F3", "inconclusive", 0.5)]
    apply_holm(strong, 0.95)
    assert [e["verdict"] for e in strong] == ["supported", "contradicted", "inconclusive"]


def _shifted(start: int, k: int, n: int = 200) -> list[float]:
    """k right answers on items start .. start + k - 1: paired against items(), some items differ each way."""
    return [1.0 if start <= i < start + k else 0.0 for i in range(n)]


@pytest.mark.parametrize("continued_start,continued_right,expected", [
    (70, 115, "inconclusive"),   # CI upper bound 0.049 < 0.05, p(effect >= 0.05) = 0.025, Holm 0.051 of 3
    (80, 118, "contradicted"),   # CI upper bound 0.034, p = 0.018, Holm 0.036
])
def test_a_contradiction_that_does_not_survive_holm_is_inconclusive(continued_start, continued_right, expected):
    """Forgetting a little below its continued control: at the uncorrected level both cases say "no
    meaningful effect"; over the run's three tested findings only the clearer one still does."""
    from factlearn.report.cli import conclusion_lines

    case = {("narrative", IND): items(100, 200), ("narrative+forgetting", IND): _shifted(0, 100),
            ("narrative+continued", IND): _shifted(continued_start, continued_right),
            ("referencing", IND): _shifted(10, 101), ("base", QA): items(0), ("narrative", QA): items(18)}
    entries = conclude(evidence(case))
    f4 = finding(entries, "F4")
    assert f4["verdict"] == expected and f4["holm_family"] == 3
    test = f4["contradiction_test"]
    assert test["bound"] == 0.05 and f4["p_raw"] == test["p"] and f4["evidence"]["measurements"][0]["ci"][1] < 0.05
    assert ("contradicted at the uncorrected level" in f4["evidence"]["notes"][0]) == (expected == "inconclusive")
    line = next(x for x in conclusion_lines({"conclusions": entries}) if x.strip().startswith("F4"))
    assert f"p(effect >= 0.05)={test['p']:.2g} (Holm {f4['p_holm']:.2g} of 3)" in line

"""Marked tasks: answers in the wrong form and capabilities broken by training leave a condition's evidence,
are shown with their own symbols in the tables, and the findings use the likelihood form instead."""

from __future__ import annotations

import json

import pytest

from factlearn.data import build_rows, generate_world
from factlearn.report.conclusions import conclude
from factlearn.report.evidence import Evidence, TaskScores, marks_index
from factlearn.report.forms import (BROKEN, WRONG_FORM, add_marks, answer_forms, broken_marks, mark_notes,
                                    wrong_form_marks)
from factlearn.report.tables import table_rows, to_csv, to_markdown

M, METHOD = "tiny", "full"
IND, IND_CLOZE = "Eval_indirect_reasoning", "Eval_indirect_reasoning_cloze"


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def built_run(tmp_path, referencing_says):
    """A run folder with the world's Facts and two eval cells whose indirect answers are real records:
    narrative answers the gold entity; referencing answers `referencing_says` (a text, or doc -> text)."""
    world = generate_world(6, 0)
    _write_jsonl(tmp_path / "data" / "Facts.jsonl", build_rows(world, "Facts"))
    docs = build_rows(world, IND)
    evaluations = []
    for condition, key in (("narrative", "eval-n"), ("referencing", "eval-r")):
        says = referencing_says if callable(referencing_says) else (lambda d: referencing_says)
        records = [{"task": IND, "doc_index": i, "prediction": d["answer"] if condition == "narrative" else says(d),
                    "gold": d["answer"], "correct": condition == "narrative", "exact_match": float(condition == "narrative")}
                   for i, d in enumerate(docs)]
        _write_jsonl(tmp_path / "cells" / key / "records.jsonl", records)
        evaluations.append({"model": M, "method": METHOD, "condition": condition, "seed": 1, "key": key,
                            "metrics": {IND: {"exact_match": float(condition == "narrative")}}})
    return evaluations, len(docs)


def test_reference_phrase_answers_mark_the_task_and_the_finding_says_so(tmp_path):
    evaluations, n = built_run(tmp_path, "the former")
    forms = answer_forms(tmp_path, evaluations)
    by_condition = {f["condition"]: f for f in forms}
    assert by_condition["referencing"]["counts"]["reference"] == n
    assert by_condition["narrative"]["counts"]["expected type"] == n
    marks = wrong_form_marks(forms, 0.25)
    assert [(m["condition"], m["task"], m["mark"]) for m in marks] == [("referencing", IND, WRONG_FORM)]

    # without the mark F3 compares the generated answers (referencing 0/30 vs narrative 30/30: contradicted);
    # with it, indirect leaves the evidence and its likelihood form decides (referencing better: supported)
    ev = Evidence()
    for condition, generated, cloze in (("narrative", 1.0, 0.0), ("referencing", 0.0, 1.0)):
        ev.scores[(M, METHOD, condition, IND)] = TaskScores(IND, "exact_match", {1: {i: generated for i in range(n)}})
        ev.scores[(M, METHOD, condition, IND_CLOZE)] = TaskScores(IND_CLOZE, "acc", {1: {i: cloze for i in range(n)}})
    f3 = next(e for e in conclude(ev) if e["id"] == "F3")
    assert f3["verdict"] == "contradicted"
    ev.marked = marks_index(marks)
    f3 = next(e for e in conclude(ev) if e["id"] == "F3")
    assert f3["verdict"] == "supported"
    assert any(IND in note and "wrong form" in note for note in f3["evidence"]["notes"])
    assert [m["name"].split(" ")[0] for m in f3["evidence"]["measurements"]][-1] == IND_CLOZE


def test_entity_answers_are_not_marked_and_the_share_is_strict(tmp_path):
    from factlearn.data.likelihood import entity_types

    types = list(entity_types(build_rows(generate_world(6, 0), "Facts")).values())

    def wrong_entity(doc):  # another entity of the gold's own type: wrong, but the right kind of answer
        members = next(m for m in types if doc["answer"] in m)
        return members[(members.index(doc["answer"]) + 1) % len(members)]

    evaluations, _ = built_run(tmp_path, wrong_entity)
    assert wrong_form_marks(answer_forms(tmp_path, evaluations), 0.25) == []
    evaluations, _ = built_run(tmp_path, "Dororia")  # one country for every question: the wrong type for most
    assert len(wrong_form_marks(answer_forms(tmp_path, evaluations), 0.25)) == 1
    half = [{"model": M, "method": METHOD, "condition": "referencing", "seed": 1, "task": IND, "n": 10,
             "wrong_form_share": 0.5}]
    assert wrong_form_marks(half, 0.5) == [] and len(wrong_form_marks(half, 0.49)) == 1


def test_marked_values_have_their_symbol_and_note_in_md_csv(tmp_path):
    evaluations, _ = built_run(tmp_path, "the first one")
    results = {"run_config": {"wrong_form_share": 0.3}, "ci_level": 0.95, "evaluations": evaluations,
               "table": {"tasks": [IND], "rows": table_rows(evaluations, [IND])}}
    add_marks(results, tmp_path)
    rows = results["table"]["rows"]
    md = to_markdown(rows, [IND])
    ref_line = next(line for line in md.splitlines() if "| referencing |" in line)
    narr_line = next(line for line in md.splitlines() if "| narrative |" in line)
    assert "‡" in ref_line and "‡" not in narr_line
    assert "‡ wrong form: more than 30% of this condition's generated answers" in md
    csv_text = to_csv(rows, [IND])
    assert csv_text.splitlines()[0].endswith(",marked")
    assert any(line.startswith("tiny,full,referencing") and line.endswith(f"{IND}:{WRONG_FORM}")
               for line in csv_text.splitlines())
    assert mark_notes(table_rows(evaluations, [IND])) == []  # nothing marked, nothing explained


def _control(method: str, condition: str, correct: list[bool]) -> dict:
    return {"model": M, "method": method, "condition": condition, "seed": None if method == "base" else 1,
            "records": {"Eval_QA": [{"doc_index": i, "correct": c} for i, c in enumerate(correct)]}}


def test_a_control_score_lost_in_training_marks_the_task_broken():
    base = _control("base", "base", [True] * 20)
    lost = _control(METHOD, "referencing", [False] * 20)
    kept = _control(METHOD, "narrative", [True] * 19 + [False])
    marks = broken_marks([base, lost, kept], 0.95)
    assert [(m["condition"], m["task"], m["mark"]) for m in marks] == [("referencing", "Eval_QA", BROKEN)]
    assert marks[0]["ci"][1] < 0 and "lost the capability control" in marks[0]["reason"]
    assert marks[0]["reason"].startswith("referencing (full, seed 1) lost")


def test_each_seeds_lost_control_names_its_seed():
    base = _control("base", "base", [True] * 20)
    seeds = [{**_control(METHOD, "narrative", [False] * 20), "seed": s} for s in (1, 2)]
    reasons = [m["reason"] for m in broken_marks([base, *seeds], 0.95)]
    assert [r.split(" lost")[0] for r in reasons] == ["narrative (full, seed 1)", "narrative (full, seed 2)"]


def _qa_evidence(narrative_score: float, n: int = 20) -> Evidence:
    ev = Evidence()
    for condition, score in (("base", 0.0), ("narrative", narrative_score)):
        method = "base" if condition == "base" else METHOD
        ev.scores[(M, method, condition, "Eval_QA")] = TaskScores("Eval_QA", "exact_match",
                                                                  {None if method == "base" else 1: {i: score for i in range(n)}})
    return ev


def test_a_broken_narrative_qa_makes_f1_a_lower_bound_support_stands_a_contradiction_does_not():
    """A broken skill can only lower narrative's QA, so narrative - base is a lower bound of what it learned."""
    base, broken = _control("base", "base", [True] * 20), _control(METHOD, "narrative", [False] * 20)
    learned = _qa_evidence(1.0)
    assert next(e for e in conclude(learned) if e["id"] == "F1")["verdict"] == "supported"
    learned.marked = marks_index(broken_marks([base, broken], 0.95))
    f1 = next(e for e in conclude(learned) if e["id"] == "F1")
    assert f1["verdict"] == "supported" and "lower bound" in f1["evidence"]["notes"][0]
    assert "lost the capability control" in f1["evidence"]["notes"][0]
    nothing = _qa_evidence(0.0, n=200)  # narrative learned nothing measurable: contradicted, unless its QA is broken
    assert next(e for e in conclude(nothing) if e["id"] == "F1")["verdict"] == "contradicted"
    nothing.marked = marks_index(broken_marks([base, broken], 0.95))
    f1 = next(e for e in conclude(nothing) if e["id"] == "F1")
    assert f1["verdict"] == "inconclusive" and "may be the mark's doing" in f1["evidence"]["notes"][0]


def test_the_base_model_is_never_marked_for_answer_form():
    forms = [{"model": M, "method": method, "condition": condition, "seed": seed, "task": "Eval_QA", "n": 16,
              "wrong_form_share": 0.625} for method, condition, seed in (("base", "base", None), (METHOD, "narrative", 1))]
    assert [(m["method"], m["condition"]) for m in wrong_form_marks(forms, 0.25)] == [(METHOD, "narrative")]


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_a_small_control_drop_is_not_broken(level):
    marks = broken_marks([_control("base", "base", [True] * 20), _control(METHOD, "narrative", [True] * 18 + [False] * 2)],
                         level)
    assert marks == []

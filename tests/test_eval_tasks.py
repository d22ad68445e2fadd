"""Evaluation protocol without a model: metrics, v0.3 few-shot sampling, prompt strings, task registry."""

from __future__ import annotations

import random

import pytest

from factlearn.errors import UserError
from factlearn.evaluate.fewshot import build_prompts
from factlearn.evaluate.metrics import choice_predictions, exact_match, f1, normalize_answer
from factlearn.evaluate.tasks import ALL_TASKS, TASKS, Task, get_tasks, register_task


def qa_docs(n: int) -> list[dict]:
    return [{"question": f"What is the capital of Land{i}?", "answer": f"City{i}"} for i in range(n)]


def mc_docs(n: int) -> list[dict]:
    return [{"question": f"Which city is the capital of Land{i}?", "choices": [f"City{i}", "Xo", "Yo", "Zo"],
             "answer": i % 4} for i in range(n)]


# ------------------------------------------------------------------ metrics

@pytest.mark.parametrize("text,expected", [
    ("The Copperton.", "copperton"),
    ("  a   dolphin!! ", "dolphin"),
    ("An Apple, the Pear", "apple pear"),
    ("Theatre", "theatre"),              # articles only as whole words
    ("king-snake", "kingsnake"),         # punctuation removed, not replaced
    ("Port   Ember\n", "port ember"),
    ("", ""),
])
def test_normalize_answer_squad_rules(text, expected):
    assert normalize_answer(text) == expected


def test_exact_match_and_f1():
    assert exact_match(" Copperton", "copperton") == 1.0
    assert exact_match("Copperton Town", "Copperton") == 0.0
    assert f1("Copperton Town", "Copperton") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert f1("the king snake", "King snake.") == 1.0
    assert f1("", "") == 1.0 and f1("", "x") == 0.0 and f1("dog", "cat") == 0.0
    assert f1("snake snake king", "king snake") == pytest.approx(0.8)  # counts, not sets: p=2/3, r=1


def test_choice_predictions_acc_norm_and_first_max_tie():
    assert choice_predictions([-3.0, -1.0, -2.0, -5.0], "ABCD") == {"acc": 1, "acc_norm": 1}
    assert choice_predictions([-1.0, -1.0, -2.0, -5.0], "ABCD")["acc"] == 0  # numpy argmax: first max
    # lengths matter when labels differ in length
    assert choice_predictions([-4.0, -3.0], ["long", "x"]) == {"acc": 1, "acc_norm": 0}


# ------------------------------------------------------------------ few-shot sampling

def v03_reference(docs: list[dict], k: int, text, limit=None) -> list[str]:
    """The v0.3 algorithm written over document values (not indices), as the harness did."""
    task_docs = list(docs)
    rnd = random.Random()
    rnd.seed(42)
    rnd.shuffle(task_docs)
    out = []
    for doc in task_docs[:limit]:
        fewshotex = [x for x in rnd.sample(docs, k + 1) if x != doc][:k]
        shots = "\n\n".join(text(d) for d in fewshotex) + "\n\n" if k else ""
        out.append(shots + f"Question: {doc['question']} Answer:")
    return out


def test_fewshot_sampling_matches_v03_by_value_and_is_deterministic():
    docs, task = qa_docs(30), TASKS["Eval_QA"]
    prompts = build_prompts(task, docs, num_fewshot=5)
    expected = v03_reference(docs, 5, lambda d: f"Question: {d['question']} Answer: {d['answer']}")
    assert [p.context for p in prompts] == expected
    assert [p.context for p in build_prompts(task, docs, num_fewshot=5)] == expected
    assert [p.context for p in build_prompts(task, docs, 5, limit=7)] == expected[:7]  # limit = prefix
    assert sorted(p.doc_index for p in prompts) == list(range(30))  # every doc once, shuffled
    assert [p.doc_index for p in prompts] != list(range(30))


def test_current_doc_is_never_its_own_example():
    docs, task = qa_docs(6), TASKS["Eval_QA"]  # small split: the doc is drawn often
    dropped = 0
    for prompt in build_prompts(task, docs, num_fewshot=5):
        assert prompt.doc_index not in prompt.fewshot_indices
        assert len(prompt.fewshot_indices) == 5 and len(set(prompt.fewshot_indices)) == 5
        assert docs[prompt.doc_index]["question"] not in prompt.context.rsplit("\n\n", 1)[0]
        dropped += 1
    assert dropped == 6


def test_context_string_format_exactly():
    docs, task = mc_docs(4), TASKS["Eval_multiple_choice"]
    prompt = build_prompts(task, docs, num_fewshot=2)[0]
    a, b = (docs[i] for i in prompt.fewshot_indices)
    doc = docs[prompt.doc_index]

    def block(d):
        letters = "ABCD"
        lines = "".join(f"{letters[j]}. {c}\n" for j, c in enumerate(d["choices"]))
        return f"{d['question']}\n{lines}Answer:"

    expected = ("The following are multiple choice questions (with answers).\n\n"
                f"{block(a)} {'ABCD'[a['answer']]}\n\n{block(b)} {'ABCD'[b['answer']]}\n\n{block(doc)}")
    assert prompt.context == expected
    qa = build_prompts(TASKS["Eval_QA"], qa_docs(3), num_fewshot=0)[0]
    assert qa.context == f"Question: What is the capital of Land{qa.doc_index}? Answer:"  # k=0, no description


def test_num_fewshot_larger_than_split_allows():
    with pytest.raises(UserError, match="too large"):
        build_prompts(TASKS["Eval_QA"], qa_docs(5), num_fewshot=5)
    assert len(build_prompts(TASKS["Eval_QA"], qa_docs(5), num_fewshot=4)) == 5


# ------------------------------------------------------------------ registry

def test_seven_original_tasks_and_four_cloze_additions_with_the_right_kinds():
    """Two cloze forms of the MC tasks, and two likelihood forms of generative tasks (reverse and
    indirect reasoning), so a model that answers in the wrong form can still be scored on what it knows."""
    from factlearn.evaluate.tasks import ORIGINAL_TASKS

    assert set(ALL_TASKS) <= set(TASKS) and len(ORIGINAL_TASKS) == 7 and len(ALL_TASKS) == 11
    assert {t.name for t in get_tasks(None) if t.kind == "multiple_choice"} == {"Eval_multiple_choice",
                                                                                "Eval_2hop_reasoning"}
    assert {t.name for t in get_tasks(None) if t.kind == "cloze"} == {
        "Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze", "Eval_indirect_reasoning_cloze",
        "Eval_reverse_cloze"}
    with pytest.raises(UserError, match="valid tasks: Eval_QA"):
        get_tasks("Eval_QA,Eval_nope")


def test_register_task_rejects_duplicates_and_bad_kind():
    with pytest.raises(UserError, match="already registered"):
        register_task(TASKS["Eval_QA"])
    with pytest.raises(UserError, match="kind"):
        register_task(Task(name="x_bad", config="x", kind="rank", prompt_format="", target_format="", metrics=()))
    assert "x_bad" not in TASKS

"""The engine on the tiny model: fast paths equal naive reference implementations."""

from __future__ import annotations

import json

import datasets
import pytest
import torch

from factlearn.evaluate import TASKS, Task, evaluate, register_task, save_results, score_continuations
from factlearn.evaluate.scoring import encode_pair, generate_until, score_choices
from factlearn.models import load_model


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def cca_like(n: int = 10) -> datasets.DatasetDict:
    qa = [{"question": f"What is the capital of Land{i}?", "answer": f"City{i}"} for i in range(n)]
    mc = [{"question": f"Which city is the capital of Land{i}?" + " really" * (i % 3),
           "choices": [f"City{i}", "Copperton", "Sunfield", "Ghalenoth"], "answer": i % 4} for i in range(n)]
    return datasets.DatasetDict({"Eval_QA": datasets.Dataset.from_list(qa),
                                 "Eval_multiple_choice": datasets.Dataset.from_list(mc)})


def naive_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """Reference: one unpadded sequence, log-softmax over every position and the whole vocabulary."""
    ctx, cont = encode_pair(tokenizer, context, continuation)
    ids = torch.tensor([ctx + cont])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(ctx) - 1 + j, tok]) for j, tok in enumerate(cont))


def naive_greedy(model, tokenizer, context: str, stop: str, max_new: int) -> str:
    """Reference: no cache, no batching; re-run the whole sequence for every new token."""
    ids = tokenizer.encode(context)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            token = int(model(torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
            if stop in tokenizer.decode(new):
                break
    return tokenizer.decode(new, skip_special_tokens=True).split(stop)[0]


def test_mc_one_pass_equals_naive_full_softmax(tiny):
    model, tok = tiny
    task = TASKS["Eval_multiple_choice"]
    contexts = [f"Question {i}: which one?{' pad' * i}\nA. x\nB. y\nC. z\nD. w\nAnswer:" for i in range(7)]
    assert all(len(encode_pair(tok, contexts[0], c)[1]) == 1 for c in task.continuations())  # fast path used
    fast = score_choices(model, tok, contexts, task.continuations(), batch_size=3)
    for context, row in zip(contexts, fast):
        ref = [naive_loglik(model, tok, context, c) for c in task.continuations()]
        assert row == pytest.approx(ref, abs=1e-4)
        assert max(range(4), key=row.__getitem__) == max(range(4), key=ref.__getitem__)


def test_multi_token_choices_fall_back_and_still_match(tiny):
    model, tok = tiny
    choices = [" Copperton", " Willowcreek x", " Sunfield", " d"]
    contexts = ["The capital is", "Another, longer context where the capital is"]
    assert any(len(encode_pair(tok, contexts[0], c)[1]) > 1 for c in choices)
    fast = score_choices(model, tok, contexts, choices, batch_size=8)
    for context, row in zip(contexts, fast):
        assert row == pytest.approx([naive_loglik(model, tok, context, c) for c in choices], abs=1e-4)


def test_score_continuations_trailing_space_and_batching(tiny):
    model, tok = tiny
    contexts = ["The capital of Andoria is ", "Question: x? Answer:", "a" * 30, ""]
    conts = ["Copperton", " Ghalenoth is big", " b", "dolphin"]
    got = score_continuations(model, tok, contexts, conts, batch_size=2)
    ref = [naive_loglik(model, tok, c, k) if c else None for c, k in zip(contexts, conts)]
    assert got[:3] == pytest.approx(ref[:3], abs=1e-4)
    assert got[3] < 0  # empty context: scored after the prefix token, as lm-eval does
    # the trailing space of a context moves onto the continuation (lm-eval's rule)
    assert encode_pair(tok, "is ", "X") == encode_pair(tok, "is", " X")


@pytest.mark.parametrize("stop", ["w", " w", ":"])
def test_batched_generation_equals_unbatched_and_naive(tiny, stop):
    model, tok = tiny
    contexts = ["The capital city of Andoria is", "Question: What is the capital of Borealis? Answer:",
                "A. B. C.", "dolphin jellyfish", "The former and the latter", "x" * 40]
    batched = generate_until(model, tok, contexts, stop=stop, max_new_tokens=12, batch_size=6)
    single = generate_until(model, tok, contexts, stop=stop, max_new_tokens=12, batch_size=1)
    assert batched == single
    assert batched == [naive_greedy(model, tok, c, stop, 12) for c in contexts]
    assert len(set(batched)) > 2  # rows really differ (and some stop early)


def test_evaluate_records_metrics_and_saved_files(tiny, tmp_path):
    model, tok = tiny
    model.train()
    result = evaluate(model, tok, tasks=["Eval_QA", "Eval_multiple_choice"], data=cca_like(), num_fewshot=3,
                      limit=6, batch_size=4)
    assert model.training  # mode restored for eval-in-the-loop
    assert set(result.metrics) == {"Eval_QA", "Eval_multiple_choice"}
    for rec in result.records["Eval_multiple_choice"]:
        assert rec["correct"] == (rec["prediction"] == rec["gold"])
        assert rec["prompt"].startswith("The following are multiple choice questions (with answers).\n\n")
    mc = result.records["Eval_multiple_choice"]
    assert result.metrics["Eval_multiple_choice"]["acc"] == pytest.approx(sum(r["correct"] for r in mc) / 6)
    assert all(len(recs) == 6 for recs in result.records.values())
    path = save_results(result, tmp_path / "out")
    saved = json.loads(path.read_text())
    assert saved["metrics"] == result.metrics and "torch" in saved["versions"]
    lines = (tmp_path / "out" / "records" / "Eval_QA.jsonl").read_text().splitlines()
    assert [json.loads(x)["prediction"] for x in lines] == [r["prediction"] for r in result.records["Eval_QA"]]


def test_registering_a_new_task_needs_no_engine_change(tiny):
    model, tok = tiny
    register_task(Task(name="Capital_cloze", config="Cloze", kind="generate", prompt_format="{question} =",
                       target_format=" {answer}", metrics=("exact_match",), stop=" ", max_new_tokens=4),
                  overwrite=True)
    try:
        rows = [{"question": f"capital({i})", "answer": f"c{i}"} for i in range(5)]
        result = evaluate(model, tok, tasks=["Capital_cloze"], data={"Cloze": datasets.Dataset.from_list(rows)},
                          num_fewshot=2)
        recs = result.records["Capital_cloze"]
        assert len(recs) == 5 and set(result.metrics["Capital_cloze"]) == {"exact_match"}
        assert recs[0]["prompt"].endswith(f"capital({recs[0]['doc_index']}) =")
        assert " " not in recs[0]["prediction"]  # its own stop string was used
    finally:
        TASKS.pop("Capital_cloze")


def test_evaluate_runs_on_a_peft_model(tiny):
    """Eval-in-the-loop sees peft models; a fresh LoRA (B = 0) must give the base model's answers."""
    import copy

    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    kwargs = dict(tasks=["Eval_QA", "Eval_multiple_choice"], data=cca_like(), num_fewshot=2, limit=3, batch_size=2)
    base = evaluate(model, tok, **kwargs)
    lora = evaluate(get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])),
                    tok, **kwargs)
    assert [r["prediction"] for r in lora.records["Eval_QA"]] == [r["prediction"] for r in base.records["Eval_QA"]]
    for a, b in zip(lora.records["Eval_multiple_choice"], base.records["Eval_multiple_choice"]):
        assert a["logliks"] == pytest.approx(b["logliks"], abs=1e-5)

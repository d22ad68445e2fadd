"""factlearn.api and the TrainerCallback: measuring a model trained anywhere, in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factlearn import api
from factlearn.errors import UserError
from factlearn.evaluate import EvalResult, evaluate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def world():
    return api.load_world(n_countries=4)


def test_load_world_generated_and_facts_file(world):
    assert "Eval_QA" in world.tasks and "Facts" in world.configs
    people = api.load_world(ROOT / "examples" / "people.yaml")
    assert people.source.endswith("people.yaml") and "Eval_QA" in people.tasks
    assert set(people.tasks) < set(world.tasks)  # a facts file lacks the CCA-only tasks


def test_evaluate_model_gives_the_engine_records_and_the_cli_files(tiny, world, tmp_path):
    model, tok = tiny
    result = api.evaluate_model(model, tok, world, tasks=["Eval_QA", "Eval_multiple_choice_cloze"], limit=3,
                                out_dir=tmp_path / "ev")
    direct = evaluate(model, tok, tasks=["Eval_QA", "Eval_multiple_choice_cloze"], data=world.data, limit=3)
    assert result.metrics == direct.metrics and result.intervals == direct.intervals
    assert [r["prediction"] for r in result.records["Eval_QA"]] == [r["prediction"] for r in direct.records["Eval_QA"]]
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert saved["metrics"] == result.metrics and set(saved["ci"]["Eval_QA"]) == {"exact_match", "f1"} or \
        set(saved["ci"]["Eval_QA"]) == set(result.metrics["Eval_QA"])
    lines = (tmp_path / "ev" / "records" / "Eval_QA.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_a_world_lacking_a_task_is_a_user_error_naming_it_nothing_written(tiny, world, tmp_path):
    model, tok = tiny
    people = api.load_world(ROOT / "examples" / "people.yaml")
    missing = next(t for t in world.tasks if t not in people.tasks)
    with pytest.raises(UserError, match=missing):
        api.evaluate_model(model, tok, people, tasks=[missing], out_dir=tmp_path / "ev")
    assert not (tmp_path / "ev").exists()


def test_probe_model(tiny, world):
    model, tok = tiny
    probe = api.probe_model(model, tok, world, max_wrong=2)
    assert len(probe.facts) == len(world.data["Facts"])
    assert {"comparison", "negation"} <= set(probe.summary["all"])


def _qa_result(correct: list[bool]) -> EvalResult:
    records = [{"doc_index": i, "correct": c, "exact_match": float(c)} for i, c in enumerate(correct)]
    return EvalResult(metrics={"Eval_QA": {"exact_match": sum(correct) / len(correct)}},
                      records={"Eval_QA": records})


def _f1(entries):
    return next(e for e in entries if e["id"] == "F1")["verdict"]


def test_conclusions_follow_the_evidence():
    """F1 (narrative training raises QA): supported when the trained model answers what the base could not,
    contradicted when the trained model answers less."""
    low, high = _qa_result([False] * 30), _qa_result([True] * 27 + [False] * 3)
    learned = api.conclusions({("m", "base", "base"): low, ("m", "full", "narrative"): high})
    assert _f1(learned) == "supported"
    half = _qa_result([True, False] * 15)
    worse = api.conclusions({("m", "base", "base"): half, ("m", "full", "narrative"): low})
    assert _f1(worse) == "contradicted"
    with pytest.raises(UserError, match="condition key"):
        api.conclusions({("m", "full"): low})


def _tiny_trainer(tiny_model_dir, tmp_path, max_steps=4):
    import datasets
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    texts = [f"The capital city of Country{i} is City{i}." for i in range(16)]
    ds = datasets.Dataset.from_dict({"text": texts}).map(lambda b: tok(b["text"]), batched=True,
                                                          remove_columns=["text"])
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=max_steps, per_device_train_batch_size=4,
                             learning_rate=1e-3, logging_steps=1, report_to=["tensorboard"],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                   data_collator=DataCollatorForLanguageModeling(tok, mlm=False))


def test_callback_evaluates_every_n_steps_through_the_trainers_loggers(tiny_model_dir, world, tmp_path):
    trainer = _tiny_trainer(tiny_model_dir, tmp_path)
    cb = api.FactlearnEvalCallback(world, tasks=["Eval_QA"], every_n_steps=2, out_dir=tmp_path / "cb", limit=2)
    cb.attach(trainer)
    trainer.train()
    assert cb.evaluated_steps == [2, 4]
    for step in (2, 4):
        saved = json.loads((tmp_path / "cb" / f"step-{step}" / "results.json").read_text())
        assert saved["config"]["step"] == step and "exact_match" in saved["metrics"]["Eval_QA"]
        assert len((tmp_path / "cb" / f"step-{step}" / "records" / "Eval_QA.jsonl").read_text().splitlines()) == 2
    logged = [h for h in trainer.state.log_history if "factlearn/Eval_QA/exact_match" in h]
    assert [h["step"] for h in logged] == [2, 4]
    # the trainer's own TensorBoard logger got them too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = {p.parent for p in (tmp_path / "hf").rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/factlearn/Eval_QA/exact_match")] == [2, 4]


def test_callback_refuses_a_world_lacking_the_task_before_training(tmp_path, world):
    people = api.load_world(ROOT / "examples" / "people.yaml")
    missing = next(t for t in world.tasks if t not in people.tasks)
    with pytest.raises(UserError, match=f"task {missing} needs"):
        api.FactlearnEvalCallback(people, tasks=["Eval_QA", missing], every_n_steps=2, out_dir=tmp_path / "cb")
    with pytest.raises(UserError, match="unknown task|Eval_nope"):
        api.FactlearnEvalCallback(people, tasks=["Eval_nope"], out_dir=tmp_path / "cb")
    assert not (tmp_path / "cb").exists()


def test_callback_in_trl_sft_trainer(tiny_model_dir, world, tmp_path):
    trl = pytest.importorskip("trl")
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ds = datasets.Dataset.from_dict({"text": [f"The capital city of Country{i} is City{i}." for i in range(8)]})
    trainer = trl.SFTTrainer(model=model, train_dataset=ds, processing_class=tok,
                             args=trl.SFTConfig(output_dir=str(tmp_path / "sft"), max_steps=2,
                                                per_device_train_batch_size=4, report_to=[], save_strategy="no",
                                                use_cpu=True, disable_tqdm=True, logging_steps=1))
    cb = api.FactlearnEvalCallback(world, tasks=["Eval_QA"], every_n_steps=2, out_dir=tmp_path / "cb", limit=2)
    cb.attach(trainer)
    trainer.train()
    assert (tmp_path / "cb" / "step-2" / "results.json").is_file()
    assert any("factlearn/Eval_QA/exact_match" in h for h in trainer.state.log_history)

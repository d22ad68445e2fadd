"""`factlearn eval` / `export-lm-eval`: bad input, and identical answers to lm-evaluation-harness 0.4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FACTLEARN = [sys.executable, "-m", "factlearn"]


def run_cli(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*FACTLEARN, *args], capture_output=True, text=True, env=os.environ,
                          timeout=timeout, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_unknown_task_lists_valid_ones(tiny_model_dir):
    proc = run_cli("eval", str(tiny_model_dir), "--tasks", "Eval_QA,Eval_bogus")
    assert_one_line_error(proc, "Eval_bogus", "valid tasks:", "Eval_2hop_reasoning_raw")


def test_model_folder_without_weights(tmp_path, tiny_model_dir):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    assert_one_line_error(run_cli("eval", str(folder), "--limit", "1"), "no weights")


def test_num_fewshot_too_large_for_the_split(tiny_model_dir):
    # a 4-country world has 4 Eval_2hop_reasoning_raw rows: 5-shot needs 6 per draw
    proc = run_cli("eval", str(tiny_model_dir), "--n-countries", "4", "--tasks", "Eval_2hop_reasoning_raw")
    assert_one_line_error(proc, "num_fewshot 5 is too large", "--num-fewshot 3")


def test_adapter_for_a_different_base(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from factlearn.models import model_fingerprint
    from factlearn.testing import make_tiny_model

    other = AutoModelForCausalLM.from_pretrained(make_tiny_model(tmp_path / "other", hidden=32))
    adapter = tmp_path / "adapter"
    get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    (adapter / "factlearn_base.json").write_text(json.dumps(
        {"base_spec": str(tmp_path / "other"), "fingerprint": model_fingerprint(other.config)}))
    proc = run_cli("eval", str(tiny_model_dir), "--adapter", str(adapter), "--n-countries", "6", "--limit", "1")
    assert_one_line_error(proc, "different base model")


def _factlearn_and_lm_eval(tmp_path, model_dir, tasks: list[str], limit: int, *eval_args: str):
    """Export the tasks, run `factlearn eval` and lm-eval 0.4 on them; return (our records, lm-eval samples)."""
    from factlearn.evaluate.export import lm_eval_command, read_lm_eval_samples

    export_dir = tmp_path / "lm-eval-tasks"
    proc = run_cli("export-lm-eval", str(export_dir), "--tasks", ",".join(tasks), "--n-countries", "6")
    assert proc.returncode == 0, proc.stderr
    ours = run_cli("eval", str(model_dir), "--tasks", ",".join(tasks), "--n-countries", "6", "--limit",
                   str(limit), *eval_args, "--out", str(tmp_path / "ours"), "--device", "cpu")
    assert ours.returncode == 0, ours.stderr
    records = {t: [json.loads(x) for x in (tmp_path / "ours" / "records" / f"{t}.jsonl").read_text().splitlines()]
               for t in tasks}
    cmd = lm_eval_command(model_dir, export_dir, tasks, tmp_path / "lm-eval-out", limit=limit)
    theirs = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=600)
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    return records, read_lm_eval_samples(tmp_path / "lm-eval-out")


def test_lm_eval_gives_identical_prompts_and_answers(tmp_path, tiny_model_dir):
    """Export a generated world, run lm-eval 0.4 (--model hf) on it, compare every item with factlearn eval.

    What this shows independently of factlearn's code: lm-eval fed the model byte-identical prompts and
    got the same answer on every item (its own generation and its own multiple-choice argmax), and
    lm-eval's own `acc` equals ours. What it does not show: that our f1 is right. lm-eval has no SQuAD
    f1 of its own offline, so the export hands it a copy of factlearn's metric code (export.py, utils.py);
    the f1 equality below only checks that lm-eval averages that copy over the same items to our number.
    The f1 and exact-match rules themselves are tested against hand-worked cases in test_eval_tasks.py.
    """
    from factlearn.evaluate.export import compare_with_lm_eval

    tasks, limit = ["Eval_QA", "Eval_2hop_reasoning"], 4
    records, samples = _factlearn_and_lm_eval(tmp_path, tiny_model_dir, tasks, limit, "--batch-size", "3")
    assert {t: len(s) for t, s in samples.items()} == {t: limit for t in tasks}
    assert compare_with_lm_eval(records, samples) == {t: [] for t in tasks}
    # the comparison is not vacuous: a changed answer is reported
    records["Eval_QA"][0] = {**records["Eval_QA"][0], "prediction": "something else"}
    assert len(compare_with_lm_eval(records, samples)["Eval_QA"]) == 1
    # acc is lm-eval's own metric; f1 is factlearn's code run by lm-eval (see the docstring)
    lm_results = json.loads(next((tmp_path / "lm-eval-out").rglob("results_*.json")).read_text())["results"]
    ours_metrics = json.loads((tmp_path / "ours" / "results.json").read_text())["metrics"]
    assert lm_results["factlearn_Eval_2hop_reasoning"]["acc,none"] == pytest.approx(ours_metrics["Eval_2hop_reasoning"]["acc"])
    assert lm_results["factlearn_Eval_QA"]["f1,none"] == pytest.approx(ours_metrics["Eval_QA"]["f1"])


def test_lm_eval_gives_identical_answers_on_the_cloze_tasks(tmp_path, tiny_model_dir):
    """The cloze tasks (factlearn's additions: the two MC sets and the likelihood forms of indirect reasoning
    and reverse, with one candidate per entity of the answer's type) through lm-eval 0.4: same prompts,
    same chosen text per item, and lm-eval's own acc and acc_norm (per-character normalised) equal ours."""
    from factlearn.evaluate.export import compare_with_lm_eval

    tasks, limit = ["Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze", "Eval_indirect_reasoning_cloze",
                    "Eval_reverse_cloze"], 6
    records, samples = _factlearn_and_lm_eval(tmp_path, tiny_model_dir, tasks, limit)
    assert {t: len(s) for t, s in samples.items()} == {t: limit for t in tasks}
    assert compare_with_lm_eval(records, samples) == {t: [] for t in tasks}
    # predictions are choice texts (not letters), so the comparison checks the text lm-eval picked
    assert {r["prediction"] for r in records[tasks[0]]} - {"A", "B", "C", "D"}
    lm_results = json.loads(next((tmp_path / "lm-eval-out").rglob("results_*.json")).read_text())["results"]
    ours_metrics = json.loads((tmp_path / "ours" / "results.json").read_text())["metrics"]
    for t in tasks:
        for m in ("acc", "acc_norm"):
            assert lm_results[f"factlearn_{t}"][f"{m},none"] == pytest.approx(ours_metrics[t][m]), (t, m)


@pytest.mark.slow
def test_default_model_answers_a_few_questions(tmp_path, default_model_dir):
    """SmolLM2 end to end through the CLI: QA on three items of the canonical world."""
    proc = run_cli("eval", "--tasks", "Eval_QA,Eval_multiple_choice", "--limit", "3", "--out", str(tmp_path / "e"),
                   "--device", "cpu", timeout=900)
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((tmp_path / "e" / "results.json").read_text())
    records = [json.loads(x) for x in (tmp_path / "e" / "records" / "Eval_QA.jsonl").read_text().splitlines()]
    assert len(records) == 3 and saved["config"]["num_fewshot"] == 5
    assert all(r["prompt"].count("Question:") == 6 and "\n" not in r["prediction"] for r in records)
    # a pretrained model copies the 5-shot format: short non-empty answers, not rambling text
    assert all(0 < len(r["prediction"].split()) <= 6 for r in records)
    assert "Eval_QA" in proc.stdout and "exact_match" in proc.stdout


def test_control_eval_marks_tasks_and_writes_capability(tmp_path, tiny_model_dir):
    """The tiny random model knows no capital: every control task must come out beyond it, with its test."""
    proc = run_cli("eval", str(tiny_model_dir), "--control", "--tasks", "Eval_QA,Eval_multiple_choice_cloze",
                   "--limit", "8", "--out", str(tmp_path / "c"), "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["config"]["data"] == "control"
    cap = results["capability"]
    assert set(cap) == {"Eval_QA", "Eval_multiple_choice_cloze"}
    assert cap["Eval_QA"]["chance"] == pytest.approx(1 / 20) and cap["Eval_multiple_choice_cloze"]["chance"] == 0.25
    for entry in cap.values():
        assert entry["n"] == 8 and 0 <= entry["interval"][0] <= entry["value"] <= entry["interval"][1] <= 1
        assert entry["level"] == 0.95 and entry["successes"] == round(entry["value"] * 8)
        assert entry["beyond"] == (entry["p_value"] >= 0.05)
    assert cap["Eval_QA"]["beyond"] is True  # a random model gets no capital right
    assert set(results["ci"]["Eval_QA"]) == {"exact_match", "f1"}
    assert results["contamination"]["Eval_QA"]["share"] == 0.0
    assert "BEYOND" in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--control", "--tasks", "Eval_2hop_reasoning_cloze"], "have no control: the animal relation is fictional"),
    (["--control", "--data", "hub"], "drop --data"),
    (["--shots", "nearby"], "unknown shots option 'nearby'"),
    (["--tasks", "Eval_QA,Eval_nope"], "unknown task(s) Eval_nope"),
])
def test_measurement_flags_bad_input_is_one_line_and_writes_nothing(tmp_path, tiny_model_dir, args, message):
    proc = run_cli("eval", str(tiny_model_dir), *args, "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, message)
    assert not (tmp_path / "out").exists()


def test_control_with_a_hub_id_offline_is_one_line(tmp_path):
    proc = run_cli("eval", "meta-llama/Meta-Llama-3-8B", "--control", "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "meta-llama/Meta-Llama-3-8B")
    assert not (tmp_path / "out").exists()

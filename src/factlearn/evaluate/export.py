"""Export tasks for lm-evaluation-harness 0.4, so `lm_eval --include_path OUT` sees our exact prompts.

The few-shot sampling of the original (v0.3, see fewshot.py) differs from lm-eval 0.4's sampler, so each
item's full context is pre-rendered into the data file and lm-eval runs it 0-shot with no description:
its prompt is then byte-identical to ours. Items are written in our evaluation order, so
`lm_eval --limit N` evaluates the same items as `factlearn eval --limit N`.
- generative: output_type generate_until, until ["\\n"], greedy, max_gen_toks = the task's max_new_tokens;
  exact_match / f1 come from OUT/utils.py (a self-contained copy of the SQuAD rules in metrics.py):
  lm-eval 0.4 has no SQuAD f1 (its `f1` is sklearn's classification F1), so lm-eval's numbers for
  these two check its averaging over the same items, not the metric code itself.
- multiple choice: output_type multiple_choice, choices ["A","B","C","D"], target_delimiter " ", so
  lm-eval scores " A".." D" after the context, as we do; acc / acc_norm are lm-eval's own.
- cloze (factlearn's addition): output_type multiple_choice with each row's own `choices` column as
  doc_to_choice, so lm-eval scores " {choice}" after the context; acc / acc_norm are lm-eval's own.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from factlearn.atomic import atomic_dir
from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED
from factlearn.errors import UserError
from factlearn.evaluate import metrics
from factlearn.evaluate.engine import resolve_data, task_docs, world_entities
from factlearn.evaluate.fewshot import build_prompts, fact_keys
from factlearn.evaluate.tasks import CLOZE, GENERATE, Task, get_tasks, TASKS

PREFIX = "factlearn_"


def lm_eval_task_name(task: str) -> str:
    """The name a factlearn task has inside lm-eval (prefixed, so it cannot clash with lm-eval's own)."""
    return PREFIX + task


def _utils_source() -> str:
    """OUT/utils.py: lm-eval imports it by path, so it carries its own copy of the metric code."""
    parts = ["# Written by `factlearn export-lm-eval`: metrics for the generative tasks (SQuAD rules).",
             "import re", "import string", "from collections import Counter", "",
             "_PUNCT = set(string.punctuation)", '_ARTICLES = re.compile(r"\\b(a|an|the)\\b", re.UNICODE)', ""]
    for fn in (metrics.normalize_answer, metrics.exact_match, metrics.f1):
        parts += [inspect.getsource(fn), ""]
    parts += ["def process_results(doc, results):",
              "    prediction, gold = results[0], doc['answer']",
              "    return {'exact_match': exact_match(prediction, gold), 'f1': f1(prediction, gold)}", ""]
    return "\n".join(parts)


def _yaml_for(task: Task, data_file: Path) -> str:
    # JSON is valid YAML; only the `!function` tag needs YAML syntax, so it is appended as text.
    config: dict = {
        "task": lm_eval_task_name(task.name),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "doc_to_text": "context",
        "doc_to_target": "answer",
        "num_fewshot": 0,
        "metadata": {"version": 1.0, "source": "factlearn export-lm-eval"},
    }
    if task.kind == GENERATE:
        config.update({
            "output_type": "generate_until",
            "generation_kwargs": {"until": [task.stop], "do_sample": False, "max_gen_toks": task.max_new_tokens},
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in task.metrics],
        })
        lines = [f"{k}: {json.dumps(v)}" for k, v in config.items()]
        lines.append("process_results: !function utils.process_results")
    else:
        config.update({
            "output_type": "multiple_choice",
            "doc_to_choice": "choices" if task.kind == CLOZE else list(task.choice_labels),
            "target_delimiter": " ",
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in task.metrics],
        })
        lines = [f"{k}: {json.dumps(v)}" for k, v in config.items()]
    return "\n".join(lines) + "\n"


def _row(task: Task, doc: dict, context: str, doc_index: int) -> dict:
    row = {"context": context, "answer": task.gold(doc) if task.kind == GENERATE else int(doc["answer"]),
           "doc_index": doc_index}
    if task.kind == CLOZE:
        row["choices"] = [str(c) for c in doc["choices"]]
    return row


def export_lm_eval(out_dir: str | Path, tasks: list[str] | str | None = None, data=None, num_fewshot: int = 5,
                   n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED, overwrite: bool = False, shots: str = "same-split") -> list[str]:
    """Write OUT/<lm-eval task>.yaml, OUT/data/<task>.jsonl and OUT/utils.py; return the lm-eval task names.

    Each data row: {"context": full prompt, "answer": gold text or gold index, "doc_index": row in the split}.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise UserError(f"{out_dir} already exists; pass another folder or --overwrite")
    selected = get_tasks(tasks)
    dataset = resolve_data(data, [t.config for t in selected] + ["Facts"], n_countries, seed)
    entities = world_entities(dataset)
    names = []
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        (tmp / "utils.py").write_text(_utils_source())
        for task in selected:
            docs = task_docs(dataset, task)
            prompts = build_prompts(task, docs, num_fewshot, shots=shots, keys=fact_keys(task, docs, entities))
            rows = [_row(task, docs[p.doc_index], p.context, p.doc_index) for p in prompts]
            (tmp / "data" / f"{task.name}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            # data_files must name the final location, not the temporary folder being built.
            (tmp / f"{lm_eval_task_name(task.name)}.yaml").write_text(
                _yaml_for(task, out_dir / "data" / f"{task.name}.jsonl"))
            names.append(lm_eval_task_name(task.name))
    return names


# --------------------------------------------------------------------------- checking against lm-eval

def lm_eval_command(model_dir: str | Path, include_path: str | Path, tasks: list[str], output_path: str | Path,
                    limit: int | None = None, batch_size: int | str = 1, device: str = "cpu",
                    dtype: str = "float32") -> list[str]:
    """The `lm_eval` command line that runs exported tasks with per-item logs (for tests and benchmarks)."""
    import shutil
    import sys

    exe = shutil.which("lm_eval") or str(Path(sys.executable).with_name("lm_eval"))
    cmd = [exe, "--model", "hf", "--model_args", f"pretrained={model_dir},dtype={dtype}", "--device", device,
           "--include_path", str(include_path), "--tasks", ",".join(lm_eval_task_name(t) for t in tasks),
           "--batch_size", str(batch_size), "--log_samples", "--output_path", str(output_path)]
    return cmd + (["--limit", str(limit)] if limit else [])


def read_lm_eval_samples(output_path: str | Path) -> dict[str, dict[int, dict]]:
    """lm-eval's --log_samples files under output_path: {factlearn task: {doc_index: sample}}."""
    samples: dict[str, dict[int, dict]] = {}
    for path in sorted(Path(output_path).rglob("samples_*.jsonl")):
        task = path.name[len("samples_"):].rsplit("_", 1)[0]
        if not task.startswith(PREFIX):
            continue
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        samples[task[len(PREFIX):]] = {int(r["doc"]["doc_index"]): r for r in rows}
    return samples


def _lm_eval_prediction(task: Task, sample: dict) -> str:
    if task.kind == GENERATE:
        return sample["filtered_resps"][0]
    logliks = [float(r[0]) for r in sample["filtered_resps"]]
    return task.choice_texts(sample["doc"])[metrics.argmax(logliks)]


def compare_with_lm_eval(records: dict[str, list[dict]], samples: dict[str, dict[int, dict]]) -> dict[str, list[dict]]:
    """Items whose prompt or answer differ between factlearn records and lm-eval samples, per task.

    Only items present in both are compared (lm-eval --limit N covers our first N); a task missing in
    lm-eval's output counts all its items as differing.
    """
    diffs: dict[str, list[dict]] = {}
    for name, recs in records.items():
        theirs = samples.get(name)
        if theirs is None:
            diffs[name] = [{"doc_index": r["doc_index"], "why": "task missing in lm-eval output"} for r in recs]
            continue
        task, bad = TASKS[name], []
        for rec in recs:
            sample = theirs.get(rec["doc_index"])
            if sample is None:
                continue
            prompt = sample["arguments"]["gen_args_0"]["arg_0"]  # the context lm-eval actually fed the model
            prediction = _lm_eval_prediction(task, sample)
            if prompt != rec["prompt"] or prediction != rec["prediction"]:
                bad.append({"doc_index": rec["doc_index"], "factlearn": rec["prediction"], "lm_eval": prediction,
                            "same_prompt": prompt == rec["prompt"]})
        diffs[name] = bad
    return diffs

"""The peers factlearn's eval engine is measured against, on the same prompts and the same model object.

- `lm_eval_answers`: lm-evaluation-harness 0.4 itself (HFLM around the model, batch 1) on the tasks
  `factlearn export-lm-eval` writes — the comparison bench_eval.py makes, in one process.
- `baseline_answers`: where lm-eval is not installed (the GPU machine), a loop that does what its HFLM
  does at batch 1: one forward per distinct context+continuation (a one-token continuation reuses its
  context's forward, as lm-eval's cache does), `model.generate` per generation item stopping at the
  task's stop string; tokenization by factlearn.evaluate.scoring, which follows lm-eval's rules.

Both return ({(task, doc_index): answer}, seconds), the answers comparable with the engine's
`record["prediction"]`.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def baseline_answers(model, tokenizer, records: dict, data, deadline: float) -> tuple[dict, float]:
    """Each item's answer at batch 1, as lm-eval's HFLM computes it; items taken round-robin over tasks
    until `deadline`, so every task is covered when time runs short. Returns ({(task, doc): answer}, s)."""
    import torch

    from factlearn.evaluate.engine import task_docs
    from factlearn.evaluate.metrics import choice_predictions
    from factlearn.evaluate.scoring import encode_pair, max_length
    from factlearn.evaluate.tasks import GENERATE, TASKS

    device, limit = next(model.parameters()).device, max_length(model, tokenizer)
    queues = {task: list(recs) for task, recs in records.items()}
    jobs = [(task, queues[task][i]) for i in range(max(map(len, queues.values()))) for task in queues
            if i < len(queues[task])]
    docs = {task: task_docs(data, TASKS[task]) for task in queues}
    answers, t0 = {}, time.perf_counter()
    with torch.inference_mode():
        for task_name, rec in jobs:
            if time.perf_counter() > deadline and answers:
                break
            task, doc = TASKS[task_name], docs[task_name][rec["doc_index"]]
            if task.kind == GENERATE:
                answers[(task_name, rec["doc_index"])] = _generate_one(model, tokenizer, rec["prompt"], task, limit)
                continue
            conts = task.doc_continuations(doc) if task.kind == "cloze" else task.continuations()
            logliks, cache = [], {}
            for cont in conts:
                ctx_ids, cont_ids = encode_pair(tokenizer, rec["prompt"], cont)
                inp = tuple((ctx_ids + cont_ids)[-(limit + 1):][:-1])
                if inp not in cache:  # lm-eval's one-token-continuation reuse: one forward per context
                    cache[inp] = torch.log_softmax(model(torch.tensor([inp], device=device)).logits[0].float(), -1)
                scored = cache[inp][-len(cont_ids):]
                logliks.append(float(scored.gather(-1, torch.tensor(cont_ids, device=device)[:, None]).sum()))
            names = task.choice_texts(doc)
            answers[(task_name, rec["doc_index"])] = names[choice_predictions(logliks, names)["acc"]]
    return answers, time.perf_counter() - t0


def _generate_one(model, tokenizer, prompt: str, task, limit: int) -> str:
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from factlearn.evaluate.scoring import encode

    ids = torch.tensor([encode(tokenizer, prompt)[-(limit - task.max_new_tokens):]], device=next(model.parameters()).device)

    class Stop(StoppingCriteria):  # lm-eval decodes what was generated and looks for the stop string
        def __call__(self, input_ids, scores, **kwargs):
            return task.stop in tokenizer.decode(input_ids[0, ids.shape[1]:])

    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=task.max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id,
                         stopping_criteria=StoppingCriteriaList([Stop()]))
    text = tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)
    return text.split(task.stop)[0] if task.stop else text


def lm_eval_answers(model, tokenizer, data, tasks: list[str], limit: int) -> tuple[dict, float]:
    """lm-eval 0.4 in this process (HFLM around the same model object, batch 1) on factlearn's exported tasks."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from factlearn.evaluate.export import PREFIX, _lm_eval_prediction, export_lm_eval
    from factlearn.evaluate.tasks import TASKS

    with tempfile.TemporaryDirectory() as tmp:
        names = export_lm_eval(Path(tmp) / "tasks", tasks=tasks, data=data)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
        t0 = time.perf_counter()
        out = simple_evaluate(model=lm, tasks=names, task_manager=TaskManager(include_path=str(Path(tmp) / "tasks")),
                              limit=limit, log_samples=True, num_fewshot=None)
        seconds = time.perf_counter() - t0
    answers = {}
    for lm_name, samples in out["samples"].items():
        task = TASKS[lm_name[len(PREFIX):]]
        for sample in samples:
            answers[(task.name, int(sample["doc"]["doc_index"]))] = _lm_eval_prediction(task, sample)
    return answers, seconds

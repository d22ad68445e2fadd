"""The per-request scoring path, kept as the reference the shared-context primitive must equal.

Each (context, continuation) pair is its own sequence here: the context's forward pass is repeated for
every continuation after it. That is the slow but obviously-right path (lm-eval 0.4's `loglikelihood`
rules, verbatim from before scoring.py shared contexts). Only the tests (tests/test_eval_scoring.py)
and the benchmarks (benchmarks/bench_probes.py, bench_cloze.py, gpu_check.py) call it; the product
scores through factlearn.evaluate.scoring.
"""

from __future__ import annotations

from typing import Sequence

from factlearn.evaluate.scoring import _batches, _device, _left_pad, _pad_id, _tail_logits, encode_pair, max_length


def reference_score_continuations(model, tokenizer, contexts: Sequence[str], continuations: Sequence[str],
                                  batch_size: int = 16) -> list[float]:
    """Sum log-probability of each continuation given its context, one full sequence per pair."""
    import torch

    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    limit = max_length(model, tokenizer)
    items = []
    for context, continuation in zip(contexts, continuations):
        ctx_ids, cont_ids = encode_pair(tokenizer, context, continuation)
        items.append(((ctx_ids + cont_ids)[-(limit + 1):][:-1], cont_ids))
    scores = [0.0] * len(items)
    order = sorted((i for i in range(len(items)) if items[i][1]), key=lambda i: -len(items[i][0]))
    device = _device(model)
    with torch.inference_mode():
        for batch in _batches(order, batch_size):
            keep = max(len(items[i][1]) for i in batch)
            ids, mask = _left_pad([items[i][0] for i in batch], _pad_id(tokenizer), device)
            logprobs = torch.log_softmax(_tail_logits(model, ids, mask, keep), dim=-1)
            for row, i in enumerate(batch):
                cont = torch.tensor(items[i][1], device=device)
                scored = logprobs[row, keep - len(cont):, :]
                scores[i] = float(scored.gather(-1, cont[:, None]).sum())
    return scores


def reference_score_choices(model, tokenizer, contexts: Sequence[str], choices: Sequence[str],
                            batch_size: int = 16) -> list[list[float]]:
    """Every choice after every context: one pass per context when every choice is one token after it,
    else one full sequence per (context, choice) pair."""
    import torch

    limit = max_length(model, tokenizer)
    one_pass: list[tuple[int, list[int], list[int]]] = []  # (item, context ids, choice token ids)
    fallback: list[int] = []
    for i, context in enumerate(contexts):
        pairs = [encode_pair(tokenizer, context, choice) for choice in choices]
        if all(len(cont) == 1 for _, cont in pairs):
            one_pass.append((i, pairs[0][0][-limit:], [cont[0] for _, cont in pairs]))
        else:
            fallback.append(i)
    scores: list[list[float]] = [[] for _ in contexts]
    one_pass.sort(key=lambda item: -len(item[1]))
    device = _device(model)
    with torch.inference_mode():
        for start in range(0, len(one_pass), max(1, batch_size)):
            batch = one_pass[start:start + max(1, batch_size)]
            ids, mask = _left_pad([ctx for _, ctx, _ in batch], _pad_id(tokenizer), device)
            logprobs = torch.log_softmax(_tail_logits(model, ids, mask, 1)[:, -1, :], dim=-1)
            token_ids = torch.tensor([toks for _, _, toks in batch], device=device)
            chosen = logprobs.gather(-1, token_ids).tolist()
            for (i, _, _), row in zip(batch, chosen):
                scores[i] = row
    if fallback:
        flat = reference_score_continuations(model, tokenizer, [contexts[i] for i in fallback for _ in choices],
                                             [c for _ in fallback for c in choices], batch_size)
        for n, i in enumerate(fallback):
            scores[i] = flat[n * len(choices):(n + 1) * len(choices)]
    return scores

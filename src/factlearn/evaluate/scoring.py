"""Model-facing scoring: batched log-likelihood and batched greedy generation on any causal LM.

Answers must equal lm-evaluation-harness 0.4 (`--model hf`) on the same prompts, so tokenization follows
its HFLM rules: a context's trailing white space moves onto the continuation; context and
context+continuation are encoded whole (tokenizer defaults) and the continuation is the tail of the
latter; inputs are left-truncated to the model's maximum length. Speed comes from doing less work, not
different maths:
- items are sorted by length and batched (left padding + explicit position ids, so padding changes
  nothing but rounding);
- logits are computed only at the scored positions (`logits_to_keep`), so neither the LM head nor the
  log-softmax ever runs over the whole sequence x vocabulary;
- multiple choice: one forward pass over the context scores all four " A".." D" when each is a single
  token after that context (checked per item; otherwise each choice is scored separately);
- generation: `model.generate` with the KV cache, each row stopping at the stop string;
- everything under `torch.inference_mode()`.

Nothing here knows about tasks: the evaluator (engine.py) and the probes (factlearn.analyze) call it.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Sequence

_LM_EVAL_UNSET_MAX_LEN = 1000000000000000019884624838656  # transformers' "no limit" sentinel


# --------------------------------------------------------------------------- tokenization (lm-eval rules)

def encode(tokenizer, text: str) -> list[int]:
    """Token ids with the tokenizer's default special tokens, as lm-eval's HFLM.tok_encode does."""
    return tokenizer.encode(text)


def prefix_token_id(tokenizer) -> int:
    """What an empty context is replaced by (lm-eval: BOS if the tokenizer has one, else EOS)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids), split the way lm-eval 0.4 splits them."""
    if not context:
        return [prefix_token_id(tokenizer)], encode(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(tokenizer, context + continuation)
    context_ids = encode(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def max_length(model, tokenizer) -> int:
    """The model's context length, looked up in the same order as lm-eval's HFLM."""
    config = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(config, attr, None):
            return int(getattr(config, attr))
    limit = getattr(tokenizer, "model_max_length", None)
    if limit and limit != _LM_EVAL_UNSET_MAX_LEN:
        return int(limit)
    return 2048


# --------------------------------------------------------------------------- batching helpers

def _device(model):
    return next(model.parameters()).device


def _batches(order: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), max(1, size)):
        yield order[start:start + max(1, size)]


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device):
    """Left-padded ids and attention mask: every row's last token sits in the last column."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _supports_logits_to_keep(model) -> bool:
    from factlearn.models import unwrap_peft

    return "logits_to_keep" in inspect.signature(unwrap_peft(model).forward).parameters


def _tail_logits(model, ids, mask, keep: int):
    """Logits of the last `keep` positions only ([batch, keep, vocab], fp32)."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    extra = {"logits_to_keep": keep} if _supports_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False, **extra).logits
    return logits[:, -keep:, :].float()


# --------------------------------------------------------------------------- scoring

def score_continuations(model, tokenizer, contexts: Sequence[str], continuations: Sequence[str],
                        batch_size: int = 16) -> list[float]:
    """Sum log-probability of each continuation given its context (lm-eval's `loglikelihood`).

    Public: the probes (factlearn.analyze) reuse it. Works on any causal LM, including peft models.
    """
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


def score_choices(model, tokenizer, contexts: Sequence[str], choices: Sequence[str],
                  batch_size: int = 16) -> list[list[float]]:
    """Log-likelihood of every choice after every context: [len(contexts)][len(choices)].

    When each choice is one token after a context (" A".." D" for most tokenizers), one forward pass
    over the context yields all of them; other contexts fall back to score_continuations.
    """
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
        flat = score_continuations(model, tokenizer, [contexts[i] for i in fallback for _ in choices],
                                   [c for _ in fallback for c in choices], batch_size)
        for n, i in enumerate(fallback):
            scores[i] = flat[n * len(choices):(n + 1) * len(choices)]
    return scores


# --------------------------------------------------------------------------- generation

_STOP_MASKS: dict[tuple, Any] = {}


def _stop_token_mask(tokenizer, stop: str, size: int):
    """Bool vector over the vocabulary: does this token's text contain `stop` (a single character)?

    A byte-level token holds whole bytes, so the generated text contains a one-character stop string
    exactly when some generated token does; a per-token lookup then replaces decoding every step.
    """
    import torch

    key = (id(tokenizer), getattr(tokenizer, "name_or_path", ""), len(tokenizer), stop, size)
    if key not in _STOP_MASKS:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        mask = torch.zeros(size, dtype=torch.bool)
        mask[: len(texts)] = torch.tensor([stop in t for t in texts])
        _STOP_MASKS[key] = mask
    return _STOP_MASKS[key]


def _stopping_criteria(tokenizer, stop: str, prompt_width: int, vocab_size: int, device):
    """Per-row stop: generate() keeps finished rows finished, so only the newest token is checked."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    if len(stop) == 1:
        mask = _stop_token_mask(tokenizer, stop, vocab_size).to(device)

        class StopOnToken(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return mask[input_ids[:, -1]]
    else:
        class StopOnToken(StoppingCriteria):  # multi-character stop: decode what was generated so far
            def __call__(self, input_ids, scores, **kwargs):
                import torch

                texts = tokenizer.batch_decode(input_ids[:, prompt_width:])
                return torch.tensor([stop in t for t in texts], device=input_ids.device)

    return StoppingCriteriaList([StopOnToken()])


def generate_until(model, tokenizer, contexts: Sequence[str], stop: str = "\n", max_new_tokens: int = 50,
                   batch_size: int = 16) -> list[str]:
    """Greedy continuation of each context, cut at the first `stop` (lm-eval's `generate_until`)."""
    import torch

    limit = max_length(model, tokenizer) - max_new_tokens
    encoded = [encode(tokenizer, c)[-limit:] for c in contexts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs = [""] * len(encoded)
    device = _device(model)
    vocab_size = max(len(tokenizer), int(getattr(model.config, "vocab_size", 0) or 0))
    with torch.inference_mode():
        for batch in _batches(order, batch_size):
            ids, mask = _left_pad([encoded[i] for i in batch], _pad_id(tokenizer), device)
            generated = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                stopping_criteria=_stopping_criteria(tokenizer, stop, ids.shape[1], vocab_size, device),
                pad_token_id=_pad_id(tokenizer), use_cache=True)
            for row, i in enumerate(batch):
                text = tokenizer.decode(generated[row, ids.shape[1]:].tolist(), skip_special_tokens=True)
                outputs[i] = text.split(stop)[0] if stop else text
    return outputs

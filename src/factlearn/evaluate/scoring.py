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

def encode_pairs(tokenizer, context: str, continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """encode_pair for many continuations of one context, encoding the context once (same ids)."""
    if not context:
        return [encode_pair(tokenizer, context, c) for c in continuations]
    n_spaces = len(context) - len(context.rstrip())
    stem, spaces = (context[:-n_spaces], context[-n_spaces:]) if n_spaces else (context, "")
    context_ids = encode(tokenizer, stem)
    return [(context_ids, encode(tokenizer, stem + spaces + c)[len(context_ids):]) for c in continuations]


def scored_prefix(context_ids: Sequence[int], continuation_ids: Sequence[int], limit: int) -> tuple[int, ...]:
    """The context tokens the continuation is scored after, under lm-eval's left-truncation rule.

    The scored input is (context + continuation)[-(limit + 1):][:-1]; its head up to the continuation is
    the prefix. Near the length limit a longer continuation keeps less of the context, so two
    continuations of one context may need different prefixes: the prefix, not the text, is what is shared.
    """
    if len(continuation_ids) > limit:
        raise ValueError(f"a continuation of {len(continuation_ids)} tokens does not fit the model's "
                         f"{limit}-token context")
    scored_input = (list(context_ids) + list(continuation_ids))[-(limit + 1):][:-1]
    return tuple(scored_input[:len(scored_input) - (len(continuation_ids) - 1)])


def _cache_argument(model) -> str:
    """The forward argument that takes a KV cache: `cache` (transformers >= 5.2x), else `past_key_values`."""
    from factlearn.models import unwrap_peft

    return "cache" if "cache" in inspect.signature(unwrap_peft(model).forward).parameters else "past_key_values"


def _returned_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _select_cache_rows(cache, rows):
    """A new cache whose row r is row rows[r] of `cache` (which stays unchanged, for the next chunk).

    transformers' Cache.batch_select_indices replaces each layer's tensors (it does not write into
    them), so shallow copies of the cache and its layers are enough; legacy tuple caches are indexed.
    """
    import copy

    if isinstance(cache, (tuple, list)):
        return tuple(tuple(t.index_select(0, rows) for t in layer) for layer in cache)
    chunk = copy.copy(cache)
    chunk.layers = [copy.copy(layer) for layer in cache.layers]
    chunk.batch_select_indices(rows)
    return chunk


def _prefix_pass(model, prefixes: Sequence[Sequence[int]], pad_id: int, device, want_cache: bool):
    """Log-probabilities after each prefix's last token ([groups, vocab]), its mask, and its KV cache."""
    import torch

    ids, mask = _left_pad(prefixes, pad_id, device)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    extra = {"logits_to_keep": 1} if _supports_logits_to_keep(model) else {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=want_cache, **extra)
    return torch.log_softmax(out.logits[:, -1, :].float(), dim=-1), mask, _returned_cache(out) if want_cache else None


def _continuation_pass(model, cache, prefix_mask, rows: list[int], tails: list[list[int]], pad_id: int,
                       device) -> list[float]:
    """Sum log-probability of tails[r][1:] given prefix rows[r] + tails[r][:-1], over the prefix's cache.

    Continuation tokens are right-padded (a real token never attends to a later pad) and their
    positions go on from each prefix's own length, so each row is the same sequence as in the
    per-request path.
    """
    import torch

    width = max(len(t) for t in tails) - 1
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    targets = torch.zeros((len(rows), width), dtype=torch.long)
    tail_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, tail in enumerate(tails):
        ids[r, :len(tail) - 1] = torch.tensor(tail[:-1])
        targets[r, :len(tail) - 1] = torch.tensor(tail[1:])
        tail_mask[r, :len(tail) - 1] = 1
    index = torch.tensor(rows, device=device)
    ids, targets, tail_mask = ids.to(device), targets.to(device), tail_mask.to(device)
    past_mask = prefix_mask.index_select(0, index)
    positions = past_mask.sum(-1, keepdim=True) + torch.arange(width, device=device)
    logits = model(input_ids=ids, attention_mask=torch.cat([past_mask, tail_mask], dim=-1), position_ids=positions,
                   use_cache=True, **{_cache_argument(model): _select_cache_rows(cache, index)}).logits[:, -width:, :].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]
    return (logprobs * tail_mask).sum(-1).tolist()


def score_token_requests(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, limit: int,
                         batch_size: int = 16, rows_budget: int = 512) -> list[float]:
    """Sum log-probability of each (context ids, continuation ids) request: the shared-context primitive.

    Requests are grouped by scored prefix (scored_prefix: the truncation rule of the per-request path,
    kept exactly). Each distinct prefix runs through the model once, `batch_size` prefixes a pass, with
    the KV cache kept; the first token of every continuation is scored from the prefix's last position,
    and the rest of all continuations run in batches over that cache, rows expanded from their prefix
    (`batch_size` x `rows_budget` cached+new token rows a pass bound the memory). One-token
    continuations (letter choices) need no cache at all. Empty continuations score 0.
    """
    import torch

    scores = [0.0] * len(requests)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (context_ids, continuation_ids) in enumerate(requests):
        if continuation_ids:
            groups.setdefault(scored_prefix(context_ids, continuation_ids, limit), []).append(i)
    prefixes = sorted(groups, key=lambda p: -len(p))
    device = _device(model)
    step = max(1, batch_size)
    with torch.inference_mode():
        for start in range(0, len(prefixes), step):
            batch = prefixes[start:start + step]
            long_rows = [(g, i) for g, p in enumerate(batch) for i in groups[p] if len(requests[i][1]) > 1]
            first, prefix_mask, cache = _prefix_pass(model, batch, pad_id, device, want_cache=bool(long_rows))
            for g, p in enumerate(batch):
                picked = first[g].index_select(0, torch.tensor([requests[i][1][0] for i in groups[p]], device=device))
                for i, value in zip(groups[p], picked.tolist()):
                    scores[i] = value
            long_rows.sort(key=lambda gi: -len(requests[gi[1]][1]))
            longest = max((len(requests[i][1]) for _, i in long_rows), default=1)
            chunk_rows = max(1, step * rows_budget // (prefix_mask.shape[1] + longest))
            for c in range(0, len(long_rows), chunk_rows):
                chunk = long_rows[c:c + chunk_rows]
                rest = _continuation_pass(model, cache, prefix_mask, [g for g, _ in chunk],
                                          [list(requests[i][1]) for _, i in chunk], pad_id, device)
                for (_, i), value in zip(chunk, rest):
                    scores[i] += value
    return scores


def score_shared(model, tokenizer, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                 batch_size: int = 16) -> list[list[float]]:
    """Log-likelihood of every continuation after its context: [context][its continuations].

    The way to ask for many continuations of one context (a cloze item's choices, a probe prompt's
    tails): the context is encoded and run through the model once, every continuation over its cache.
    Equal, within float rounding, to scoring each pair as its own sequence
    (factlearn.evaluate.scoring_reference), which the tests check.
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuation lists")
    requests, owners = [], []
    for n, (context, conts) in enumerate(zip(contexts, continuations)):
        requests.extend(encode_pairs(tokenizer, context, conts))
        owners.extend([n] * len(conts))
    flat = score_token_requests(model, requests, _pad_id(tokenizer), max_length(model, tokenizer), batch_size)
    out: list[list[float]] = [[] for _ in contexts]
    for n, value in zip(owners, flat):
        out[n].append(value)
    return out


def score_continuations(model, tokenizer, contexts: Sequence[str], continuations: Sequence[str],
                        batch_size: int = 16) -> list[float]:
    """Sum log-probability of each continuation given its context (lm-eval's `loglikelihood`).

    Public: any caller with a flat list of pairs. Pairs that share a context share its forward pass
    (score_token_requests groups them), so a flat list costs no more than score_shared.
    Works on any causal LM, including peft models.
    """
    if len(contexts) != len(continuations):
        raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
    grouped: dict[str, list[int]] = {}
    for i, context in enumerate(contexts):
        grouped.setdefault(context, []).append(i)
    shared = score_shared(model, tokenizer, list(grouped), [[continuations[i] for i in idx] for idx in grouped.values()],
                          batch_size)
    scores = [0.0] * len(contexts)
    for idx, values in zip(grouped.values(), shared):
        for i, value in zip(idx, values):
            scores[i] = value
    return scores


def score_choices(model, tokenizer, contexts: Sequence[str], choices: Sequence[str],
                  batch_size: int = 16) -> list[list[float]]:
    """Log-likelihood of every choice after every context: [len(contexts)][len(choices)].

    One forward pass over each context; one-token choices (" A".." D") are read off its last position,
    longer ones run over its cache (score_shared).
    """
    return score_shared(model, tokenizer, contexts, [list(choices)] * len(contexts), batch_size)


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

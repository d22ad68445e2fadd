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
- shared contexts: every distinct (left-truncated) context runs once, and every continuation after it
  in the same packed row under a block attention mask (packing.py); one-token choices (" A".." D")
  are read off the context's last position;
- generation: `model.generate` with the KV cache, each row stopping at the stop string;
- everything under `torch.inference_mode()`.

Nothing here knows about tasks: the evaluator (engine.py) and the probes (factlearn.analyze) call it.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator, Sequence

from factlearn.evaluate.packing import PREFIX, Row, attention_allowed, lay_out, pack_rows, split_group

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


def _at_least_fp32(logits):
    """bf16/fp16 logits in fp32 for the log-softmax; fp64 ones stay fp64 (the benchmarks' maths check)."""
    import torch

    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _tail_logits(model, ids, mask, keep: int):
    """Logits of the last `keep` positions only ([batch, keep, vocab], fp32)."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
    extra = {"logits_to_keep": keep} if _supports_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False, **extra).logits
    return _at_least_fp32(logits[:, -keep:, :])


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


# (columns, scored positions) per forward pass when the caller names none. CPU: measured on 2 cores
# (benchmarks/bench_probes.py; smaller passes keep the logits in cache: 2048/1024 ran 1.15x faster
# than 4096/2048). CUDA: larger passes to fill the GPU, not yet measured (benchmarks/gpu_check.sh).
PASS_BUDGETS = {"cpu": (2048, 1024), "cuda": (16384, 8192)}


def _takes_custom_masks(model) -> bool:
    """Does the attention honour a 4D mask as given? eager and sdpa do; flash-attention kernels take
    only padding information (they would silently score the packed rows wrong)."""
    from factlearn.models import unwrap_peft

    return getattr(unwrap_peft(model).config, "_attn_implementation", "eager") in ("eager", "sdpa")


def _row_batches(rows: Sequence[Row], batch_size: int, batch_tokens: int, logit_rows: int) -> Iterator[list[Row]]:
    """Consecutive rows (sorted widest first) while the batch stays within rows, tokens and logit rows."""
    batch: list[Row] = []
    for row in rows:
        width = len(batch[0].ids) if batch else len(row.ids)
        scored = max([r.n_scored for r in batch] + [row.n_scored])
        if batch and (len(batch) == batch_size or (len(batch) + 1) * width > batch_tokens
                      or (len(batch) + 1) * scored > logit_rows):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _score_rows(model, rows: Sequence[Row], pad_id: int, device, scores) -> None:
    """One forward pass over left-padded packed rows; adds each target's log-probability to its request."""
    import torch

    width, keep = max(len(r.ids) for r in rows), max(r.n_scored for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    pieces = torch.full((len(rows), width), -1, dtype=torch.long)
    branches = torch.full((len(rows), width), PREFIX, dtype=torch.long)
    flat_rows, tokens, owners = [], [], []
    for b, row in enumerate(rows):
        pad = width - len(row.ids)
        ids[b, pad:] = torch.tensor(row.ids)
        positions[b, pad:] = torch.tensor(row.positions)
        pieces[b, pad:] = torch.tensor(row.pieces)
        branches[b, pad:] = torch.tensor(row.branches)
        for column, token, request in row.targets:
            flat_rows.append(b * keep + column + pad - (width - keep))
            tokens.append(token)
            owners.append(request)
    dtype = next(model.parameters()).dtype
    allowed = attention_allowed(pieces, branches, positions).to(device)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, torch.finfo(dtype).min)
    extra = {"logits_to_keep": keep} if _supports_logits_to_keep(model) else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask[:, None], position_ids=positions.to(device),
                   use_cache=False, **extra).logits[:, -keep:, :]
    # over every kept row: cheaper than copying out the needed rows first (measured on CPU)
    logprobs = torch.log_softmax(_at_least_fp32(logits), dim=-1).reshape(-1, logits.shape[-1])
    picked = logprobs[torch.tensor(flat_rows, device=device), torch.tensor(tokens, device=device)].double().cpu()
    scores.index_add_(0, torch.tensor(owners), picked)


def _score_unpacked(model, requests, groups: dict[tuple[int, ...], list[int]], pad_id: int, device,
                    batch_size: int, scores) -> None:
    """Each request as its own left-padded sequence: the path for attention that takes no custom mask."""
    import torch

    items = [(prefix + tuple(requests[i][1][:-1]), i) for prefix, idx in groups.items() for i in idx]
    items.sort(key=lambda item: -len(item[0]))
    for start in range(0, len(items), max(1, batch_size)):
        batch = items[start:start + max(1, batch_size)]
        keep = max(len(requests[i][1]) for _, i in batch)
        ids, mask = _left_pad([seq for seq, _ in batch], pad_id, device)
        logprobs = torch.log_softmax(_tail_logits(model, ids, mask, keep), dim=-1)
        for row, (_, i) in enumerate(batch):
            cont = torch.tensor(requests[i][1], device=device)
            scores[i] = float(logprobs[row, keep - len(cont):, :].gather(-1, cont[:, None]).sum())


def score_token_requests(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, limit: int,
                         batch_size: int = 16, row_tokens: int = 256, batch_tokens: int | None = None,
                         logit_rows: int | None = None) -> list[float]:
    """Sum log-probability of each (context ids, continuation ids) request: the shared-context primitive.

    Requests are grouped by scored prefix (scored_prefix: the truncation rule of the per-request path,
    kept exactly) and packed (factlearn.evaluate.packing): each prefix's tokens once, every continuation
    after it in the same row under a block attention mask, pieces first-fit into rows of `row_tokens`
    columns (wider where one prefix and continuation need it). A pass takes at most `batch_size` rows,
    `batch_tokens` columns and `logit_rows` scored positions (the fp32 logits are logit_rows x vocab;
    None: PASS_BUDGETS for the model's device).
    Models whose attention takes no custom mask (flash-attention) score each request alone instead.
    Empty continuations score 0.
    """
    import torch

    scores = torch.zeros(len(requests), dtype=torch.float64)
    device = _device(model)
    default_tokens, default_logits = PASS_BUDGETS["cuda" if device.type == "cuda" else "cpu"]
    batch_tokens, logit_rows = batch_tokens or default_tokens, logit_rows or default_logits
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (context_ids, continuation_ids) in enumerate(requests):
        if continuation_ids:
            groups.setdefault(scored_prefix(context_ids, continuation_ids, limit), []).append(i)
    continuations = [list(c) for _, c in requests]
    with torch.inference_mode():
        if not _takes_custom_masks(model):
            _score_unpacked(model, requests, groups, pad_id, device, batch_size, scores)
            return scores.tolist()
        pieces = [piece for prefix, idx in groups.items() for piece in split_group(prefix, idx, continuations, row_tokens)]
        capacity = max([row_tokens] + [p.width(continuations) for p in pieces])
        rows = sorted((lay_out(r, continuations) for r in pack_rows(pieces, continuations, capacity)),
                      key=lambda r: (-len(r.ids), -r.n_scored))
        for batch in _row_batches(rows, max(1, batch_size), batch_tokens, logit_rows):
            _score_rows(model, batch, pad_id, device, scores)
    return scores.tolist()


def score_shared(model, tokenizer, contexts: Sequence[str], continuations: Sequence[Sequence[str]],
                 batch_size: int = 16) -> list[list[float]]:
    """Log-likelihood of every continuation after its context: [context][its continuations].

    The way to ask for many continuations of one context (a cloze item's choices, a probe prompt's
    tails): the context is encoded and run through the model once, every continuation packed after it.
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
    longer ones are packed after it (score_shared).
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

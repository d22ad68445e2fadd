"""The shared-context scoring primitive equals the per-request reference path on the tiny model."""

from __future__ import annotations

import copy

import pytest
import torch

from factlearn.evaluate.scoring import (encode_pair, encode_pairs, max_length, score_choices, score_continuations,
                                        score_shared, scored_prefix)
from factlearn.evaluate.scoring_reference import reference_score_choices, reference_score_continuations
from factlearn.models import load_model

CONTEXTS = ["The capital of Andoria is", "Question: What is the capital of Borealis? Answer:", "a" * 30, "",
            "The capital of Andoria is ", "The former and the latter.\nA. B. C. D. Answer:"]
CONTINUATIONS = [" Copperton", " Ghalenoth is big and old", " b", "dolphin", "Sunfield", " x",
                 " The former and the latter", " A", " can fly has legs"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def pairs(contexts, continuations):
    return [c for c in contexts for _ in continuations], [k for _ in contexts for k in continuations]


def best(values):
    return max(range(len(values)), key=values.__getitem__)


def assert_same_scores(new: list[float], ref: list[float]) -> None:
    assert len(new) == len(ref)
    assert max((abs(a - b) for a, b in zip(new, ref)), default=0.0) <= 1e-4


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_flat_pairs_equal_the_reference(tiny, batch_size):
    model, tok = tiny
    contexts, conts = pairs(CONTEXTS, CONTINUATIONS)
    lengths = {len(encode_pair(tok, c, k)[1]) for c, k in zip(contexts, conts)}
    assert 1 in lengths and max(lengths) >= 4  # one-token and multi-token continuations of different lengths
    new = score_continuations(model, tok, contexts, conts, batch_size=batch_size)
    assert_same_scores(new, reference_score_continuations(model, tok, contexts, conts, batch_size=batch_size))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_choices_equal_the_reference_with_identical_answers(tiny, batch_size):
    model, tok = tiny
    for choices in ([" A", " B", " C", " D"], [" Copperton", " Willowcreek x", " Sunfield", " d"]):
        new = score_choices(model, tok, CONTEXTS, choices, batch_size=batch_size)
        ref = reference_score_choices(model, tok, CONTEXTS, choices, batch_size=batch_size)
        for row_new, row_ref in zip(new, ref):
            assert_same_scores(row_new, row_ref)
            assert best(row_new) == best(row_ref)


def test_score_shared_gives_each_context_its_own_continuations(tiny):
    model, tok = tiny
    conts = [CONTINUATIONS[:3], CONTINUATIONS[3:], [], CONTINUATIONS[1:2]]
    got = score_shared(model, tok, CONTEXTS[:4], conts, batch_size=2)
    assert [len(row) for row in got] == [3, 6, 0, 1]
    for context, row, ks in zip(CONTEXTS, got, conts):
        assert_same_scores(row, reference_score_continuations(model, tok, [context] * len(ks), ks) if ks else [])


def test_encode_pairs_matches_encode_pair(tiny):
    _, tok = tiny
    for context in CONTEXTS + ["is  ", "x\n"]:
        assert encode_pairs(tok, context, CONTINUATIONS) == [encode_pair(tok, context, k) for k in CONTINUATIONS]


@pytest.mark.parametrize("batch_size", [1, 5])
def test_contexts_at_and_beyond_the_length_limit(tiny, batch_size):
    """Near the limit each continuation keeps a different tail of the context; the rule is kept exactly."""
    model, tok = tiny
    short = copy.deepcopy(model)
    short.config.max_position_embeddings = 24
    limit = max_length(short, tok)
    assert limit == 24
    word = " capital"
    assert len(encode_pair(tok, "The", word * 3)[1]) == 3
    contexts = []
    for n in (18, 20, 21, 22, 23, 24, 30, 60):  # context tokens: under, at and over the limit
        context = "The" + word * (n - 1)
        assert len(encode_pair(tok, context, " A")[0]) == n
        contexts.append(context)
    conts = [" A", " Copperton", word * 3, " Ghalenoth is big and old", " b"]
    prefixes = {scored_prefix(*encode_pair(tok, contexts[-1], k), limit) for k in conts}
    assert len(prefixes) > 1  # left-truncation really depends on the continuation's length here
    flat_c, flat_k = pairs(contexts, conts)
    new = score_continuations(short, tok, flat_c, flat_k, batch_size=batch_size)
    assert_same_scores(new, reference_score_continuations(short, tok, flat_c, flat_k, batch_size=batch_size))
    with pytest.raises(ValueError, match="does not fit"):
        score_continuations(short, tok, ["The"], [word * 30])


def test_peft_lora_model_equals_the_reference(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    torch.manual_seed(1)
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                           init_lora_weights=False))
    contexts, conts = pairs(CONTEXTS[:4], CONTINUATIONS)
    new = score_continuations(lora, tok, contexts, conts, batch_size=4)
    assert_same_scores(new, reference_score_continuations(lora, tok, contexts, conts, batch_size=4))
    base = reference_score_continuations(model, tok, contexts, conts, batch_size=4)
    assert max(abs(a - b) for a, b in zip(new, base)) > 1e-3  # the adapter is really in the forward pass


def test_each_distinct_prefix_runs_once(tiny):
    """The cost the plan's estimate assumes: prefix tokens once, plus len - 1 tokens per continuation."""
    model, tok = tiny
    seen: list[int] = []
    pad = tok.pad_token_id
    hook = model.get_input_embeddings().register_forward_hook(
        lambda module, args, out: seen.append(int((args[0] != pad).sum())))
    try:
        score_continuations(model, tok, *pairs(CONTEXTS[:3], CONTINUATIONS), batch_size=2)
    finally:
        hook.remove()
    encoded = [encode_pair(tok, c, k) for c in CONTEXTS[:3] for k in CONTINUATIONS]
    expected = sum(len(encode_pair(tok, c, " A")[0]) for c in CONTEXTS[:3]) + sum(len(k) - 1 for _, k in encoded)
    assert sum(seen) == expected
    per_pair = sum(len(c) + len(k) - 1 for c, k in encoded)
    assert sum(seen) < per_pair / 2

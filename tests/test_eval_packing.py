"""Shared-prefix packing: each scored token sees exactly the sequence the per-request path runs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from factlearn.evaluate import scoring
from factlearn.evaluate.packing import Piece, attention_allowed, lay_out, pack_rows, split_group
from factlearn.evaluate.scoring import (_pad_id, encode_pair, max_length, score_continuations,
                                        score_token_requests)
from factlearn.evaluate.scoring_reference import reference_score_continuations
from factlearn.models import load_model

CONTINUATIONS = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14], [15]]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu")


def visible_sequences(row, pad: int = 0):
    """For each target: the tokens its column may attend to, in position order (left padding added)."""
    t = lambda values, fill: torch.tensor([fill] * pad + values)[None]  # noqa: E731
    allowed = attention_allowed(t(row.pieces, -1), t(row.branches, -1), t(row.positions, 0))[0]
    out = []
    for column, token, request in row.targets:
        seen = [c - pad for c in range(pad + len(row.ids)) if allowed[column + pad, c] and c >= pad]
        out.append(([row.ids[c] for c in sorted(seen, key=lambda c: row.positions[c])], token, request))
    return out


@pytest.mark.parametrize("pad", [0, 3])
def test_every_target_sees_its_own_prefix_and_continuation_only(pad):
    pieces = [Piece((1, 2, 3), (0, 1, 2)), Piece((4,), (3, 4)), Piece((2, 3), (2,))]
    row = lay_out(pieces, CONTINUATIONS)
    expected = []
    for piece in pieces:
        for i in piece.requests:
            cont = CONTINUATIONS[i]
            expected += [(list(piece.prefix) + cont[:j], cont[j], i) for j in range(len(cont))]
    assert sorted(visible_sequences(row, pad)) == sorted(expected)
    columns = [c for c, _, _ in row.targets]
    assert min(columns) == len(row.ids) - row.n_scored  # every target sits in the scored suffix
    assert len(row.ids) == sum(p.width(CONTINUATIONS) for p in pieces)  # each prefix once, no padding


def test_padding_attends_only_to_itself():
    row = lay_out([Piece((1, 2), (0,))], CONTINUATIONS)
    t = lambda values, fill: torch.tensor([fill] * 2 + values)[None]  # noqa: E731
    allowed = attention_allowed(t(row.pieces, -1), t(row.branches, -1), t(row.positions, 0))[0]
    assert allowed[:2].tolist() == [[True] + [False] * (len(row.ids) + 1), [False, True] + [False] * len(row.ids)]
    assert not allowed[2:, :2].any()


def test_split_group_bounds_pieces_and_keeps_every_request_once():
    pieces = split_group((1, 2, 3), range(5), CONTINUATIONS, row_tokens=6)
    assert sorted(i for p in pieces for i in p.requests) == list(range(5))
    assert all(p.width(CONTINUATIONS) <= 6 for p in pieces) and len(pieces) > 1
    wide = split_group((1, 2, 3), [3], CONTINUATIONS, row_tokens=4)  # one continuation over the budget
    assert [p.requests for p in wide] == [(3,)] and wide[0].width(CONTINUATIONS) == 6


def test_pack_rows_fills_rows_without_overflow():
    pieces = [Piece((1,) * n, (1,)) for n in (5, 4, 3, 3, 2, 2, 1)]
    rows = pack_rows(pieces, CONTINUATIONS, capacity=6)
    assert sorted((p for r in rows for p in r), key=lambda p: len(p.prefix)) == sorted(pieces, key=lambda p: len(p.prefix))
    assert all(sum(p.width(CONTINUATIONS) for p in r) <= 6 for r in rows)
    assert len(rows) == 4  # 20 columns: first-fit decreasing needs 4 rows of 6 here


TEXTS = [("The capital of Andoria is", [" Copperton", " Sunfield is big", " b", " x"]),
         ("Question: What is the capital of Borealis? Answer:", [" Ghalenoth is big and old", " A"]),
         ("", ["dolphin", "can fly"]), ("a" * 30, [" The former and the latter", " c"])]


def token_requests(tok):
    contexts = [c for c, ks in TEXTS for _ in ks]
    conts = [k for _, ks in TEXTS for k in ks]
    return contexts, conts, [encode_pair(tok, c, k) for c, k in zip(contexts, conts)]


@pytest.mark.parametrize("budgets", [dict(row_tokens=8, batch_tokens=24, logit_rows=6), dict(row_tokens=2),
                                     dict(batch_size=1), dict(row_tokens=4096, batch_tokens=8192)])
def test_tight_and_loose_pass_budgets_equal_the_reference(tiny, budgets):
    """Split groups, many rows of different widths (left padding), one row a pass: all the same scores."""
    model, tok = tiny
    contexts, conts, requests = token_requests(tok)
    got = score_token_requests(model, requests, _pad_id(tok), max_length(model, tok), **budgets)
    ref = reference_score_continuations(model, tok, contexts, conts)
    assert max(abs(a - b) for a, b in zip(got, ref)) <= 1e-4


def test_attention_without_custom_masks_scores_each_request_alone(tiny, monkeypatch):
    model, tok = tiny
    flash = copy.deepcopy(model.config)
    flash._attn_implementation = "flash_attention_2"
    assert scoring._takes_custom_masks(model) and not scoring._takes_custom_masks(SimpleNamespace(config=flash))
    calls = []
    monkeypatch.setattr(scoring, "_takes_custom_masks", lambda m: False)
    monkeypatch.setattr(scoring, "_score_rows", lambda *a: calls.append(a))  # the packed path must not run
    contexts, conts, _ = token_requests(tok)
    got = score_continuations(model, tok, contexts, conts, batch_size=3)
    assert not calls
    ref = reference_score_continuations(model, tok, contexts, conts)
    assert max(abs(a - b) for a, b in zip(got, ref)) <= 1e-4

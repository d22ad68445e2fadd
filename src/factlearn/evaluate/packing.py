"""Shared-prefix packing: many (prefix, continuation) requests laid out in a few rows of one forward pass.

A row holds one or more *pieces*: a scored prefix and continuations scored after it. Every column
carries the position its token has in its own sequence (prefix 0..P-1, a continuation's inputs P, P+1,
...), and a block attention mask lets a token see only the earlier tokens of its own sequence: a prefix
token sees its prefix, a continuation token its prefix and its own continuation. So each continuation
is computed over exactly the sequence the per-request path runs, while its prefix runs once, and no
row is padded to its longest continuation.

Because the mask and the positions carry the structure, column order is free. Each row ends with the
columns whose logits are needed: every prefix's last token (it predicts the first token of each of its
continuations) and every continuation input (each predicts the next token). The LM head then runs on
that suffix only (`logits_to_keep`).

Written by hand: transformers' packed-sequence support restarts positions per sequence and keeps
sequences apart, but here a continuation must see its prefix. No well-kept library does this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

PREFIX = -1  # branch of a prefix column; continuation columns carry their request's index in the row


@dataclass(frozen=True)
class Piece:
    """One scored prefix and the requests (indices into the caller's list) scored after it."""

    prefix: tuple[int, ...]
    requests: tuple[int, ...]

    def width(self, continuations: Sequence[Sequence[int]]) -> int:
        """Columns this piece takes in a row: the prefix once, then each continuation but its last token."""
        return len(self.prefix) + sum(len(continuations[i]) - 1 for i in self.requests)


@dataclass
class Row:
    """One packed sequence: token ids, per-column structure, and what is scored where."""

    ids: list[int]
    positions: list[int]
    pieces: list[int]  # which piece of this row a column belongs to
    branches: list[int]  # PREFIX, or the row-local number of the continuation a column belongs to
    targets: list[tuple[int, int, int]]  # (column, token whose log-probability is read there, request)
    n_scored: int  # the last n_scored columns hold every target


def split_group(prefix: tuple[int, ...], requests: Sequence[int], continuations: Sequence[Sequence[int]],
                row_tokens: int) -> list[Piece]:
    """The requests after one prefix, split into pieces of at most `row_tokens` columns where possible.

    A piece always holds at least one request, so a prefix with a continuation longer than the budget
    still makes one (wider) piece; every further piece repeats the prefix, which is the price of a bound.
    """
    pieces, current, used = [], [], len(prefix)
    for i in sorted(requests, key=lambda i: -len(continuations[i])):
        extra = len(continuations[i]) - 1
        if current and used + extra > row_tokens:
            pieces.append(Piece(prefix, tuple(current)))
            current, used = [], len(prefix)
        current.append(i)
        used += extra
    if current:
        pieces.append(Piece(prefix, tuple(current)))
    return pieces


def pack_rows(pieces: Sequence[Piece], continuations: Sequence[Sequence[int]], capacity: int) -> list[list[Piece]]:
    """First-fit decreasing: pieces into as few rows of `capacity` columns as it finds, widest first."""
    rows: list[list[Piece]] = []
    free: list[int] = []
    for piece in sorted(pieces, key=lambda p: -p.width(continuations)):
        width = piece.width(continuations)
        slot = next((r for r, room in enumerate(free) if room >= width), None)
        if slot is None:
            rows.append([piece])
            free.append(capacity - width)
        else:
            rows[slot].append(piece)
            free[slot] -= width
    return rows


def lay_out(pieces: Sequence[Piece], continuations: Sequence[Sequence[int]]) -> Row:
    """The row's columns: every prefix but its last token, then the prefixes' last tokens, then the
    continuations' inputs (tokens 0..n-2 of each; token j+1 is read at token j's column)."""
    row = Row(ids=[], positions=[], pieces=[], branches=[], targets=[], n_scored=0)

    def add(token: int, position: int, piece: int, branch: int) -> int:
        row.ids.append(token)
        row.positions.append(position)
        row.pieces.append(piece)
        row.branches.append(branch)
        return len(row.ids) - 1

    for p, piece in enumerate(pieces):
        for position, token in enumerate(piece.prefix[:-1]):
            add(token, position, p, PREFIX)
    first_scored = len(row.ids)
    for p, piece in enumerate(pieces):
        column = add(piece.prefix[-1], len(piece.prefix) - 1, p, PREFIX)
        row.targets.extend((column, continuations[i][0], i) for i in piece.requests)
    branch = 0
    for p, piece in enumerate(pieces):
        for i in piece.requests:
            tokens = continuations[i]
            for j in range(len(tokens) - 1):
                column = add(tokens[j], len(piece.prefix) + j, p, branch)
                row.targets.append((column, tokens[j + 1], i))
            branch += 1
    row.n_scored = len(row.ids) - first_scored
    return row


def attention_allowed(pieces, branches, positions):
    """[batch, width, width] bool: may column q attend to column k?

    Yes when both are in the same piece, k is not later in q's sequence, and k is a prefix column or in
    q's own continuation. Padding (piece -1) attends to itself only, so no softmax row is empty (an
    empty row is NaN, and NaN values leak through zero attention weights).
    """
    import torch

    same_piece = (pieces[:, :, None] == pieces[:, None, :]) & (pieces[:, :, None] >= 0)
    earlier = positions[:, None, :] <= positions[:, :, None]
    visible = (branches[:, None, :] == PREFIX) | (branches[:, None, :] == branches[:, :, None])
    itself = torch.eye(pieces.shape[1], dtype=torch.bool, device=pieces.device)[None]
    return (same_piece & earlier & visible) | itself

"""Training data: a `text` column, tokenized one row per sequence, batched by length.

A micro-batch is either packed (every row laid end to end in one sequence whose position ids restart
at 0 for each row, so attention never crosses rows and no compute goes to padding) or right-padded
to its longest row; `pack_pays_off` picks the cheaper one. Opt-in length buckets
(bucket_by_length) sort rows by length inside shuffled chunks: nearly pad-free batches, but less
varied ones, so the default keeps random batches as the original did. Either way the order
depends only on (seed, epoch), which resume uses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from factlearn.errors import UserError
from factlearn.data import load_text_corpus
from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED

BUCKET_CHUNK_STEPS = 16  # rows of this many optimizer steps are sorted together


def load_corpus(subset: str, data_source: str | None = None, n_countries: int = CANONICAL_N_COUNTRIES, data_seed: int = CANONICAL_WORLD_SEED):
    """Return a datasets.Dataset with a `text` column for `subset`.

    `subset` is a CCA corpus config (from the generator or `data_source`), a local .jsonl/.json/.parquet
    file or save_to_disk folder, or a hub dataset id. factlearn.data.load_text_corpus resolves it and
    factlearn.data.files holds the parsing rules, so a file reads the same here as in `factlearn data`.
    """
    path = Path(subset).expanduser()
    if path.is_file() and path.stat().st_size == 0:  # the common slip gets the train command's own wording
        raise UserError(f"corpus file {path} is empty; pass a file with at least one text row")
    return load_text_corpus(subset, n_countries=n_countries, seed=data_seed, source=data_source)


def tokenize_rows(texts: list[str], tokenizer, max_length: int) -> tuple[list[list[int]], int]:
    """(One token sequence per row, truncated to max_length; how many rows were cut to max_length).

    Rows with < 2 tokens carry no loss and are dropped. A row is counted as cut only if it is longer
    than max_length; the few rows that end exactly at the limit are tokenized once more to tell.
    """
    texts = list(texts)
    ids = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
    at_limit = [texts[i] for i, r in enumerate(ids) if len(r) >= max_length]
    truncated = 0
    if at_limit:
        longer = tokenizer(at_limit, truncation=True, max_length=max_length + 1, add_special_tokens=True)["input_ids"]
        truncated = sum(len(r) > max_length for r in longer)
    rows = [r for r in ids if len(r) >= 2]
    if not rows:
        raise UserError("every corpus row is shorter than 2 tokens; there is nothing to train on")
    return rows, truncated


def epoch_batches(lengths: list[int], step_rows: int, seed: int, epoch: int, bucket: bool = True) -> list[list[int]]:
    """Row indices of every optimizer step of one epoch; depends only on (lengths, step_rows, seed, epoch).

    The last batch may be smaller (no rows are dropped, as in HF Trainer). With `bucket`, rows are
    sorted by length within shuffled chunks and the batches shuffled again.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if bucket:
        chunk = step_rows * BUCKET_CHUNK_STEPS
        order = [i for s in range(0, len(order), chunk) for i in sorted(order[s:s + chunk], key=lengths.__getitem__)]
    batches = [order[s:s + step_rows] for s in range(0, len(order), step_rows)]
    if bucket:
        rng.shuffle(batches)
    return batches


def steps_per_epoch(n_rows: int, step_rows: int) -> int:
    return -(-n_rows // step_rows)


@dataclass
class MicroBatch:
    """One forward/backward on one process. `weight` is 0 for a placeholder row (see shard_step)."""

    rows: list[list[int]]
    weight: float


def shard_step(batch: list[int], rows: list[list[int]], grad_accum: int, rank: int, world: int) -> list[MicroBatch]:
    """Split one optimizer step's rows into this process's micro-batches.

    Every process sees the same global batch, so the loss normaliser (the step's total target-token
    count) needs no communication. A process left without rows (a small last batch) runs one
    placeholder row with weight 0, because every DDP process must join every backward.
    """
    per_micro = -(-len(batch) // grad_accum)
    micros = []
    for m in range(grad_accum):
        part = batch[m * per_micro:(m + 1) * per_micro]
        mine = part[rank::world]
        if mine:
            micros.append(MicroBatch([rows[i] for i in mine], 1.0))
        elif part:
            micros.append(MicroBatch([rows[batch[0]]], 0.0))
    return micros


def target_tokens(batch: list[int], rows: list[list[int]]) -> int:
    """Positions that carry loss in a step: every token but each row's first."""
    return sum(len(rows[i]) - 1 for i in batch)


def collate(rows: list[list[int]], pad_id: int):
    """Right-pad to the longest row of this micro-batch only; the mask, not the pad id, marks padding.

    (pad = eos here, so masking by token id would also hide real eos tokens.)
    """
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def pack(rows: list[list[int]]):
    """Rows end to end in one sequence: ids [1, T] and position ids that restart at 0 for each row.

    transformers reads restarting position ids (with no attention mask) as separate sequences and
    builds a block-diagonal causal mask, so each row attends only to itself, as when padded. The
    trainer checks this once per model (`packing_matches_padding`) before relying on it.
    """
    import torch

    ids = torch.tensor([[t for r in rows for t in r]], dtype=torch.long)
    positions = torch.tensor([[p for r in rows for p in range(len(r))]], dtype=torch.long)
    return ids, positions


def pack_pays_off(lengths: list[int], token_flops: float, pair_flops: float) -> bool:
    """Is one packed sequence cheaper than a padded batch?

    Packing skips the padding's compute but attention then spans the whole packed sequence (the mask
    hides other rows, the scores are still computed): cost ~ T * (token_flops + T * pair_flops) for T
    packed tokens vs n * W * (token_flops + W * pair_flops) for n rows padded to width W. Short rows
    (CCA's ~20 tokens) pack; long ones pad.
    """
    packed = sum(lengths)
    padded_width = max(lengths)
    padded = len(lengths) * padded_width
    return packed * (token_flops + packed * pair_flops) < padded * (token_flops + padded_width * pair_flops)

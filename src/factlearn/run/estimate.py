"""Predicted cost of each cell, in seconds, for the progress display's time-left estimate.

A crude FLOP model is enough: the progress display corrects it with measured times as cells finish.
Training costs ~6 FLOPs per parameter per token (forward + backward), inference ~2; a per-call
overhead covers model loading and Python. CPU throughputs are what this project's trainer and engine
reach on 2 cores in fp32 with SmolLM2 (benchmarks/README.md: training ~150-175 GFLOP/s on real tokens,
short rows packed; evaluation ~250 GFLOP/s over the prompts).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

CPU_TRAIN_FLOPS_PER_S = 150e9
CPU_INFER_FLOPS_PER_S = 250e9
GPU_FLOPS_PER_S = 30e12
DECODE_STEP_SECONDS = 0.01  # fixed cost of one generation step per batch (kernel launches, Python)


@dataclass(frozen=True)
class ModelSize:
    """What the cost model needs to know about a model, read from its config.json."""

    params: float  # parameters touched per token (all weights incl. the output layer)
    num_layers: int

    @property
    def load_seconds(self) -> float:
        return 0.5 + self.params * 2.5e-8


def model_size(model_path: str | Path) -> ModelSize:
    """Approximate parameter count of a decoder-only model from its config.json (no weights loaded)."""
    cfg_file = Path(model_path) / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
    else:  # a hub id already in the HF cache
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(model_path)).to_dict()
    cfg = cfg.get("text_config", cfg)
    h = int(cfg.get("hidden_size", 768))
    layers = int(cfg.get("num_hidden_layers", 12))
    inter = int(cfg.get("intermediate_size", 4 * h))
    vocab = int(cfg.get("vocab_size", 32000))
    heads = int(cfg.get("num_attention_heads", 12)) or 1
    kv = int(cfg.get("num_key_value_heads", heads))
    per_layer = 2 * h * h + 2 * h * (h * kv // heads) + 3 * h * inter
    return ModelSize(params=float(layers * per_layer + vocab * h), num_layers=layers)


def throughput(device: str, training: bool = False) -> float:
    if device.startswith("cuda"):
        return GPU_FLOPS_PER_S
    return CPU_TRAIN_FLOPS_PER_S if training else CPU_INFER_FLOPS_PER_S


def train_seconds(size: ModelSize, rows: int, mean_tokens: float, epochs: float, batch_size: int,
                  passes: int, device: str) -> float:
    """Tokens x 6 FLOPs/param (short rows are packed, so no padding); `passes` = 2 with active forgetting."""
    steps = math.ceil(rows / max(batch_size, 1)) * epochs * passes
    tokens = steps * batch_size * mean_tokens
    return size.load_seconds + 6 * size.params * tokens / throughput(device, training=True) + steps * 0.05


def eval_seconds(size: ModelSize, items: dict[str, tuple[int, float, bool]], batch_size: int,
                 device: str) -> float:
    """items: task -> (n_items, tokens per few-shot context, is_multiple_choice).

    The engine scores the four single-token choices of an item in one forward pass; generation runs
    one forward over the context plus a few cheap decode steps.
    """
    seconds = size.load_seconds
    for n, ctx_tokens, is_mc in items.values():
        seconds += 2 * size.params * n * ctx_tokens / throughput(device)
        if not is_mc:
            seconds += math.ceil(n / batch_size) * 12 * DECODE_STEP_SECONDS * (1 + size.params / 1e8)
    return seconds

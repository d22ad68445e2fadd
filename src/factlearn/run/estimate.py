"""Predicted cost of each cell: seconds (for the time-left display and `--plan`) and peak memory per device.

Time. A crude FLOP model is enough: the progress display corrects it with measured times as cells
finish. Training costs ~6 FLOPs per parameter per token (forward + backward), inference ~2; a per-call
overhead covers model loading and Python. CPU throughputs are what this project's trainer and engine
reach on 2 cores in fp32 with SmolLM2 (benchmarks/README.md); the GPU figure is a deliberately modest
effective rate for any one GPU (`hardware.tflops` replaces it). Under data parallelism or FSDP2 over N
devices a training cell's compute is divided by N (ideal scaling: communication is not modelled).

Memory, per device, in bytes. All from the model's config.json (no weights are read):
- full finetune (fp32 master weights, AdamW, bf16/fp16 autocast on GPU): 16 bytes per parameter
  (weights 4, gradients 4, Adam's two moments 8); autocast keeps a 2-byte compute copy of each weight
  during the forward. Under FSDP2 over N devices the 16 bytes are divided by N, and the compute copy
  becomes the working set of unsharded layers: two decoder layers (the current one and the prefetched
  next) in the compute dtype plus one layer's fp32 gradients before the reduce-scatter, plus the root
  unit (embeddings, output layer) while it is gathered.
- LoRA: the frozen weights as the trainer loads them (fp32, 4 bytes per parameter; plus the 2-byte
  autocast copy on GPU) + 16 bytes per trainable (adapter) parameter. Under FSDP2 all of it is divided
  by N (the autocast copy becomes the unsharded working set as above).
- activations of one micro-batch (`batch_size` rows per device, each as long as the longest sampled
  row, capped at max_length): with gradient checkpointing each layer keeps its input (hidden values per
  token) and one layer is recomputed in full; without, every layer keeps ~10 hidden + 4 intermediate
  values per token (attention by SDPA: no seq^2 term). The loss adds the logits in the compute dtype and
  in fp32 with their gradient (10 bytes per token per vocabulary entry).
- eval/control/probe: the weights in the eval dtype (bf16 on GPU, fp32 on CPU) + the KV cache of a
  batch of few-shot contexts being generated from + one forward's transient activations + the logits
  of a packed likelihood pass (scoring.PASS_BUDGETS scored positions x vocabulary).
- ablate: a full-finetune ablation holds the trained model, the base model and the delta's copies at
  once (3 x weights); a LoRA one holds the model with its adapter (1 x weights).
- every GPU adds CUDA_OVERHEAD (CUDA context, allocator slack).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

CPU_TRAIN_FLOPS_PER_S = 150e9
CPU_INFER_FLOPS_PER_S = 250e9
GPU_FLOPS_PER_S = 30e12
DECODE_STEP_SECONDS = 0.01  # fixed cost of one generation step per batch (kernel launches, Python)
GB = 1e9  # memory is reported in decimal GB, as GPU vendors label their cards
CUDA_OVERHEAD = 1.0 * GB
ADAM_BYTES_PER_PARAM = 16  # fp32 weights 4 + fp32 gradients 4 + AdamW moments 8


@dataclass(frozen=True)
class ModelSize:
    """What the cost model needs to know about a model, read from its config.json."""

    params: float  # parameters touched per token (all weights incl. the output layer)
    num_layers: int
    hidden: int = 0
    intermediate: int = 0
    vocab: int = 0
    kv_dim: int = 0  # key/value width per layer (kv heads x head dim)
    tied: bool = True  # input and output embeddings share one matrix

    @property
    def load_seconds(self) -> float:
        return 0.5 + self.params * 2.5e-8

    @property
    def stored_params(self) -> float:
        """Parameters held in memory: an untied output layer is a second vocab x hidden matrix."""
        return self.params + (0 if self.tied else self.vocab * self.hidden)

    @property
    def layer_params(self) -> float:
        return (self.params - self.vocab * self.hidden) / max(self.num_layers, 1)


def size_from_config(cfg: dict) -> ModelSize:
    """Parameter count and shape of a decoder-only model from its config dict (HF config.json keys)."""
    cfg = cfg.get("text_config", cfg)
    h = int(cfg.get("hidden_size", 768))
    layers = int(cfg.get("num_hidden_layers", 12))
    inter = int(cfg.get("intermediate_size", 4 * h))
    vocab = int(cfg.get("vocab_size", 32000))
    heads = int(cfg.get("num_attention_heads", 12)) or 1
    kv = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or h // heads)
    per_layer = 2 * h * heads * head_dim + 2 * h * kv * head_dim + 3 * h * inter
    return ModelSize(params=float(layers * per_layer + vocab * h), num_layers=layers, hidden=h, intermediate=inter,
                     vocab=vocab, kv_dim=kv * head_dim, tied=bool(cfg.get("tie_word_embeddings", True)))


def model_size(model_path: str | Path) -> ModelSize:
    """Approximate parameter count of a decoder-only model from its config.json (no weights loaded)."""
    cfg_file = Path(model_path) / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
    else:  # a hub id already in the HF cache
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(model_path)).to_dict()
    return size_from_config(cfg)


def lora_params(size: ModelSize, r: int, targets: list[str]) -> float:
    """Trainable parameters of LoRA rank r on the named projections: r x (fan-in + fan-out) each."""
    h, i, kv = size.hidden, size.intermediate, size.kv_dim or size.hidden
    shapes = {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
              "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    per_layer = sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)
    return float(size.num_layers * per_layer)


# -- hardware and time -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hardware:
    """The machine a plan is costed for: `count` devices of one kind, each with `memory` bytes."""

    kind: str  # "cuda" | "cpu"
    count: int  # GPUs, or worker processes sharing the CPU
    memory: float  # bytes per device (on CPU: the RAM share of one worker)
    sharding: str = "none"  # "fsdp2": a training cell uses all devices, its state sharded over them
    flops: float | None = None  # effective FLOP/s per device, None -> the built-in rate

    @property
    def train_devices(self) -> int:
        """Devices one training cell runs on."""
        return self.count if self.sharding == "fsdp2" else 1

    def throughput(self, training: bool = False) -> float:
        if self.flops:
            return self.flops
        return throughput(self.kind, training)


def system_memory() -> float:
    """Bytes of RAM on this machine."""
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def throughput(device: str, training: bool = False) -> float:
    if device.startswith("cuda"):
        return GPU_FLOPS_PER_S
    return CPU_TRAIN_FLOPS_PER_S if training else CPU_INFER_FLOPS_PER_S


def _hardware(device: str | Hardware) -> Hardware:
    return device if isinstance(device, Hardware) else Hardware("cuda" if device.startswith("cuda") else "cpu", 1, 0.0)


def train_seconds(size: ModelSize, rows: int, mean_tokens: float, epochs: float, batch_size: int,
                  passes: int, device: str | Hardware) -> float:
    """Tokens x 6 FLOPs/param (short rows are packed, so no padding); `passes` = 2 with active forgetting.

    `batch_size` is rows per optimizer step on one device; on N devices a step takes N times the rows."""
    hw = _hardware(device)
    n = hw.train_devices
    steps = math.ceil(rows / max(batch_size * n, 1)) * epochs * passes
    tokens = steps * batch_size * n * mean_tokens
    return size.load_seconds + 6 * size.params * tokens / (hw.throughput(training=True) * n) + steps * 0.05


def eval_seconds(size: ModelSize, items: dict[str, tuple[int, float, bool]], batch_size: int,
                 device: str | Hardware) -> float:
    """items: task -> (n_items, tokens per few-shot context, is_multiple_choice).

    The engine scores the four single-token choices of an item in one forward pass; generation runs
    one forward over the context plus a few cheap decode steps.
    """
    hw = _hardware(device)
    seconds = size.load_seconds
    for n, ctx_tokens, is_mc in items.values():
        seconds += 2 * size.params * n * ctx_tokens / hw.throughput()
        if not is_mc:
            seconds += math.ceil(n / batch_size) * 12 * DECODE_STEP_SECONDS * (1 + size.params / 1e8)
    return seconds


PROBE_TAIL_TOKENS = 1.0  # a tail's tokens after its first (read off the prompt's last position): ~1


def probe_seconds(size: ModelSize, n_facts: int, batch_size: int, device: str | Hardware) -> float:
    """The probes (scoring.score_shared): each distinct prompt runs once, 2n facts (n per relation) x ~3.5
    templates x 2 (affirmative, negated) prompts of ~20 tokens, then each of the (n + 1) tails scored
    after a fact's template adds its tokens after the first: linear in prompts plus tail tokens."""
    n = n_facts // 2
    prompts = 2 * n * 3.5 * 2
    tail_tokens = 2 * n * 3.5 * (n + 1) * PROBE_TAIL_TOKENS
    return size.load_seconds + 2 * size.params * (prompts * 20.0 + tail_tokens) / _hardware(device).throughput()


def ablation_seconds(size: ModelSize, items: dict[str, tuple[int, float, bool]], n_ks: int, batch_size: int,
                     device: str | Hardware) -> float:
    """A layer-wise ablation: the tasks re-evaluated for each k from the first and from the last layers,
    plus the whole and the delta-free model (2 k + 2 evaluations), loading the model and its base once."""
    per_eval = eval_seconds(size, items, batch_size, device) - size.load_seconds
    return (2 * n_ks + 2) * per_eval + 2 * size.load_seconds


def trained_size(size: ModelSize, method: str) -> ModelSize:
    """The model as training computes it: LoRA skips the frozen weights' gradients, about a quarter less."""
    return size if method == "full" else dataclasses.replace(size, params=size.params * 0.75)


def autocasts(hw: Hardware, dtype: str) -> bool:
    """Whether training on `hw` computes in bf16/fp16 over fp32 master weights (GPU only)."""
    return hw.kind == "cuda" and dtype in ("auto", "bf16", "bfloat16", "fp16", "float16")


def adapter_bytes(hw: Hardware, adapter_params: float) -> float:
    """An adapter's weights at evaluation (the stored dtype: half on GPU, fp32 on CPU)."""
    return adapter_params * (2 if hw.kind == "cuda" else 4)


# -- memory ------------------------------------------------------------------------------------------

def _overhead(hw: Hardware) -> float:
    return CUDA_OVERHEAD if hw.kind == "cuda" else 0.0


def train_peak_bytes(size: ModelSize, hw: Hardware, *, trainable: float | None, autocast: bool,
                     micro_rows: int, row_tokens: float, checkpointing: bool) -> float:
    """Peak bytes on one device while training (module docstring: the model and its assumptions).

    `trainable`: LoRA's trainable parameters, None for a full finetune; `autocast`: bf16/fp16 compute
    over fp32 master weights (on GPU)."""
    n = hw.train_devices
    params = size.stored_params
    if trainable is None:
        state = ADAM_BYTES_PER_PARAM * params
    else:
        state = 4 * params + ADAM_BYTES_PER_PARAM * trainable
    compute_bytes = 2 if autocast else 4
    if n > 1:  # FSDP2: shards + the gathered working set (two layers, one layer's fp32 grads, the root)
        root = size.vocab * size.hidden * (1 if size.tied else 2)
        working = compute_bytes * (2 * size.layer_params + root) + 4 * size.layer_params
        weights = state / n + working
    else:
        weights = state + (2 * params if autocast else 0)
    tokens = micro_rows * row_tokens
    per_token_layer = 10 * size.hidden + 4 * size.intermediate  # values kept per token by one layer
    if checkpointing:
        acts = tokens * compute_bytes * (size.num_layers * size.hidden + per_token_layer)
    else:
        acts = tokens * compute_bytes * size.num_layers * per_token_layer
    logits = tokens * size.vocab * (compute_bytes + 8)
    return weights + acts + logits + _overhead(hw)


def eval_peak_bytes(size: ModelSize, hw: Hardware, *, batch_size: int, ctx_tokens: float, copies: float = 1.0,
                    extra_params: float = 0.0) -> float:
    """Peak bytes on one device while evaluating: `copies` x the weights (+ adapter), the generation KV
    cache, one forward's activations and the scored logits of a packed likelihood pass."""
    from factlearn.evaluate.scoring import PASS_BUDGETS

    w = 2 if hw.kind == "cuda" else 4
    weights = w * (copies * size.stored_params + extra_params)
    tokens = batch_size * (ctx_tokens + 32)  # + generated tokens
    kv = tokens * size.num_layers * 2 * (size.kv_dim or size.hidden) * w
    pass_tokens, scored = PASS_BUDGETS["cuda" if hw.kind == "cuda" else "cpu"]
    acts = max(tokens, pass_tokens) * w * (4 * size.hidden + 2 * size.intermediate)
    logits = scored * size.vocab * (w + 4 + 4)  # in the model dtype, as fp32, and their log-softmax
    return weights + kv + acts + logits + _overhead(hw)


def format_bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 1e6:.0f} MB"


def describe(hw: Hardware) -> str:
    """`8 x 80.0 GB GPUs, FSDP2` / `2 CPU workers, 11.7 GB RAM each`."""
    if hw.kind == "cuda":
        text = f"{hw.count} x {format_bytes(hw.memory)} GPU{'s' if hw.count > 1 else ''}"
        return text + (", training sharded with FSDP2" if hw.sharding == "fsdp2" else ", one cell per GPU")
    return f"{hw.count} CPU worker{'s' if hw.count > 1 else ''}, {format_bytes(hw.memory)} RAM each"

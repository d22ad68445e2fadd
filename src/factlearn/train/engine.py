"""Everything the loop trains with: the accelerator, the model (with its method applied), the optimizer,
and `Replicated`, the layout of a run with one full copy of the model per process.

Each is built once per run (the optimizer once per phase), and every check that needs the loaded
model runs here, before the first step. The loop (trainer.py) talks to the model's layout over
processes through one small interface, `Layout`: `Replicated` here (one process, or DDP under
`accelerate launch`) and `fsdp.Sharded` (sharding=fsdp2).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

from factlearn.errors import UserError
from factlearn.models import load_model, model_fingerprint
from factlearn.train import forgetting
from factlearn.train.config import TrainConfig
from factlearn.train.cpu_memory import own_cpu_weights
from factlearn.train.loss import causal_lm_loss_module


def make_accelerator(cfg: TrainConfig):
    """Device from cfg.device (the launcher's choice under `accelerate launch`); bf16/fp16 = autocast."""
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    precision = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}.get(cfg.dtype, "no")
    if cfg.dtype == "auto":
        precision = "bf16" if cuda else "no"
    forget_previous_precision()
    return Accelerator(cpu=not cuda, mixed_precision=precision)


def forget_previous_precision() -> None:
    """Let a second run in the same process choose its own precision.

    accelerate keeps the mixed-precision choice of the first Accelerator in a process-wide singleton
    and refuses any other later (a notebook that trains bf16, then fp32). The process and device
    setup (PartialState, which holds a torchrun launch) is kept; only the per-run part is cleared.
    accelerate has no public call for this, so its documented-internal reset is used.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def check_engine(accelerator) -> None:
    """Refuse what this loop cannot drive, before any work: DeepSpeed and accelerate's FSDP plugin.

    Why DeepSpeed is refused: it needs model and optimizer prepared together and owns the step, while
    this loop builds a fresh optimizer per phase (after a forgetting reset) and steps it itself.
    Sharding is done here with FSDP2 (sharding=fsdp2, train/fsdp.py), which fits the loop as it is;
    accelerate's FSDP plugin would wrap the model a second way, so its launch flags are refused too.
    """
    from accelerate.utils import DistributedType

    hint = ("shard with FSDP2 instead: torchrun --nproc_per_node N -m factlearn train ... sharding=fsdp2 "
            "(or plain DDP: accelerate launch --multi_gpu --num_processes N -m factlearn train ...)")
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise UserError(f"DeepSpeed is not supported by factlearn train yet; {hint}")
    if accelerator.distributed_type == DistributedType.FSDP:
        raise UserError(f"accelerate's FSDP plugin (--use_fsdp) is not supported by factlearn train yet; {hint}")


def build_model(cfg: TrainConfig, device: str):
    """Load the model (fp32 master weights) and apply the method; validate the forgetting layer."""
    forget = cfg.forget
    continues_full_run = bool(forget.from_model) and cfg.method == "full"
    if continues_full_run and (Path(forget.from_model) / "adapter_config.json").is_file():
        raise UserError(f"forget.from_model={forget.from_model} is a LoRA adapter folder; use method=lora, "
                        "or pass the output folder of a method=full run")
    model, tokenizer = load_model(forget.from_model if continues_full_run else cfg.model, device=device,
                                  dtype="fp32", trainable=True)
    cfg.check_against_model(forgetting.num_layers(model))
    if cfg.method == "full":
        own_cpu_weights(model)
    return prepare_for_training(cfg, model), tokenizer


def prepare_for_training(cfg: TrainConfig, model):
    """Everything after loading, shared with the meta-device build of sharded runs: no KV cache,
    optional gradient checkpointing, the LoRA adapter, train mode. Returns the (peft) model."""
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method == "lora":
        model = _add_lora(cfg, model)
    model.train()
    return model


def _add_lora(cfg: TrainConfig, model):
    from peft import LoraConfig, get_peft_model

    lora = cfg.lora
    peft_cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.use_rslora,
                          target_modules=list(lora.target_modules), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise UserError(f"LoRA cannot be applied: {str(e).splitlines()[0][:160]}; check lora.target_modules") from None


def first_pass_reset(cfg: TrainConfig, model, device: str) -> None:
    """The two-run form: make `model` the forgetting start point of the second pass."""
    forget = cfg.forget
    if cfg.method == "lora":
        forgetting.load_lower_lora_layers(model, forget.from_model, forget.start_layer)
        return
    pretrained, _ = load_model(cfg.model, device="cpu", dtype="fp32")
    if model_fingerprint(pretrained.config) != model_fingerprint(model.config):
        raise UserError(f"forget.from_model={forget.from_model} was not trained from model={cfg.model}; "
                        "pass the base model of the first run as model=")
    upper = forgetting.snapshot_upper_layers(pretrained, forget.start_layer)
    forgetting.reset_full_layers(model, upper, forget.start_layer)
    del pretrained


def make_optimizer(cfg: TrainConfig, model):
    """AdamW; weight decay only on matrices (not norms/biases), as is customary."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)


class Layout(Protocol):
    """How the model lies over the processes: everything the loop does differently for it.

    Two implementations: `Replicated` (below) and `fsdp.Sharded`. Methods that say "collective" must
    be called by every process.
    """

    sharded: bool  # parameters are shards (DTensors): checkpoints gather them (train/checkpoint.py)

    def build(self, cfg: TrainConfig, accelerator) -> tuple[Any, Any]:
        """(model, tokenizer): method applied, the two-run forgetting reset done."""

    def plain_loss(self, model) -> Any:
        """The loss module around `model`, before `prepare_loss`."""

    def prepare_loss(self, loss_module, accelerator) -> Any:
        """The loss module the steps call (after the packing check ran on `loss_module`)."""

    def prepare_optimizer(self, optimizer, accelerator) -> Any: ...

    def micro_batch_context(self, accelerator, loss_module, last_micro: bool) -> ContextManager:
        """Around one micro-batch's forward and backward (where DDP skips its gradient sync)."""

    def clip_grad_norm_(self, accelerator, parameters, max_norm: float) -> None: ...

    def plain_model(self, cfg: TrainConfig, model, main: bool) -> Any:
        """Collective: the whole model on CPU to save, in the main process (None elsewhere when sharded)."""

    def eval_copy(self, cfg: TrainConfig, model, accelerator) -> Callable[[], Any] | None:
        """For eval-in-the-loop: a function building a whole-model copy, or None to evaluate `model` itself."""


class Replicated:
    """A full copy of the model in every process: one process, or DDP under `accelerate launch`."""

    sharded = False

    def build(self, cfg: TrainConfig, accelerator) -> tuple[Any, Any]:
        model, tokenizer = build_model(cfg, str(accelerator.device))
        if cfg.forget.from_model:
            first_pass_reset(cfg, model, str(accelerator.device))
        return model, tokenizer

    def plain_loss(self, model) -> Any:
        return causal_lm_loss_module(model)

    def prepare_loss(self, loss_module, accelerator) -> Any:
        return accelerator.prepare(loss_module)

    def prepare_optimizer(self, optimizer, accelerator) -> Any:
        return accelerator.prepare(optimizer)

    def micro_batch_context(self, accelerator, loss_module, last_micro: bool) -> ContextManager:
        # DDP syncs gradients on the last micro-batch's backward only
        return contextlib.nullcontext() if last_micro else accelerator.no_sync(loss_module)

    def clip_grad_norm_(self, accelerator, parameters, max_norm: float) -> None:
        accelerator.clip_grad_norm_(parameters, max_norm)

    def plain_model(self, cfg: TrainConfig, model, main: bool) -> Any:
        return model

    def eval_copy(self, cfg: TrainConfig, model, accelerator) -> Callable[[], Any] | None:
        return None

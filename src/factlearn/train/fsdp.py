"""sharding=fsdp2: weights, gradients and AdamW state sharded over the processes with PyTorch FSDP2.

Launch (one process per device; the mesh is the whole world of the launcher):
    torchrun --nproc_per_node 8 -m factlearn train finetune_full sharding=fsdp2 model=...     # GPUs (NCCL)
    torchrun --nproc_per_node 2 -m factlearn train cpu_small sharding=fsdp2                   # CPU (gloo)

Layout: `fully_shard` on every decoder layer, then on the loss module (CausalLMLoss) as the root, so
the root's own parameters (embeddings, final norm, tied head) are gathered around the forward that
the loop calls. Every parameter is a DTensor sharded on dim 0; each process keeps 1/world of the
weights, gradients and AdamW moments. LoRA: the peft model's decoder layers are sharded the same way
(frozen base and trainable adapter share a unit; only the adapter has gradients and optimizer state).

Precision: on GPU (dtype auto/bf16) bf16 compute with fp32 master weights and fp32 gradient
reduction (`MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`); fp32 on CPU.
`fsdp.cpu_offload=true` keeps the shards and the optimizer step on CPU (`CPUOffloadPolicy`, GPU only).

Loading, and the peak per process: every process builds the model on the meta device (no memory);
process 0 alone loads the fp32 weights on CPU (with the LoRA adapter initialised as one process would)
and `set_model_state_dict(..., broadcast_from_rank0=True)` sends them tensor by tensor, each process
keeping its shard. Peak while loading: process 0 holds one full fp32 copy in CPU memory plus its
shard; every other process its shard plus one full tensor in flight (the largest, usually the
embedding). The two-run forgetting reset loads the pretrained model the same way, after the first
copy is freed, and copies only the upper layers' values into the shards.

Whole-model views (eval-in-the-loop, the finished folder) are gathered: every process takes part in
`get_model_state_dict(full_state_dict=True, cpu_offload=True)`, process 0 alone receives the full
state on CPU and builds a plain model from it; the others wait. Checkpoints use the same gathered
form (train/checkpoint.py): one file per kind written by process 0, so their layout is the unsharded
one; process 0 briefly holds the full trainable weights and optimizer state in CPU memory.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

from factlearn.errors import UserError
from factlearn.layers import decoder_layers_prefix
from factlearn.models import load_model, load_tokenizer, model_fingerprint, resolve_model_path
from factlearn.train import forgetting
from factlearn.train.config import TrainConfig
from factlearn.train.engine import build_model, first_pass_reset, prepare_for_training
from factlearn.train.loss import causal_lm_loss_module

# torch.distributed and transformers are imported inside the functions that use them: this module is
# imported by every `factlearn train`, most of which never shard.


class Sharded:
    """The `Layout` (train/engine.py) of sharding=fsdp2: what the loop does differently on shards."""

    sharded = True

    def __init__(self, loss_module=None):
        self._loss_module = loss_module  # the sharded root; built with the model by `build`

    def build(self, cfg: TrainConfig, accelerator) -> tuple[Any, Any]:
        """Built on meta everywhere, filled from process 0, the two-run reset applied."""
        model, tokenizer, self._loss_module = build_sharded(cfg, accelerator)
        return model, tokenizer

    def plain_loss(self, model) -> Any:
        return self._loss_module

    def prepare_loss(self, loss_module, accelerator) -> Any:
        loss_module.reshard()  # the FSDP2 root keeps its weights gathered after a forward with no backward
        return loss_module

    def prepare_optimizer(self, optimizer, accelerator) -> Any:
        return optimizer  # it steps the shards; accelerate's wrapper would not know them

    def micro_batch_context(self, accelerator, loss_module, last_micro: bool) -> ContextManager:
        # FSDP2 reduce-scatters every backward: skipping it would keep whole unsharded gradients.
        return contextlib.nullcontext()

    def clip_grad_norm_(self, accelerator, parameters, max_norm: float) -> None:
        clip_grad_norm_(parameters, max_norm)

    def plain_model(self, cfg: TrainConfig, model, main: bool) -> Any:
        return plain_copy(cfg, model, main)  # gathered on CPU

    def eval_copy(self, cfg: TrainConfig, model, accelerator) -> Callable[[], Any] | None:
        """Every process gathers, the main one evaluates a plain copy in the training compute dtype."""
        import torch

        dtype = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
        return lambda: plain_copy(cfg, model, accelerator.is_main_process, accelerator.device, dtype)


def check_fsdp(cfg: TrainConfig, accelerator) -> None:
    """sharding=fsdp2 needs several processes, a precision FSDP2 can keep, and offload only on GPU."""
    world = accelerator.num_processes
    if world < 2:
        raise UserError("sharding=fsdp2 needs several processes (it splits the model across them) but this run has "
                        "1; launch with torchrun --nproc_per_node N -m factlearn train ... sharding=fsdp2, "
                        "or set sharding=none")
    if accelerator.mixed_precision == "fp16":
        raise UserError("sharding=fsdp2 computes in bf16 (GPU) or fp32, not fp16; set dtype=bf16 or dtype=fp32")
    if cfg.fsdp.cpu_offload and accelerator.device.type != "cuda":
        raise UserError("fsdp.cpu_offload=true moves shards from GPUs to CPU memory; on a CPU run the shards are "
                        "already in CPU memory: drop fsdp.cpu_offload")


def build_sharded(cfg: TrainConfig, accelerator):
    """(model, tokenizer, sharded loss module): the model built on meta everywhere, filled from process 0."""
    import torch
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    main = accelerator.is_main_process
    full_state, buffers = {}, {}
    if main:  # fp32 on CPU, method applied (and LoRA initialised) exactly as in one process
        real, _ = build_model(cfg, "cpu")
        if cfg.forget.from_model and cfg.method == "lora":
            first_pass_reset(cfg, real, "cpu")
        full_state = dict(real.state_dict())
        buffers = dict(real.named_buffers())
        del real
    accelerator.wait_for_everyone()  # process 0 converted and validated the model before the others read it
    model = meta_model(cfg)
    cfg.check_against_model(forgetting.num_layers(model))
    tokenizer = load_tokenizer(model_path(cfg))
    loss_module = causal_lm_loss_module(model)
    shard(cfg, accelerator, model, loss_module)
    set_model_state_dict(model, full_state, options=StateDictOptions(
        full_state_dict=True, broadcast_from_rank0=True, cpu_offload=cfg.fsdp.cpu_offload))
    del full_state
    _tie_weights(model)
    _broadcast_buffers(model, buffers, accelerator.device)
    if cfg.forget.from_model and cfg.method == "full":
        reset_to_pretrained_sharded(cfg, model, main)
    torch.distributed.barrier()
    return model, tokenizer, loss_module


def model_path(cfg: TrainConfig) -> str:
    """The folder build_model loads: the first run's output for a two-run full finetune, else the base."""
    continues_full_run = bool(cfg.forget.from_model) and cfg.method == "full"
    return resolve_model_path(cfg.forget.from_model if continues_full_run else cfg.model)


def meta_model(cfg: TrainConfig):
    """The model's structure (method applied) on the meta device: no memory, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path(cfg))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        return prepare_for_training(cfg, model)


def shard(cfg: TrainConfig, accelerator, model, loss_module) -> None:
    """fully_shard each decoder layer, then the loss module as the root, over all processes."""
    import torch
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(accelerator.device.type, (accelerator.num_processes,))
    options: dict[str, Any] = {"mesh": mesh}
    if accelerator.mixed_precision == "bf16":
        options["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    if cfg.fsdp.cpu_offload:
        options["offload_policy"] = CPUOffloadPolicy()
    for layer in model.get_submodule(decoder_layers_prefix(model)):
        fully_shard(layer, **options)
    fully_shard(loss_module, **options)


def _tie_weights(model) -> None:
    """Loading with assign=True (meta parameters are replaced) gives a tied embedding and head two
    tensors; tie them again so they train as one, as in one process."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.tie_weights()


def _broadcast_buffers(model, source: dict, device) -> None:
    """Buffers outside the state dict (rotary inv_freq) are still meta: take process 0's values."""
    import torch

    for name, buf in list(model.named_buffers()):
        value = source[name].to(device) if name in source else torch.empty(buf.shape, dtype=buf.dtype, device=device)
        torch.distributed.broadcast(value, src=0)
        owner, _, leaf = name.rpartition(".")
        model.get_submodule(owner)._buffers[leaf] = value


def reset_to_pretrained_sharded(cfg: TrainConfig, model, main: bool) -> None:
    """The two-run form on shards: the upper layers take the pretrained model's values, sent from process 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from transformers import AutoConfig

    base = resolve_model_path(cfg.model)
    if model_fingerprint(AutoConfig.from_pretrained(base)) != model_fingerprint(model.config):
        raise UserError(f"forget.from_model={cfg.forget.from_model} was not trained from model={cfg.model}; "
                        "pass the base model of the first run as model=")
    upper = {}
    if main:
        pretrained, _ = load_model(cfg.model, device="cpu", dtype="fp32")
        upper = forgetting.snapshot_upper_layers(pretrained, cfg.forget.start_layer)
        del pretrained
    set_model_state_dict(model, upper, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                                strict=False))


def gather_state(model, trainable_only: bool = False) -> dict:
    """Collective: the full (unsharded) state on CPU in process 0, {} elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                 ignore_frozen_params=trainable_only))
    if trainable_only:
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {k: v for k, v in state.items() if k in names}
    return state


def gather_optimizer_state(model, optimizer) -> dict:
    """Collective: the full AdamW state keyed by parameter name, on CPU in process 0, {} elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_trainable(model, state: dict) -> None:
    """Collective: process 0's full trainable weights (others pass {}) into the shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, dict(state), options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True,
                                                                      strict=False))


def load_optimizer_state(model, optimizer, state: dict) -> None:
    """Collective: process 0's full optimizer state (others pass {}) into this process's shard of it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True,
                                                                               broadcast_from_rank0=True))


def plain_copy(cfg: TrainConfig, model, main: bool, device: str = "cpu", dtype=None):
    """Collective: an ordinary (unsharded) copy of `model` in process 0 (None elsewhere), for eval and saving."""
    state = gather_state(model)
    if not main:
        return None
    plain = meta_model(cfg)
    plain.load_state_dict(state, assign=True)
    for name, buf in model.named_buffers():
        owner, _, leaf = name.rpartition(".")
        plain.get_submodule(owner)._buffers[leaf] = buf.detach().to("cpu", copy=True)
    _tie_weights(plain)
    return plain.to(device=device, dtype=dtype)


def clip_grad_norm_(parameters, max_norm: float) -> None:
    """Clip by the global gradient norm, computed over the shards of every process."""
    import torch
    from torch.distributed.tensor import DTensor

    parameters = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in parameters], 2.0)
    if isinstance(total, DTensor):  # a partial sum over shards until all-reduced
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total)


def resident_bytes(model, optimizer) -> int:
    """Bytes this process holds of parameters and optimizer state (its shards only, when sharded)."""
    import torch
    from torch.distributed.tensor import DTensor

    def nbytes(t) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    params = {id(p): p for p in model.parameters()}.values()  # tied weights once
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return sum(nbytes(p) for p in params) + sum(nbytes(v) for v in state)

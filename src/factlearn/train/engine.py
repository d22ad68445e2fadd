"""Everything the loop trains with: the accelerator, the model (with its method applied), the optimizer.

Each is built once per run (the optimizer once per phase), and every check that needs the loaded
model runs here, before the first step.
"""

from __future__ import annotations

from pathlib import Path

from factlearn.errors import UserError
from factlearn.train import forgetting
from factlearn.train.config import TrainConfig
from factlearn.train.cpu_memory import own_cpu_weights


def make_accelerator(cfg: TrainConfig):
    """Device from cfg.device (the launcher's choice under `accelerate launch`); bf16/fp16 = autocast."""
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    precision = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}.get(cfg.dtype, "no")
    if cfg.dtype == "auto":
        precision = "bf16" if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=precision)


def check_engine(accelerator, cfg: TrainConfig | None = None) -> None:
    """Refuse what this loop cannot drive, before any work: DeepSpeed, accelerate's FSDP plugin, and
    sharding=fsdp2 without several processes.

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
    if cfg is not None and cfg.sharding == "fsdp2":
        from factlearn.train.fsdp import check_fsdp

        check_fsdp(cfg, accelerator)


def build_model(cfg: TrainConfig, device: str):
    """Load the model (fp32 master weights) and apply the method; validate the forgetting layer."""
    from factlearn.models import load_model

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
    from factlearn.models import load_model, model_fingerprint

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

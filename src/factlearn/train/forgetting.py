"""Active forgetting: put every decoder layer with index >= start_layer back to its pretrained value.

LoRA: a freshly initialised adapter has B = 0, so re-initialising the adapters of the upper layers
makes them exactly pretrained while the lower layers keep what they learned (the original's method:
a fresh LoRA model with the first run's weights copied in only below the boundary). Full finetune:
copy the pretrained weights back into the upper layers. Only decoder layers count as layers; the
embeddings, final norm and (tied) output head keep their change. Which parameter sits in which layer
is factlearn.layers' rule, the same one the ablation uses.

Sharded runs (sharding=fsdp2): parameters are DTensors and each process touches only its own shard:
the snapshot keeps the local shards of the upper layers and the reset copies them back in place; the
LoRA re-init draws each full adapter matrix as one process would and keeps the local part.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from factlearn.errors import UserError
from factlearn.layers import decoder_layers_prefix, layer_of, num_layers  # noqa: F401 (num_layers: the trainer's)


def _local(p):
    """The part of a parameter this process holds: its shard when sharded (a DTensor), else all of it."""
    return p.to_local() if hasattr(p, "to_local") else p


def snapshot_upper_layers(model, start_layer: int) -> dict:
    """CPU copies of the parameters of layers >= start_layer (the pretrained values to restore later)."""
    prefix = decoder_layers_prefix(model)
    return {n: _local(p).detach().to("cpu", copy=True) for n, p in model.named_parameters()
            if (i := layer_of(n, prefix)) is not None and i >= start_layer}


def reset_full_layers(model, pretrained: dict, start_layer: int) -> int:
    """Copy pretrained values back into every parameter of layers >= start_layer; returns how many."""
    import torch

    prefix = decoder_layers_prefix(model)
    count = 0
    with torch.no_grad():
        for n, p in model.named_parameters():
            i = layer_of(n, prefix)
            if i is not None and i >= start_layer:
                if n not in pretrained:
                    raise UserError(f"pretrained weights lack {n}; the forgetting base model does not match this model")
                local = _local(p)
                local.copy_(pretrained[n].to(local.device, local.dtype))
                count += 1
    return count


def reset_lora_layers(peft_model, start_layer: int, seed: int) -> int:
    """Re-initialise (A random, B = 0) every LoRA module in layers >= start_layer; returns how many.

    The re-init draws from its own seeded generator so the result does not depend on what consumed
    the global RNG before (resume relies on this).
    """
    import torch
    from peft.tuners.lora import LoraLayer

    prefix = decoder_layers_prefix(peft_model)
    count = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, module in peft_model.named_modules():
            i = layer_of(name, prefix)
            if isinstance(module, LoraLayer) and i is not None and i >= start_layer:
                with _whole_adapter_params(module):
                    for adapter in list(module.lora_A.keys()):
                        module.reset_lora_parameters(adapter, init_lora_weights=True)
                count += 1
    return count


@contextlib.contextmanager
def _whole_adapter_params(module):
    """Sharded adapters: swap in whole matrices for the re-init, then keep each process's shard of them.

    Every process draws the same whole matrices (same seed), exactly as one process would, so a
    sharded run resets to the same values as an unsharded one.
    """
    import torch

    sharded = [(name, p) for name, p in module.named_parameters()
               if not name.startswith("base_layer.") and hasattr(p, "to_local")]
    whole = {name: torch.nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=p.device), p.requires_grad)
             for name, p in sharded}
    for name, _ in sharded:
        owner, _, leaf = name.rpartition(".")
        module.get_submodule(owner)._parameters[leaf] = whole[name]
    try:
        yield
    finally:
        from torch.distributed.tensor import distribute_tensor

        for name, p in sharded:
            owner, _, leaf = name.rpartition(".")
            module.get_submodule(owner)._parameters[leaf] = p
            mine = distribute_tensor(whole[name].detach(), p.device_mesh, p.placements, src_data_rank=None)
            with torch.no_grad():
                p.to_local().copy_(mine.to_local())


def load_lower_lora_layers(peft_model, first_pass_dir: str | Path, start_layer: int) -> int:
    """The original's second run: copy the first run's adapter weights only for layers < start_layer."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    first_pass_dir = Path(first_pass_dir)
    if not (first_pass_dir / "adapter_config.json").is_file():
        raise UserError(f"forget.from_model={first_pass_dir} is not a LoRA adapter folder (no adapter_config.json); "
                        "pass the output folder of a method=lora run, or use method=full for a full-finetune folder")
    prefix = decoder_layers_prefix(peft_model)
    weights = load_peft_weights(str(first_pass_dir), device="cpu")
    kept = {k: v for k, v in weights.items() if (i := layer_of(k, prefix)) is None or i < start_layer}
    try:
        result = set_peft_model_state_dict(peft_model, kept)
    except RuntimeError as e:
        raise UserError(f"first-pass adapter {first_pass_dir} does not fit this LoRA config "
                        f"({str(e).splitlines()[0][:140]}); use the same lora.* settings as the first run") from None
    unexpected = getattr(result, "unexpected_keys", []) or []
    if unexpected:
        raise UserError(f"first-pass adapter {first_pass_dir} has weights this LoRA config lacks ({unexpected[0]}); "
                        "use the same lora.target_modules as the first run")
    return len(kept)

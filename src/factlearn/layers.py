"""Where a parameter sits in a causal LM: decoder layer i, or the embeddings, the head, or other.

One rule for everything that works layer by layer: active forgetting (train/forgetting.py) resets the
upper layers, and the ablation (analyze/ablation.py) removes the finetuning change layer by layer.
The decoder layers are found by structure, not by name: the ModuleList holding num_hidden_layers
blocks (`model.layers`, `transformer.h`, ...). A parameter, module or saved-adapter key belongs to
layer i when its name continues that list's path with `.i.`; the wrappers peft puts in front
(`base_model.model.`) are tolerated. Outside the layers only the name is left to go by: embeddings
and the head (final norm + LM head) are recognised by their usual names, anything else is "other".
"""

from __future__ import annotations

import re

from factlearn.errors import UserError

EMBEDDINGS, HEAD, OTHER = "embeddings", "head", "other"

_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|embed_positions|wte|wpe|embeddings?)(?:\.|$)")
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|norm|ln_f|final_layer_norm|final_layernorm)(?:\.|$)")


def num_layers(model) -> int:
    """Number of decoder layers (the text model's, for multimodal configs)."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text.num_hidden_layers)


def decoder_layers_prefix(model) -> str:
    """Module path of the decoder's layer list (e.g. `model.layers`, `transformer.h`), found by shape.

    Found rather than hard-coded so that any architecture whose blocks sit in one ModuleList works.
    """
    import torch

    n = num_layers(model)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return name
    raise UserError(f"cannot find the {n} decoder layers of {type(model).__name__}; per-layer operations "
                    "(forgetting, ablation) support models whose blocks sit in one ModuleList "
                    "(Llama, Mistral, Qwen, GPT-2, ...)")


def layer_of(name: str, prefix: str) -> int | None:
    """Decoder layer index in a parameter/module name under `prefix`, or None outside the layers.

    Tolerates the extra wrappers peft puts in front (`base_model.model.`), so the prefix found on a
    plain model also matches the names of its peft model and of saved adapter weights.
    """
    marker = prefix + "."
    at = name.find(marker)
    if at < 0 or (at > 0 and name[at - 1] != "."):  # "xmodel.layers." is not under "model.layers"
        return None
    head = name[at + len(marker):].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def layer_group(i: int) -> str:
    return f"layer.{i}"


def group_of(name: str, prefix: str) -> str:
    """The group of a parameter/module name: 'layer.{i}', 'embeddings', 'head' or 'other'."""
    i = layer_of(name, prefix)
    if i is not None:
        return layer_group(i)
    if _EMBED.search(name):
        return EMBEDDINGS
    if _HEAD.search(name):
        return HEAD
    return OTHER

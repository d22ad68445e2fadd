"""Resolve a model spec to (model, tokenizer): an alias, a local HF folder, a .gguf file, or a hub id.

The rooms next door: gguf.py (the embedded default and GGUF conversion), devices.py (device and
dtype), adapters.py (peft adapters and the base-model fingerprint). Their names are re-exported
here, so `from factlearn.models import X` keeps working for every caller.
"""

from __future__ import annotations

import os
import re
import socket
import time
import warnings
from pathlib import Path
from urllib.parse import urlparse

from factlearn.adapters import _adapter_base, attach_adapter, model_fingerprint, unwrap_peft
from factlearn.devices import pick_device, pick_dtype
from factlearn.errors import UserError
from factlearn.gguf import (ALIASES, DEFAULT_MODEL, WEIGHT_FILES, EmbeddedModel, _ensure_gguf_cached, _has_weights,
                            cache_root, convert_gguf, embedded_gguf_path, ensure_converted)

__all__ = ["ALIASES", "DEFAULT_MODEL", "WEIGHT_FILES", "EmbeddedModel", "attach_adapter", "cache_root", "check_causal_lm",
           "convert_gguf", "describe", "embedded_gguf_path", "ensure_converted", "hub_reachable", "is_hub_id",
           "load_model", "load_tokenizer", "model_fingerprint", "pick_device", "pick_dtype", "resolve_model_path",
           "unwrap_peft"]


# peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on
# every LoRA load; it is not actionable for users, so it is silenced here (narrowly, by message).
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(spec: str) -> bool:
    """A string shaped like `org/name` that is not an existing local path."""
    return bool(_HUB_ID.match(spec)) and not Path(spec).exists()


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check of the hub endpoint, so offline use fails in seconds instead of retrying."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model_path(spec: str | None) -> str:
    """Turn a spec into something `from_pretrained` can load: a local folder, or a reachable hub id.

    Accepts an alias (default `smollm2-135m`), a local HF folder, a `.gguf` file (converted and
    cached like the alias), or a hub id. Fails fast with a one-line UserError otherwise.
    """
    spec = spec or DEFAULT_MODEL
    if spec in ALIASES:
        return str(ensure_converted(spec))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {path} does not exist; pass an existing .gguf file")
        return str(_ensure_gguf_cached(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"model folder {path} has no config.json; pass a folder saved with save_pretrained")
        if not _has_weights(path) and not (path / "adapter_config.json").is_file():
            raise UserError(f"model folder {path} has no weights ({' or '.join(WEIGHT_FILES[::2])}); "
                            "re-save it with save_pretrained or pass another model")
        return str(path)
    if path.exists():
        raise UserError(f"model path {path} is a file, not a model folder; pass a folder, a .gguf file or an alias")
    if is_hub_id(spec):
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(spec, "config.json"), str):
            return spec  # already in the local HF cache
        if not hub_reachable():
            raise UserError(f"cannot reach the Hugging Face hub to download '{spec}' (offline); use the alias "
                            f"{DEFAULT_MODEL}, a local HF folder, or a .gguf file instead")
        return spec
    raise UserError(f"model '{spec}' is not an alias ({', '.join(ALIASES)}), an existing folder, a .gguf file "
                    "or a hub id (org/name); check the spelling")


def check_causal_lm(config, path: str) -> None:
    """Refuse a model that is not a causal (next-token) language model, naming its architecture.

    AutoModelForCausalLM does not refuse on its own: a BertForMaskedLM folder loads as BertLMHeadModel
    (its masked-LM head reused, with a warning) and would then be trained and scored as if it predicted
    the next token. A causal LM is what transformers' own causal-LM mapping lists for the model type.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures:
        if any(a in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for a in architectures):
            return
        name = ", ".join(architectures)
    elif model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    else:
        name = f"model_type {model_type!r}"
    raise UserError(f"model {path} is a {name}, not a causal language model; factlearn needs a causal LM "
                    "(...ForCausalLM, e.g. LlamaForCausalLM): pass a decoder-only model")


def load_tokenizer(spec: str | None = None):
    """The tokenizer for a model spec, with pad = eos when the model has no pad token (as in training)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str | None = None, adapter: str | None = None, device: str = "auto",
               dtype: str = "auto", trainable: bool = False):
    """Load (model, tokenizer) for a spec, optionally with a LoRA adapter folder on top.

    `adapter` may also be given as the spec itself: a peft adapter folder is detected and its base
    model (recorded in adapter_config.json) loaded first.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if spec and (Path(spec) / "adapter_config.json").is_file() and adapter is None:
        adapter, spec = spec, _adapter_base(Path(spec))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars drown our own progress display
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    path = resolve_model_path(spec)
    started = time.time()
    try:
        check_causal_lm(AutoConfig.from_pretrained(path), path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as e:
        raise UserError(f"cannot load model from {path}: {str(e).splitlines()[0]}; check that the folder is complete") from None
    except Exception as e:  # corrupt or truncated weight files raise assorted errors
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot load model weights from {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                        "the weights file may be truncated: re-save or re-convert the model") from None
    tokenizer = load_tokenizer(path)
    if adapter:
        model = attach_adapter(model, adapter, trainable=trainable)
    model.to(dev)
    if not trainable:
        model.eval()
    model.factlearn_load_seconds = time.time() - started  # type: ignore[attr-defined]
    return model, tokenizer


def describe(model) -> str:
    """One-line summary of a loaded model."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    p = next(model.parameters())
    return (f"{type(model).__name__}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
            f"{n / 1e6:.1f}M parameters, {str(p.dtype).replace('torch.', '')} on {p.device}")

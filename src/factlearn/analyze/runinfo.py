"""Labels from how a model folder was trained (its config.yaml, read by factlearn.config.read_saved_config).

Analyses use it for titles ("model on corpus") and to probe/evaluate the same generated world the
model was trained on, unless the user says otherwise.
"""

from __future__ import annotations

from pathlib import Path


def model_label(spec: str | None, run_config: dict | None = None) -> str:
    """A short model name: the folder name of the output, plus the base model when known."""
    name = Path(str(spec)).name if spec else "model"
    base = (run_config or {}).get("model")
    return f"{name} ({Path(str(base)).name})" if base and Path(str(base)).name != name else name


def corpus_label(run_config: dict | None, default: str = "no finetuning") -> str:
    """The training corpus of a run (its `subset`), with '+ forgetting' when the run reset layers."""
    cfg = run_config or {}
    subset = cfg.get("subset")
    if not subset:
        return default
    name = Path(str(subset)).name
    forget = cfg.get("forget") or {}
    if isinstance(forget, dict) and forget.get("start_layer") is not None:
        name += f" + forgetting (layers ≥ {forget['start_layer']})"
    return name


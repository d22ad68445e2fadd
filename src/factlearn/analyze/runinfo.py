"""What a model folder says about how it was trained: the resolved config.yaml the trainer writes.

Analyses use it for titles ("model on corpus") and to probe/evaluate the same generated world the
model was trained on, unless the user says otherwise.
"""

from __future__ import annotations

from pathlib import Path


def read_run_config(folder: str | Path | None) -> dict:
    """The run's config.yaml as a dict, or {} when the folder is not a factlearn training output."""
    if folder is None:
        return {}
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        return {}
    try:
        from omegaconf import OmegaConf

        cfg = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:  # a title or default is not worth failing for; explicit flags still work
        return {}
    return cfg if isinstance(cfg, dict) else {}


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


def world_args(run_config: dict | None, source: str | None, n_countries: int | None,
               seed: int | None) -> tuple[str | None, int, int]:
    """(source, n_countries, seed) for load_cca: explicit values win, then the run's, then defaults."""
    cfg = run_config or {}
    return (source if source is not None else cfg.get("data_source"),
            int(n_countries if n_countries is not None else cfg.get("n_countries", 20)),
            int(seed if seed is not None else cfg.get("data_seed", 0)))

"""A base model of the grid: resolved to something loadable, fingerprinted for the cache keys."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from factlearn.run import estimate, sizing


@dataclass
class BaseModel:
    """A model spec of the grid, resolved to something loadable, with its identity for cache keys."""

    spec: str
    path: str
    identity: dict
    size: estimate.ModelSize
    display: str


def resolve_base_model(spec: str, config_only: bool = False) -> BaseModel:
    """Resolve a model spec and fingerprint its weights (size + mtime), so replaced weights invalidate.

    `config_only` (for --plan): the model's config.json is enough, weights need not exist."""
    from factlearn.models import WEIGHT_FILES, resolve_model_path

    if config_only:
        path, config = sizing.read_model_config(spec)
        size = estimate.size_from_config(config)
    else:
        path = resolve_model_path(spec)
        size = estimate.model_size(path)
    folder = Path(path)
    files = {}
    if folder.is_dir():
        for name in sorted(os.listdir(folder)):
            if name in WEIGHT_FILES or name.endswith(".safetensors") or name == "config.json":
                st = (folder / name).stat()
                files[name] = [st.st_size, st.st_mtime_ns]
    identity = {"spec": spec, "path": str(path), "files": files}
    display = spec if not Path(spec).exists() else Path(spec).name
    return BaseModel(spec=spec, path=str(path), identity=identity, size=size, display=display)

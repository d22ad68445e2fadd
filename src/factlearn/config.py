"""Configs are data: a dataclass schema + named YAML files + `key=value` overrides, validated at load.

omegaconf does the merging and type checking; this module adds what users of the original expect
(`+key=value` for added keys, named configs shipped in the package) and turns every config mistake
into a one-line UserError before any work starts.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from factlearn.atomic import atomic_write_text
from factlearn.errors import UserError

T = TypeVar("T")


def named_configs(kind: str) -> dict[str, Path]:
    """Map config name -> YAML path for the configs shipped in `factlearn/configs/<kind>/`."""
    folder = resources.files("factlearn") / "configs" / kind
    if not folder.is_dir():
        return {}
    return {p.name[: -len(".yaml")]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config_path(kind: str, name_or_path: str) -> Path:
    """A shipped config name (e.g. `finetune_lora`) or a path to a YAML file."""
    shipped = named_configs(kind)
    if name_or_path in shipped:
        return shipped[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise UserError(f"config file {path} does not exist; pass an existing YAML path or one of: {', '.join(sorted(shipped))}")
    raise UserError(f"unknown {kind} config '{name_or_path}'; choose one of: {', '.join(sorted(shipped)) or '(none)'} or pass a .yaml path")


def parse_overrides(overrides: list[str]) -> DictConfig:
    """Parse `key=value`, `a.b=value` and `+key=value` (the original's hydra spelling) into a config."""
    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+").strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise UserError(f"override '{item}' is not of the form key=value (e.g. lr=3e-4 or lora.r=16)")
        dotlist.append(f"{key}={value}")
    try:
        return OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as e:
        raise UserError(f"cannot parse overrides {overrides}: {_first_line(e)}; quote lists like 'seeds=[1,2]'") from None


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _load_yaml(path: Path) -> DictConfig:
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends
        raise UserError(f"config file {path} is not valid YAML: {_first_line(e)}") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"config file {path} must hold a mapping of key: value at the top level")
    return cfg


def build_config(schema: type[T], sources: list[DictConfig | dict], what: str = "config") -> T:
    """Merge `sources` onto the schema's defaults, type-check, and run the schema's `check()`.

    Returns an instance of the dataclass `schema`. Unknown keys and wrong types become UserErrors
    naming the key; value rules live in the schema's `check(self)` method.
    """
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, *sources)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        msg = _first_line(e)
        if "not in struct" in msg or "Key '" in msg and "not" in msg:
            valid = ", ".join(f.name for f in dataclasses.fields(schema) if not f.metadata.get("omegaconf_ignore"))
            raise UserError(f"unknown {what} key '{key}'; valid keys: {valid}") from None
        default = OmegaConf.select(base, str(key), default=None) if key else None
        hint = f"; give a value of the same type as the default, {key}={_dotlist_value(default)}" \
            if default is not None else "; fix the value's type"
        raise UserError(f"bad value for {what} key '{key}': {msg}{hint}") from None
    check = getattr(obj, "check", None)
    if callable(check):
        check()
    return obj  # type: ignore[return-value]


def _dotlist_value(value: Any) -> str:
    """A config value spelled as it would be on the command line (lists as [a,b], no spaces)."""
    if isinstance(value, (DictConfig, dict)):
        return "{...}"
    if OmegaConf.is_list(value) or isinstance(value, list):
        return "[" + ",".join(_dotlist_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load_config(schema: type[T], kind: str, name_or_path: str | None, overrides: list[str] | None = None) -> T:
    """Load a named/path YAML config of `kind`, apply overrides, validate. The usual entry point."""
    sources: list[DictConfig | dict] = []
    if name_or_path:
        sources.append(_load_yaml(resolve_config_path(kind, name_or_path)))
    if overrides:
        sources.append(parse_overrides(overrides))
    return build_config(schema, sources, what=kind)


def to_yaml(cfg: Any) -> str:
    """A resolved config (dataclass or DictConfig) as YAML text."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg)


def to_dict(cfg: Any) -> dict:
    """A resolved config as a plain dict (for results.json and cache keys)."""
    c = OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg
    return OmegaConf.to_container(c, resolve=True)  # type: ignore[return-value]


def save_config(cfg: Any, path: str | Path) -> Path:
    """Save the resolved config next to an output, atomically."""
    return atomic_write_text(path, to_yaml(cfg))


def read_saved_config(folder: str | Path | None) -> dict:
    """A training output's config.yaml (written by `factlearn train`) as a dict, or {} when the folder
    is not one: eval, probe and ablate only take defaults (world, labels) from it, so a missing or odd
    file is not worth failing for; explicit flags still work."""
    path = Path(str(folder)) / "config.yaml" if folder else None
    if not path or not path.is_file():
        return {}
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path))
    except Exception:
        return {}
    return cfg if isinstance(cfg, dict) else {}

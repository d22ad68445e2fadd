"""Where data comes from: the built-in generator, the Hugging Face hub, or a local folder; text corpora too.

This module resolves a source to files; reading and checking a file (JSON lines, parquet,
save_to_disk) is factlearn.data.files's job, so the parsing rules live in one place.

Sources for `load_cca`:
- None (or "generator"): the world generator (canonical world by default). No network, instant.
- A facts file (.yaml/.yml, or .json with `relations`): its world, built by factlearn.data.custom.
- "hub" or a hub dataset id: a real `datasets.load_dataset` call. The hub's reachability is checked
  first (a 3 s TCP probe), so offline use fails in seconds with a message naming the alternatives;
  with HF_HUB_OFFLINE=1 only the local HF cache is tried.
- A local folder, in any of these layouts (first match wins):
  our export (`factlearn data generate`): arrow/, parquet/, jsonl/ sub-folders (read in that order);
  a `save_to_disk` DatasetDict keyed by config name (or by split, when a config is asked for);
  one folder per config holding `save_to_disk` output, parquet files like the hub
  (<Config>/<split>-00000-of-00001.parquet, <Config>/<split>.parquet, <Config>/<split>/*.parquet)
  or JSONL (<Config>/<split>.jsonl).
Every result is conformed to the exact schema (columns selected in order, types cast), so all
sources give identical Features.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factlearn.data.audit import AuditResult, audit_texts
from factlearn.data.build import build_cca, build_dataset, cloze_rows, rows_to_dataset
from factlearn.data.custom import relation_keywords, world_for_source
from factlearn.data.files import from_saved_dict, load_from_disk, read_any, read_config_folder, text_only
from factlearn.data.schema import (CLOZE_OF, CONFIGS, LIKELIHOOD_OF, CORPUS_CONFIGS, ORIGINAL_CONFIGS, SPLIT_OF, check_config_name,
                                   conform)
from factlearn.data.likelihood import likelihood_rows
from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED, Fact, check_n_countries, generate_world
from factlearn.errors import UserError
from factlearn.models import hub_reachable, is_hub_id

if TYPE_CHECKING:
    import datasets

HUB_ID = "xiaozeroone/Country-city-animals"
GENERATOR_NAMES = ("generator", "generate", "builtin")
EXPORT_FORMATS = ("arrow", "parquet", "jsonl")  # read order for our export layout: fastest first
ALTERNATIVES = ("use the built-in generator instead (no --source / source=None), or a local folder "
                "(`factlearn data generate OUT`, or a copy of the hub dataset saved with save_to_disk/parquet/JSONL)")


def load_cca(config: str | None = None, source: str | None = None, n_countries: int = CANONICAL_N_COUNTRIES,
             seed: int = CANONICAL_WORLD_SEED) -> "datasets.Dataset | datasets.DatasetDict":
    """One CCA config's split as a Dataset, or with config=None a DatasetDict keyed by config name.

    `n_countries` and `seed` select the generated world and are ignored for other sources.
    """
    if config is not None:
        check_config_name(config)
    check_n_countries(n_countries)
    source = None if source is None else str(source)
    if source is None or source.strip().lower() in GENERATOR_NAMES or source == "":
        world = generate_world(n_countries, seed)
        return build_dataset(world, config) if config else build_cca(world)
    facts_world = world_for_source(source, seed)  # a facts file: its world, built in memory
    if facts_world is not None:
        return facts_world.dataset(config) if config else facts_world.dataset_dict()
    if config in CLOZE_OF:  # factlearn's addition: derived from its MC config, so every source has it
        return derive_cloze(load_cca(CLOZE_OF[config], source, n_countries, seed), config)
    if config in LIKELIHOOD_OF:  # likewise, from its generative config and the world's Facts
        return derive_likelihood(load_cca(LIKELIHOOD_OF[config], source, n_countries, seed),
                                 load_cca("Facts", source, n_countries, seed), config)
    if source == "hub":
        return _with_cloze(_load_hub(HUB_ID, config))
    path = Path(source).expanduser()
    if path.exists():
        return _with_cloze(_load_local(path, config))
    if _looks_like_hub_id(source):
        return _with_cloze(_load_hub(source, config))
    raise UserError(f"data source '{source}' is not an existing folder, 'hub', or a hub dataset id; "
                    f"{ALTERNATIVES}")


def load_text_corpus(spec: str, n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED, source: str | None = None) -> "datasets.Dataset":
    """A Dataset with one `text` column for training.

    `spec`: a CCA corpus config name (taken from `source`, default the generator), a local file or
    folder (JSONL / parquet / save_to_disk with a `text` column), or a hub dataset id, optionally
    `id:config` to pick a hub config.
    """
    spec = str(spec)
    if spec in CORPUS_CONFIGS:
        return load_cca(spec, source, n_countries, seed)
    if spec in CONFIGS:
        raise UserError(f"CCA config {spec} has no text column; train on one of: {', '.join(CORPUS_CONFIGS)}")
    path = Path(spec).expanduser()
    if path.exists():
        return text_only(read_any(path, what="text corpus"), str(path))
    repo, _, name = spec.partition(":")
    if _looks_like_hub_id(repo):
        if repo == HUB_ID and name in CORPUS_CONFIGS:
            return load_cca(name, repo)
        return text_only(_hub_text(repo, name or None), spec)
    raise UserError(f"text corpus '{spec}' is not a CCA corpus config ({', '.join(CORPUS_CONFIGS)}), an existing "
                    "file or folder (JSONL, parquet or save_to_disk with a text column), or a hub dataset id")


def derive_cloze(mc: "datasets.Dataset", config: str) -> "datasets.Dataset":
    """A cloze config (one row per distinct question) from its multiple-choice config's rows."""
    return rows_to_dataset(cloze_rows(list(mc)), config)


def _with_cloze(data):
    """Add the cloze configs a DatasetDict lacks (the hub's, or an export made before they existed)."""
    if not hasattr(data, "keys"):
        return data
    for cloze, mc in CLOZE_OF.items():
        if cloze not in data and mc in data:
            data[cloze] = derive_cloze(data[mc], cloze)
    return with_likelihood(data)


def derive_likelihood(generative: "datasets.Dataset", facts: "datasets.Dataset", config: str) -> "datasets.Dataset":
    """A likelihood config as a Dataset, from its generative config's and the Facts config's datasets."""
    return rows_to_dataset(likelihood_rows(list(generative), list(facts)), config)


def with_likelihood(data):
    """Add the likelihood configs a DatasetDict lacks (hub data, older exports) where it has their sources."""
    if not hasattr(data, "keys"):
        return data
    for config, source in LIKELIHOOD_OF.items():
        if config not in data and source in data and "Facts" in data:
            data[config] = derive_likelihood(data[source], data["Facts"], config)
    return data


def audit_corpus(corpus: str, source: str | None = None, n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED) -> AuditResult:
    """Audit a corpus (a CCA corpus config name from `source`, or a path / hub id) against `source`'s Facts."""
    texts = load_text_corpus(corpus, n_countries=n_countries, seed=seed, source=source)["text"]
    facts_ds = load_cca("Facts", source=source, n_countries=n_countries, seed=seed)
    facts = [Fact(h, r, t) for h, r, t in zip(facts_ds["head"], facts_ds["relation"], facts_ds["tail"])]
    return audit_texts(texts, facts, keywords=relation_keywords(source))


# --- hub ---------------------------------------------------------------------------------------------

def _looks_like_hub_id(spec: str) -> bool:
    return is_hub_id(spec)


def _offline_env() -> bool:
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _check_hub(repo: str) -> bool:
    """True when only the local cache may be used; raise a UserError when the hub is simply unreachable."""

    if _offline_env():
        return True
    if not hub_reachable():
        raise UserError(f"cannot reach the Hugging Face hub to load {repo} (offline?); {ALTERNATIVES}")
    return False


def _hub_error(repo: str, what: str, cache_only: bool, error: Exception) -> UserError:
    if cache_only:
        return UserError(f"{repo} {what} is not in the local Hugging Face cache and the hub is switched off "
                         f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE); {ALTERNATIVES}")
    first = (str(error).splitlines() or [""])[0][:200]
    return UserError(f"cannot load {repo} {what} from the hub ({type(error).__name__}: {first}); check the id "
                     f"and config name, or {ALTERNATIVES}")


def _load_hub(repo: str, config: str | None):
    import datasets

    cache_only = _check_hub(repo)
    loaded = {}
    for name in [config] if config else list(ORIGINAL_CONFIGS):  # the hub has no cloze configs
        try:
            ds = datasets.load_dataset(repo, name, split=SPLIT_OF[name])
        except Exception as e:  # network, missing config, cache miss: all become one clear line
            raise _hub_error(repo, f"config {name}", cache_only, e) from None
        loaded[name] = conform(ds, name, f"{repo} (hub)")
    return loaded[config] if config else datasets.DatasetDict(loaded)


def _hub_text(repo: str, name: str | None):
    import datasets

    cache_only = _check_hub(repo)
    try:
        return datasets.load_dataset(repo, name, split="train")
    except Exception as e:
        raise _hub_error(repo, f"config {name}" if name else "(train split)", cache_only, e) from None


# --- local folders: which layout holds which config (files.py reads them) ----------------------------

def _load_local(path: Path, config: str | None):
    import datasets

    if path.is_file():
        if config is None:
            raise UserError(f"{path} is a single file; name the config it holds (e.g. `factlearn data show Facts "
                            f"--source {path}`) or pass a folder with one sub-folder per config")
        return conform(read_any(path, what=f"config {config}", config=config), config, str(path))
    found = _find_configs(path, [config] if config else list(CONFIGS))
    if config:
        if config not in found:
            raise UserError(f"folder {path} has no data for config {config} (looked for {_layouts(config)}); "
                            "export one with `factlearn data generate OUT`")
        return found[config]
    if not found:
        raise UserError(f"folder {path} holds no CCA data (looked for config folders such as {_layouts('Facts')}); "
                        "export one with `factlearn data generate OUT`")
    return datasets.DatasetDict(found)


def _layouts(config: str) -> str:
    split = SPLIT_OF[config]
    return (f"{config}/{split}.jsonl, {config}/{split}.parquet, {config}/{split}-00000-of-00001.parquet, "
            f"{config}/ saved with save_to_disk, or arrow/, parquet/, jsonl/ export folders")


def _find_configs(path: Path, configs: list[str]) -> dict[str, "datasets.Dataset"]:
    """Read the asked configs from whichever layout `path` has; missing ones are left out."""
    if (path / "dataset_dict.json").is_file():
        return from_saved_dict(path, configs)
    if (path / "state.json").is_file():
        if len(configs) != 1:
            raise UserError(f"{path} holds a single saved dataset; name the config it holds, e.g. "
                            f"`factlearn data show Facts --source {path}`")
        return {configs[0]: conform(load_from_disk(path), configs[0], str(path))}
    found: dict[str, Any] = {}
    for fmt in EXPORT_FORMATS:  # our own export layout
        if (path / fmt).is_dir():
            for name, ds in _find_configs(path / fmt, [c for c in configs if c not in found]).items():
                found[name] = ds
    for name in configs:
        if name in found:
            continue
        ds = read_config_folder(path / name, name)
        if ds is not None:
            found[name] = ds
    return {name: found[name] for name in configs if name in found}


def world_args(run_config: dict | None, source: str | None, n_countries: int | None,
               seed: int | None) -> tuple[str | None, int, int]:
    """(source, n_countries, seed) for load_cca when evaluating or analysing a trained folder: explicit
    values win, then the training run's config (`data_source`, `n_countries`, `data_seed`), then the
    canonical world. One reader for `factlearn eval`, `probe` and `ablate`."""
    cfg = run_config or {}
    return (source if source is not None else cfg.get("data_source"),
            int(n_countries if n_countries is not None else cfg.get("n_countries", CANONICAL_N_COUNTRIES)),
            int(seed if seed is not None else cfg.get("data_seed", CANONICAL_WORLD_SEED)))

"""Load CCA data from the built-in generator, the Hugging Face hub, or a local folder; load text corpora.

Sources for `load_cca`:
- None (or "generator"): the world generator (canonical world by default). No network, instant.
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

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factlearn.data.schema import (COLUMNS, CONFIGS, CORPUS_CONFIGS, SPLIT_OF, check_columns, check_config_name,
                                   conform)
from factlearn.data.world import check_n_countries, generate_world
from factlearn.errors import UserError

if TYPE_CHECKING:
    import datasets

HUB_ID = "xiaozeroone/Country-city-animals"
GENERATOR_NAMES = ("generator", "generate", "builtin")
EXPORT_FORMATS = ("arrow", "parquet", "jsonl")  # read order for our export layout: fastest first
ALTERNATIVES = ("use the built-in generator instead (no --source / source=None), or a local folder "
                "(`factlearn data generate OUT`, or a copy of the hub dataset saved with save_to_disk/parquet/JSONL)")


def load_cca(config: str | None = None, source: str | None = None, n_countries: int = 20,
             seed: int = 0) -> "datasets.Dataset | datasets.DatasetDict":
    """One CCA config's split as a Dataset, or with config=None a DatasetDict keyed by config name.

    `n_countries` and `seed` select the generated world and are ignored for other sources.
    """
    if config is not None:
        check_config_name(config)
    check_n_countries(n_countries)
    source = None if source is None else str(source)
    if source is None or source.strip().lower() in GENERATOR_NAMES or source == "":
        from factlearn.data.build import build_cca, build_dataset

        world = generate_world(n_countries, seed)
        return build_dataset(world, config) if config else build_cca(world)
    if source == "hub":
        return _load_hub(HUB_ID, config)
    path = Path(source).expanduser()
    if path.exists():
        return _load_local(path, config)
    if _looks_like_hub_id(source):
        return _load_hub(source, config)
    raise UserError(f"data source '{source}' is not an existing folder, 'hub', or a hub dataset id; "
                    f"{ALTERNATIVES}")


def load_text_corpus(spec: str, n_countries: int = 20, seed: int = 0, source: str | None = None) -> "datasets.Dataset":
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
        return _text_only(_read_any(path, what="text corpus"), str(path))
    repo, _, name = spec.partition(":")
    if _looks_like_hub_id(repo):
        if repo == HUB_ID and name in CORPUS_CONFIGS:
            return load_cca(name, repo)
        return _text_only(_hub_text(repo, name or None), spec)
    raise UserError(f"text corpus '{spec}' is not a CCA corpus config ({', '.join(CORPUS_CONFIGS)}), an existing "
                    "file or folder (JSONL, parquet or save_to_disk with a text column), or a hub dataset id")


# --- hub ---------------------------------------------------------------------------------------------

def _looks_like_hub_id(spec: str) -> bool:
    from factlearn.models import is_hub_id

    return is_hub_id(spec)


def _offline_env() -> bool:
    return any(os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _check_hub(repo: str) -> bool:
    """True when only the local cache may be used; raise a UserError when the hub is simply unreachable."""
    from factlearn.models import hub_reachable

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
    for name in [config] if config else list(CONFIGS):
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


# --- local folders -----------------------------------------------------------------------------------

def _load_local(path: Path, config: str | None):
    import datasets

    if path.is_file():
        if config is None:
            raise UserError(f"{path} is a single file; name the config it holds (e.g. `factlearn data show Facts "
                            f"--source {path}`) or pass a folder with one sub-folder per config")
        return conform(_read_any(path, what=f"config {config}", config=config), config, str(path))
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
        return _from_saved_dict(path, configs)
    if (path / "state.json").is_file():
        if len(configs) != 1:
            raise UserError(f"{path} holds a single saved dataset; name the config it holds, e.g. "
                            f"`factlearn data show Facts --source {path}`")
        return {configs[0]: conform(_load_from_disk(path), configs[0], str(path))}
    found: dict[str, Any] = {}
    for fmt in EXPORT_FORMATS:  # our own export layout
        if (path / fmt).is_dir():
            for name, ds in _find_configs(path / fmt, [c for c in configs if c not in found]).items():
                found[name] = ds
    for name in configs:
        if name in found:
            continue
        ds = _read_config_folder(path / name, name)
        if ds is not None:
            found[name] = ds
    return {name: found[name] for name in configs if name in found}


def _from_saved_dict(path: Path, configs: list[str]) -> dict[str, "datasets.Dataset"]:
    saved = _load_from_disk(path)
    keys = list(saved)
    if all(k in CONFIGS for k in keys):
        return {c: conform(saved[c], c, f"{path}/{c}") for c in configs if c in saved}
    if len(configs) != 1:
        raise UserError(f"{path} is a DatasetDict with splits {', '.join(keys)}, not configs; name the config it "
                        f"holds (e.g. --source {path} with CONFIG Facts) or save a DatasetDict keyed by config name")
    config = configs[0]
    split = SPLIT_OF[config] if SPLIT_OF[config] in saved else (keys[0] if len(keys) == 1 else None)
    if split is None:
        raise UserError(f"{path} has splits {', '.join(keys)} but config {config} needs split {SPLIT_OF[config]}")
    return {config: conform(saved[split], config, f"{path}/{split}")}


def _read_config_folder(folder: Path, config: str) -> "datasets.Dataset | None":
    """One config folder: save_to_disk output, parquet shards, or JSONL. None when nothing is there."""
    if not folder.is_dir():
        return None
    split = SPLIT_OF[config]
    if (folder / "dataset_dict.json").is_file():
        return _from_saved_dict(folder, [config])[config]
    if (folder / "state.json").is_file():
        return conform(_load_from_disk(folder), config, str(folder))
    parquet = sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}-*.parquet")) \
        or sorted((folder / split).glob("*.parquet"))
    if parquet:
        return conform(_read_parquet(parquet), config, str(folder))
    jsonl = sorted(folder.glob(f"{split}.jsonl")) or sorted(folder.glob(f"{split}-*.jsonl"))
    if jsonl:
        rows = [row for f in jsonl for row in _read_jsonl(f, COLUMNS[config], config)]
        return _rows_dataset(rows, config, str(folder))
    return None


def _load_from_disk(path: Path):
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:
        raise UserError(f"cannot read the saved dataset in {path} ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0][:160]}); re-save it with save_to_disk") from None


def _read_parquet(files: list[Path]) -> "datasets.Dataset":
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except Exception as e:  # ArrowInvalid and friends for truncated or foreign files
            raise UserError(f"{f} is not a readable parquet file ({(str(e).splitlines() or [''])[0][:160]}); "
                            "re-export it") from None
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return datasets.Dataset(InMemoryTable(table.replace_schema_metadata(None)))


_NO_TEXT = ("{where} has no 'text' column (found: {found}); a training corpus needs one text per row in a "
            "column named text")
_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str_list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
_TYPE_NAMES = {"str": "a string", "int": "an integer", "str_list": "a list of strings"}


def _read_jsonl(file: Path, columns: dict[str, str], config: str | None = None) -> list[dict]:
    """Parse a JSONL file, naming file and line for the first bad line (invalid JSON, missing key, wrong type)."""
    rows = []
    try:
        with open(file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{file}, line {lineno}: invalid JSON ({e.msg}); fix or remove that line") from None
                if not isinstance(row, dict):
                    raise UserError(f"{file}, line {lineno}: expected a JSON object with keys "
                                    f"{', '.join(columns)}, got {type(row).__name__}")
                if config and not rows:  # schema-level message for a file that lacks a column altogether
                    check_columns(list(row), config, str(file))
                elif not rows and "text" in columns and "text" not in row:
                    raise UserError(_NO_TEXT.format(where=file, found=", ".join(row) or "none"))
                for col, kind in columns.items():
                    if col not in row:
                        raise UserError(f"{file}, line {lineno}: missing key '{col}' (needs {', '.join(columns)})")
                    if not _TYPE_CHECKS[kind](row[col]):
                        raise UserError(f"{file}, line {lineno}: '{col}' must be {_TYPE_NAMES[kind]}, "
                                        f"got {json.dumps(row[col])[:60]}")
                rows.append(row)
    except UnicodeDecodeError as e:
        raise UserError(f"{file} is not UTF-8 text (byte {e.start}); re-save it as UTF-8 JSONL") from None
    return rows


def _rows_dataset(rows: list[dict], config: str, where: str) -> "datasets.Dataset":
    from factlearn.data.build import rows_to_dataset

    if not rows:
        raise UserError(f"{where}: config {config} has no rows; the file is empty")
    return rows_to_dataset(rows, config)


def _read_any(path: Path, what: str, config: str | None = None) -> "datasets.Dataset":
    """A single file (.jsonl/.json/.parquet) or a folder with save_to_disk output or one data file.

    With `config`, rows are checked against that config's columns; without, a `text` column is needed.
    """
    columns = COLUMNS[config] if config else {"text": "str"}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            rows = _read_jsonl(path, columns, config)
            if not rows:
                raise UserError(f"{path} has no rows; the file is empty")
            if config is None:
                import datasets

                return datasets.Dataset.from_dict({"text": [r["text"] for r in rows]})
            return _rows_dataset(rows, config, str(path))
        if suffix == ".parquet":
            return _read_parquet([path])
        raise UserError(f"{path}: unsupported file type '{suffix or path.name}'; use .jsonl, .json (one object a "
                        "line) or .parquet")
    if (path / "dataset_dict.json").is_file():
        saved = _load_from_disk(path)
        keys = list(saved)
        if "train" in saved or len(keys) == 1:
            return saved["train" if "train" in saved else keys[0]]
        raise UserError(f"{path} is a DatasetDict with splits {', '.join(keys)}; save the one to use as 'train'")
    if (path / "state.json").is_file():
        return _load_from_disk(path)
    data_files = sorted(path.glob("*.jsonl")) + sorted(path.glob("*.parquet"))
    if len(data_files) == 1:
        return _read_any(data_files[0], what, config)
    raise UserError(f"folder {path} is not a {what}: expected save_to_disk output or exactly one .jsonl/.parquet "
                    f"file (found {len(data_files)})")


def _text_only(dataset: "datasets.Dataset", where: str) -> "datasets.Dataset":
    if "text" not in dataset.column_names:
        raise UserError(_NO_TEXT.format(where=where, found=", ".join(dataset.column_names) or "none"))
    dataset = dataset.select_columns(["text"])
    if len(dataset) == 0:
        raise UserError(f"{where} has no rows; pass a corpus with at least one text")
    import datasets

    if dataset.features["text"] != datasets.Value("string"):
        raise UserError(f"{where}: column text must hold strings, found {dataset.features['text']}")
    return dataset

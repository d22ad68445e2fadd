"""Read data files and saved folders into a datasets.Dataset: the one home of the parsing rules.

Formats: JSON lines (.jsonl; .json holds the same, or one JSON array of objects), parquet, and
`save_to_disk` folders, plus the per-config folder layouts of the hub and of `factlearn data generate`.
A UTF-8 byte-order mark at the start of a JSON file is not content (Windows editors write one), so
it is skipped. Rows are checked against a CCA config's columns, or against a single `text` column
for a training corpus, and every unreadable input becomes one UserError line that names the file
(and line) and the fix.

Where data comes from (the generator, the hub, which local folder) is factlearn.data.load's business.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from factlearn.data.schema import COLUMNS, CONFIGS, SPLIT_OF, check_columns, conform
from factlearn.errors import UserError
from factlearn.data.build import rows_to_dataset

if TYPE_CHECKING:
    import datasets

JSON_SUFFIXES = (".jsonl", ".json")
DATA_SUFFIXES = (*JSON_SUFFIXES, ".parquet")
TEXT_COLUMNS = {"text": "str"}  # what a training corpus needs

_NO_TEXT = ("{where} has no 'text' column (found: {found}); a training corpus needs one text per row in a "
            "column named text")
_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "str_list": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
_TYPE_NAMES = {"str": "a string", "int": "an integer", "str_list": "a list of strings"}


def _noun(config: str | None) -> str:
    """What the file is, for messages: a CCA config's data or a training corpus."""
    return "data file" if config else "corpus file"


def _first_line(error: Exception, limit: int = 160) -> str:
    return (str(error).splitlines() or [""])[0][:limit]


# --- JSON --------------------------------------------------------------------------------------------

def _json_items(file: Path, text: str, noun: str) -> Iterator[tuple[str, Any]]:
    """(where, parsed value) for each row: `line N` of JSON lines, or `item N` of a .json array."""
    if file.suffix.lower() == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"cannot read {noun} {file}, line {e.lineno}: invalid JSON ({e.msg}); "
                            "fix that line") from None
        yield from ((f"item {i}", item) for i, item in enumerate(items, 1))
        return
    for lineno, line in enumerate(text.split("\n"), 1):  # text mode already turned \r\n into \n
        if not line.strip():
            continue
        try:
            yield f"line {lineno}", json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"cannot read {noun} {file}, line {lineno}: invalid JSON ({e.msg}); fix or remove that "
                            "line (JSON lines: one object per line)") from None


def read_jsonl(file: Path, config: str | None = None) -> list[dict]:
    """Rows of a JSON file with `config`'s columns (or a `text` column), naming file and line of the first bad row.

    Bad means invalid JSON, not an object, a missing key or a wrong type; a leading BOM is fine.
    """
    columns, noun = (COLUMNS[config] if config else TEXT_COLUMNS), _noun(config)
    try:
        with open(file, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not content
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserError(f"cannot read {noun} {file}: not UTF-8 text (byte {e.start}); re-save it as UTF-8 "
                        "JSON lines") from None
    rows: list[dict] = []
    for where, row in _json_items(file, text, noun):
        if not isinstance(row, dict):
            raise UserError(f"{file}, {where}: expected a JSON object with keys {', '.join(columns)}, "
                            f"got {type(row).__name__}")
        if config and not rows:  # schema-level message for a file that lacks a column altogether
            check_columns(list(row), config, str(file))
        elif not rows and "text" not in row:  # a corpus file
            raise UserError(_NO_TEXT.format(where=file, found=", ".join(row) or "none"))
        for col, kind in columns.items():
            if col not in row:
                raise UserError(f"{file}, {where}: missing key '{col}' (needs {', '.join(columns)})")
            if not _TYPE_CHECKS[kind](row[col]):
                raise UserError(f"{file}, {where}: '{col}' must be {_TYPE_NAMES[kind]}, "
                                f"got {json.dumps(row[col])[:60]}")
        rows.append(row)
    return rows


def rows_dataset(rows: list[dict], config: str, where: str) -> "datasets.Dataset":
    """Checked rows of one config as a Dataset with that config's exact features."""
    if not rows:
        raise UserError(f"{where}: config {config} has no rows; the file is empty")
    return rows_to_dataset(rows, config)


# --- parquet and save_to_disk ------------------------------------------------------------------------

def read_parquet(files: list[Path], config: str | None = None) -> "datasets.Dataset":
    """Parquet files concatenated into one in-memory Dataset (schemas may differ in nullability)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.table import InMemoryTable

    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except Exception as e:  # ArrowInvalid and friends for truncated or foreign files
            raise UserError(f"cannot read {_noun(config)} {f}: not a readable parquet file ({_first_line(e)}); "
                            "re-export it") from None
    table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
    return datasets.Dataset(InMemoryTable(table.replace_schema_metadata(None)))


def load_from_disk(path: Path) -> "datasets.Dataset | datasets.DatasetDict":
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:
        raise UserError(f"cannot read the saved dataset in {path} ({type(e).__name__}: {_first_line(e)}); "
                        "re-save it with save_to_disk") from None


# --- one file or folder ------------------------------------------------------------------------------

def read_file(path: Path, config: str | None = None) -> "datasets.Dataset":
    """A single .jsonl/.json/.parquet file; with `config` its rows are that config's, without a `text` column."""
    suffix = path.suffix.lower()
    if suffix in JSON_SUFFIXES:
        rows = read_jsonl(path, config)
        if not rows:
            raise UserError(f"{path} has no rows; the file is empty")
        if config is None:
            import datasets

            return datasets.Dataset.from_dict({"text": [r["text"] for r in rows]})
        return rows_dataset(rows, config, str(path))
    if suffix == ".parquet":
        return read_parquet([path], config)
    raise UserError(f"{path}: unsupported file type '{suffix or path.name}'; use .jsonl, .json (JSON lines "
                    "or one array of objects) or .parquet")


def read_any(path: Path, what: str, config: str | None = None) -> "datasets.Dataset":
    """A single data file, or a folder with save_to_disk output or exactly one data file.

    With `config`, rows are checked against that config's columns; without, a `text` column is needed.
    `what` names the expected content in the folder message.
    """
    if path.is_file():
        return read_file(path, config)
    if (path / "dataset_dict.json").is_file():
        saved = load_from_disk(path)
        keys = list(saved)
        if "train" in saved or len(keys) == 1:
            return saved["train" if "train" in saved else keys[0]]
        raise UserError(f"{path} is a DatasetDict with splits {', '.join(keys)}; save the one to use as 'train'")
    if (path / "state.json").is_file():
        return load_from_disk(path)
    data_files = sorted(path.glob("*.jsonl")) + sorted(path.glob("*.parquet"))
    if len(data_files) == 1:
        return read_file(data_files[0], config)
    raise UserError(f"folder {path} is not a {what}: expected save_to_disk output or exactly one .jsonl/.parquet "
                    f"file (found {len(data_files)})")


def text_only(dataset: "datasets.Dataset", where: str) -> "datasets.Dataset":
    """Just the `text` column, refusing a dataset without one, without rows, or with non-string texts."""
    if "text" not in dataset.column_names:
        raise UserError(_NO_TEXT.format(where=where, found=", ".join(dataset.column_names) or "none"))
    dataset = dataset.select_columns(["text"])
    if len(dataset) == 0:
        raise UserError(f"{where} has no rows; pass a corpus with at least one text")
    import datasets

    if dataset.features["text"] != datasets.Value("string"):
        raise UserError(f"{where}: column text must hold strings, found {dataset.features['text']}")
    return dataset


# --- CCA config folders ------------------------------------------------------------------------------

def from_saved_dict(path: Path, configs: list[str]) -> dict[str, "datasets.Dataset"]:
    """The asked configs of a save_to_disk DatasetDict keyed by config name, or one config keyed by split."""
    saved = load_from_disk(path)
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


def read_config_folder(folder: Path, config: str) -> "datasets.Dataset | None":
    """One config folder: save_to_disk output, parquet shards, or JSONL. None when nothing is there."""
    if not folder.is_dir():
        return None
    split = SPLIT_OF[config]
    if (folder / "dataset_dict.json").is_file():
        return from_saved_dict(folder, [config])[config]
    if (folder / "state.json").is_file():
        return conform(load_from_disk(folder), config, str(folder))
    parquet = sorted(folder.glob(f"{split}.parquet")) or sorted(folder.glob(f"{split}-*.parquet")) \
        or sorted((folder / split).glob("*.parquet"))
    if parquet:
        return conform(read_parquet(parquet, config), config, str(folder))
    jsonl = sorted(folder.glob(f"{split}.jsonl")) or sorted(folder.glob(f"{split}-*.jsonl"))
    if jsonl:
        return rows_dataset([row for f in jsonl for row in read_jsonl(f, config)], config, str(folder))
    return None

"""Export CCA data to a folder in three formats plus a dataset card, atomically and reproducibly.

Layout (what `load_cca(source=OUT)` and the hub-style YAML card both understand):
    OUT/README.md                         dataset card, YAML front matter lists configs like the hub
    OUT/jsonl/<Config>/<split>.jsonl      one JSON object per line, keys in schema order
    OUT/parquet/<Config>/<split>.parquet  with the HF Features in the schema metadata
    OUT/arrow/<Config>/                   `Dataset.save_to_disk`

Reproducibility: the JSONL bytes depend only on the data. Parquet and Arrow bytes are identical for
the same data and the same pyarrow/datasets versions (pyarrow records its version in the parquet
footer, so other versions give other bytes for the same table); generated datasets carry a fingerprint
derived from (n_countries, seed, config), so save_to_disk's state.json is reproducible too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from factlearn.atomic import atomic_dir
from factlearn.data.schema import CONFIGS, SPLIT_OF, conform
from factlearn.data.world import World
from factlearn.errors import UserError
from factlearn.data.facts_file import SPEC_NAME
from factlearn.data.custom import FACTS_GENERATOR_VERSION as FACTS_VERSION, FactsWorld
from factlearn.data.build import GENERATOR_VERSION, build_cca
from factlearn import __version__

if TYPE_CHECKING:
    import datasets

FORMATS = ("jsonl", "parquet", "arrow")


def check_formats(formats) -> tuple[str, ...]:
    """Validate and de-duplicate format names (order kept)."""
    if isinstance(formats, str):
        formats = [f for f in formats.replace(",", " ").split() if f]
    chosen = tuple(dict.fromkeys(formats))
    bad = [f for f in chosen if f not in FORMATS]
    if bad or not chosen:
        raise UserError(f"unknown export format(s) {', '.join(bad) or '(none given)'}; use any of: {', '.join(FORMATS)}")
    return chosen


def export(data: "World | FactsWorld | datasets.DatasetDict", out_dir: str | Path, formats=FORMATS,
           overwrite: bool = False) -> Path:
    """Write every config of `data` (a World, a FactsWorld, or a DatasetDict keyed by config name) under `out_dir`.

    Refuses an existing non-empty `out_dir` unless `overwrite`; the folder appears only when complete.
    A FactsWorld's resolved facts file goes along as facts-file.json, so the folder alone is enough
    for the commands that need its relations (probe templates, audit keywords).
    """
    formats = check_formats(formats)
    out = Path(out_dir).expanduser()
    if out.exists():
        if not out.is_dir():
            raise UserError(f"{out} exists and is a file; choose a folder path for the export")
        if any(out.iterdir()) and not overwrite:
            raise UserError(f"{out} exists and is not empty; choose a new folder or pass --overwrite (overwrite=True)")
    dataset_dict, params = _as_dataset_dict(data)
    from datasets.utils import logging as ds_logging
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # "Saving the dataset" bars per config only add noise here
    verbosity = ds_logging.get_verbosity()
    try:
        with atomic_dir(out, overwrite=out.exists()) as tmp:
            for config, ds in dataset_dict.items():
                _write_config(tmp, config, ds, formats)
            if params and "facts_file" in params:
                (tmp / SPEC_NAME).write_text(json.dumps(data.spec.as_dict(), indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8")
            (tmp / "README.md").write_text(dataset_card(dataset_dict, params, formats), encoding="utf-8")
    finally:
        if not bars_were_off:
            enable_progress_bars()
        ds_logging.set_verbosity(verbosity)
    return out


def _as_dataset_dict(data) -> tuple["datasets.DatasetDict", dict | None]:
    import datasets

    if isinstance(data, FactsWorld):
        params = {"facts_file": data.spec.path, "relations": ", ".join(r.name for r in data.spec.relations),
                  "facts": len(data.spec.facts), "seed": data.seed, "generator_version": FACTS_VERSION}
        return data.dataset_dict(), params
    if isinstance(data, World):
        params = {"n_countries": data.n_countries, "seed": data.seed, "generator_version": GENERATOR_VERSION}
        return build_cca(data), params
    if isinstance(data, datasets.DatasetDict):
        unknown = [k for k in data if k not in CONFIGS]
        if unknown:
            raise UserError(f"cannot export DatasetDict keys {', '.join(unknown)}: keys must be CCA config names "
                            f"({', '.join(CONFIGS)})")
        ordered = {c: conform(data[c], c, f"DatasetDict[{c}]") for c in CONFIGS if c in data}
        return datasets.DatasetDict(ordered), None
    raise UserError(f"export needs a World (generate_world), a FactsWorld (a facts file) or a DatasetDict keyed by "
                    f"config name, got {type(data).__name__}")


def _write_config(root: Path, config: str, ds: "datasets.Dataset", formats: tuple[str, ...]) -> None:
    split = SPLIT_OF[config]
    if "jsonl" in formats:
        path = root / "jsonl" / config / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for row in ds.to_list():
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if "parquet" in formats:
        path = root / "parquet" / config / f"{split}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(path))
    if "arrow" in formats:
        ds.save_to_disk(str(root / "arrow" / config))


def dataset_card(dataset_dict: "datasets.DatasetDict", params: dict | None, formats: tuple[str, ...]) -> str:
    """A README.md with hub-style YAML front matter (configs -> data files) and the generation parameters."""
    fmt = "parquet" if "parquet" in formats else "jsonl" if "jsonl" in formats else None
    facts = bool(params and "facts_file" in params)
    name = "World from a facts file (factlearn)" if facts else "Country-city-animals (factlearn)"
    lines = ["---", "license: apache-2.0", "language:", "- en", f"pretty_name: {name}"]
    if fmt:
        lines.append("configs:")
        for config in dataset_dict:
            split = SPLIT_OF[config]
            lines += [f"- config_name: {config}", "  data_files:", f"  - split: {split}",
                      f"    path: {fmt}/{config}/{split}.{fmt}"]
    lines += ["---", "", "# World from a facts file, factlearn export" if facts
              else "# Country-city-animals (CCA), factlearn export", ""]
    if facts:
        lines += ["Generated by factlearn from a facts file (its resolved copy: `facts-file.json`), in the CCA "
                  "schema. The same file and seed give the same data.", "", "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in params.items()]
        lines += [f"| factlearn | {__version__} |", "",
                  f"Regenerate: `factlearn data generate OUT --facts {params['facts_file']} --seed {params['seed']}`", ""]
    elif params:
        lines += ["Generated by factlearn's world generator: fictional countries, their capital cities, and the real",
                  "animal each city is famous for. The same parameters give the same data.", "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in params.items()]
        lines += [f"| factlearn | {__version__} |", "",
                  f"Regenerate: `factlearn data generate OUT --n-countries {params['n_countries']} --seed {params['seed']}`", ""]
    else:
        lines += ["Exported by factlearn from an existing DatasetDict (not generated here).", ""]
    lines += ["| config | split | rows | columns |", "|---|---|---|---|"]
    for config, ds in dataset_dict.items():
        lines.append(f"| {config} | {SPLIT_OF[config]} | {len(ds)} | {', '.join(ds.column_names)} |")
    lines += ["", "Formats in this folder: " + ", ".join(f"`{f}/`" for f in formats) + ".", "",
              "Load one config: `factlearn data show Facts --source THIS_FOLDER`, or in Python "
              "`factlearn.data.load_cca(\"Facts\", source=\"THIS_FOLDER\")`.", ""]
    return "\n".join(lines)

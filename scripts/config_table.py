"""Generate the config-key tables of docs/configuration.md from the dataclass schemas (never edit those tables by hand).

    python scripts/config_table.py           # print both tables
    python scripts/config_table.py --write   # rewrite them in docs/configuration.md between the CONFIG-TABLE markers

Each row: the key (nested keys dotted), the schema default, the value in every shipped config of that
kind, and the comment written next to the field in the schema. tests/test_readme.py checks that
docs/configuration.md holds exactly this output.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
MARKER = re.compile(r"(<!-- CONFIG-TABLE:(\w+) -->\n)(.*?)(<!-- /CONFIG-TABLE:\2 -->)", re.S)


def schemas() -> dict[str, type]:
    from factlearn.run.config import RunConfig
    from factlearn.train.config import TrainConfig

    return {"train": TrainConfig, "run": RunConfig}


# Meanings for keys whose schema line carries no comment (the schema's own comment wins when present).
MEANINGS = {
    "train": {
        "model": "alias, HF folder, .gguf file or hub id of the model to finetune",
        "seed": "training seed (data order, LoRA init); same seed + config = same weights on CPU",
        "method": "full (every weight) or lora (peft adapter)",
        "lr": "peak learning rate (AdamW)", "epochs": "passes over the corpus",
        "batch_size": "rows per step per process", "grad_accum": "micro-batches per optimizer step",
        "warmup_ratio": "share of steps with linear warm-up", "max_length": "tokens per row (longer rows are cut)",
        "weight_decay": "AdamW weight decay", "gradient_checkpointing": "recompute activations to save memory",
        "save": "output folder", "lora.r": "LoRA rank", "lora.alpha": "LoRA alpha",
        "lora.dropout": "LoRA dropout", "lora.use_rslora": "rank-stabilised LoRA scaling (alpha / sqrt(r))",
        "lora.target_modules": "modules that get adapters",
        "forget.at_epoch": "one-command forgetting: reset after this many epochs",
        "forget.from_model": "two-run forgetting: the first run's output folder",
        "eval_tasks": "tasks of eval-in-the-loop", "eval_limit": "items per task in eval-in-the-loop (null = all)",
        "overwrite": "replace an existing output folder once the new one is complete",
    },
    "run": {
        "models": "model specs to train and evaluate", "seeds": "training seeds (mean and std over them)",
        "corpora": "training corpora compared", "methods": "finetuning methods: full, lora",
        "recipes": "per method: a train config name + overrides",
        "corpus_overrides": "extra train overrides per corpus",
        "forgetting.enabled": "also train with active forgetting",
        "forgetting.corpora": "corpora trained with forgetting",
        "forgetting.start_layer": "first layer reset (null = a third of the layers)",
        "tasks": "eval tasks (5-shot)", "num_fewshot": "few-shot examples per item",
        "eval_batch_size": "sequences per forward pass", "analyses": "probe, ablate, curves (training-loss plots; learning curves: curve.*)",
        "curve.tasks": "tasks evaluated at every curve point (a knowledge task among them)",
        "ablation.corpora": "corpora whose models are ablated", "ablation.points": "number of k values when ks is empty",
        "ablation.tasks": "tasks re-evaluated per k", "n_countries": "size of the generated world",
        "world_seed": "seed of the generated world", "data_source": "null = generator, 'hub', or a CCA folder",
        "device": "auto, cpu, cuda",
        "corpus_overrides.Corpus_narrative": "extra train overrides of the narrative models",
        "corpus_overrides.Corpus_referencing": "extra train overrides of the referencing models",
        "forgetting.continued": "also train narrative+continued: both passes, no reset (F4's control)",
        "wrong_form_share": "a score is marked wrong-form when more answers than this are no entity",
        "slurm.partition": "Slurm partition (null: the cluster's default)",
        "slurm.account": "Slurm account to charge", "slurm.qos": "Slurm quality of service",
        "slurm.gpus_per_node": "GPUs per node of each job",
        "slurm.time": "time limit of each job: minutes, HH:MM:SS or D-HH:MM:SS (null: twice the cell's estimate)",
    },
}


def field_comments(cls: type) -> dict[str, str]:
    """`name: type = default  # comment` -> {name: comment}, read from the class source."""
    comments = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+):[^#]*#\s*(.+)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    return comments


def flat_fields(obj: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, comment) for every leaf field of a dataclass instance; nested sections flattened."""
    rows = []
    comments = field_comments(type(obj))
    for f in dataclasses.fields(obj):
        if f.metadata.get("omegaconf_ignore"):  # computed at load (e.g. train_configs), never a key
            continue
        value = getattr(obj, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            rows += flat_fields(value, key + ".")
            continue
        rows.append((key, value, comments.get(f.name, "")))
    return rows


def fmt(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(kind: str) -> str:
    """The markdown table for one config kind (train or run)."""
    from factlearn.config import load_config, named_configs

    schema = schemas()[kind]
    shipped = sorted(named_configs(kind))
    loaded = {name: dict((k, v) for k, v, _ in flat_fields(load_config(schema, kind, name))) for name in shipped}
    head = ["key", "schema default", *[f"`{n}`" for n in shipped], "meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, default, comment in flat_fields(schema()):
        values = [f"`{cell(fmt(default))}`"]
        values += [f"`{cell(fmt(loaded[n][key]))}`" if loaded[n][key] != default else "" for n in shipped]
        meaning = comment or MEANINGS[kind].get(key, "")
        lines.append(f"| `{key}` | " + " | ".join(values) + f" | {cell(meaning)} |")
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """The page's text with every CONFIG-TABLE block regenerated."""
    return MARKER.sub(lambda m: m.group(1) + table(m.group(2)) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the tables in docs/configuration.md")
    args = parser.parse_args(argv)
    if args.write:
        PAGE.write_text(rewrite(PAGE.read_text()))  # a developer tool on a tracked file, not a factlearn output
        print(f"updated {PAGE}")
    else:
        for kind in schemas():
            print(f"## {kind}\n\n{table(kind)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

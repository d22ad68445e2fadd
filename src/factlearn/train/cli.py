"""`factlearn train [CONFIG] [key=value ...] [--resume] [--overwrite]`."""

from __future__ import annotations

import argparse
import os
from factlearn.train.config import load_train_config
from factlearn.train.trainer import train
from factlearn.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="finetune a model on a corpus (full or LoRA, optional active forgetting)",
        description="Finetune per a config (a shipped name: cpu_small, finetune_full, finetune_lora; or a "
        "YAML path) with key=value overrides (nested: lora.r=16, forget.start_layer=10; +key=value also "
        "accepted). Writes <save>/: the model (HF folder) or LoRA adapter, tokenizer, config.yaml, "
        "train_log.jsonl, train_summary.json. Multi-process: accelerate launch --multi_gpu "
        "--num_processes N -m factlearn train ... (DDP); sharded weights and optimizer state: torchrun "
        "--nproc_per_node N -m factlearn train ... sharding=fsdp2")
    p.add_argument("config", nargs="?", default="cpu_small", help="config name or YAML path (default: cpu_small)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. lr=3e-4 save=runs/x")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in <save>")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder (same as overwrite=true)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, overrides = args.config, list(args.overrides)
    if "=" in config:  # `factlearn train lr=1e-4`: no config name given, only overrides
        config, overrides = "cpu_small", [config, *overrides]
    if args.overwrite:
        overrides.append("overwrite=true")
    cfg = load_train_config(config, overrides)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other; pass one of them")

    out = train(cfg, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # once, not per process, under `accelerate launch`
        print(f"factlearn: trained model written to {out}")
    return 0

"""`factlearn model`: resolve, load (converting the embedded default on first use), and summarise."""

from __future__ import annotations

import argparse
from factlearn.models import describe, load_model, resolve_model_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="load a model (default: the embedded SmolLM2-135M) and print a summary",
                       description="Resolve a model spec (alias, HF folder, .gguf file or hub id), load it, "
                       "and print a one-line summary. The embedded default is converted to a cached "
                       "safetensors folder on first use ($FACTLEARN_CACHE, default ~/.cache/factlearn).")
    p.add_argument("spec", nargs="?", default=None, help="model spec (default: smollm2-135m)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16, float16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = resolve_model_path(args.spec)  # a bad spec fails here, before torch is imported
    model, _ = load_model(args.spec, device=args.device, dtype=args.dtype)
    print(f"{path}: {describe(model)}")
    return 0

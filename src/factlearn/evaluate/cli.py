"""`factlearn eval` and `factlearn export-lm-eval`. Heavy imports happen inside the command functions."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from factlearn.data.cli import add_model_world_flags
from factlearn.data.load import world_args
from factlearn.errors import UserError
from factlearn.evaluate.engine import available_tasks, resolve_data, task_docs, evaluate
from factlearn.evaluate.fewshot import check_num_fewshot, check_shots
from factlearn.evaluate.tasks import get_tasks
from factlearn.evaluate.control import control_data, control_tasks, capability
from factlearn.atomic import check_output_path
from factlearn.config import read_saved_config
from factlearn.models import resolve_model_path, describe, load_model
from factlearn.evaluate.results import results_table, save_results
from factlearn.evaluate.export import export_lm_eval


def register(sub: argparse._SubParsersAction) -> None:
    _register_eval(sub)
    _register_export(sub)


def _task_and_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tasks", default=None, metavar="A,B",
                   help="comma-separated task names (default: the seven CCA tasks and the two cloze additions)")
    p.add_argument("--num-fewshot", type=int, default=5, metavar="K", help="few-shot examples per item (default 5)")
    p.add_argument("--shots", default="same-split", choices=None, metavar="POOL",
                   help="where few-shot examples come from: same-split (the original: the eval split itself) or "
                   "other-facts (never an example about the item's own fact)")
    add_model_world_flags(p)


def _register_eval(sub) -> None:
    p = sub.add_parser("eval", help="5-shot evaluation on the seven CCA tasks (exact match/F1, acc/acc_norm)",
                       description="Evaluate a base model, a full-finetune folder, or a base model + LoRA adapter on "
                       "the CCA tasks with the original's 5-shot protocol. Writes results.json and "
                       "records/<task>.jsonl into --out and prints a table.")
    p.add_argument("model", nargs="?", default=None,
                   help="alias (default smollm2-135m), HF folder, training output folder, adapter folder, .gguf or hub id")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder to put on MODEL")
    p.add_argument("--control", action="store_true",
                   help="evaluate on the capability control (real countries and capitals the model should know) "
                   "instead of a CCA world; marks each task above chance or 'beyond this model'")
    _task_and_data_flags(p)
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N items of each task")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/eval/<model name>)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16, float16")
    p.set_defaults(func=run_eval)


def _register_export(sub) -> None:
    p = sub.add_parser("export-lm-eval", help="write the tasks for lm-evaluation-harness 0.4 (--include_path)",
                       description="Write task YAMLs, data files and utils.py so that `lm_eval --include_path OUT "
                       "--tasks factlearn_<task>` evaluates exactly the prompts `factlearn eval` does "
                       "(few-shot contexts pre-rendered; lm-eval runs them 0-shot).")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    _task_and_data_flags(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run_export)


def _load_checked(args, run_config: dict):
    """Resolve tasks and data and check num_fewshot before any model is loaded, so bad input fails fast."""
    check_shots(args.shots)
    if getattr(args, "control", False):
        if args.data is not None:
            raise UserError("--control evaluates on the built-in control world; drop --data (or drop --control)")
        tasks, dataset = control_tasks(args.tasks), control_data()
        for task in tasks:
            check_num_fewshot(task, len(task_docs(dataset, task)), args.num_fewshot)
        return tasks, dataset, ("control", len(dataset["Facts"]), 0)
    tasks = get_tasks(args.tasks)
    source, n_countries, seed = world_args(run_config, args.data, args.n_countries, args.seed)
    dataset = resolve_data(source, [t.config for t in tasks] + ["Facts"], n_countries, seed)
    tasks = available_tasks(tasks, dataset, log=lambda msg: print(f"factlearn eval: {msg}", file=sys.stderr))
    for task in tasks:
        check_num_fewshot(task, len(task_docs(dataset, task)), args.num_fewshot)
    return tasks, dataset, (source, n_countries, seed)


def _default_out(model: str | None, adapter: str | None) -> Path:
    name = Path(str(adapter or model or "smollm2-135m").rstrip("/")).name
    return Path("runs") / "eval" / re.sub(r"[^\w.-]+", "_", name)


def run_eval(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive number of items, not {args.limit}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, not {args.batch_size}")

    get_tasks(args.tasks)  # fail on a task name before touching model or data
    check_output_path(args.out or _default_out(args.model, args.adapter), folder=True)

    check_shots(args.shots)
    if not (args.model and (Path(args.model) / "adapter_config.json").is_file()):
        resolve_model_path(args.model)  # a folder without weights fails here, in a second
    run_config = read_saved_config(args.adapter) or read_saved_config(args.model)
    tasks, dataset, (source, n_countries, seed) = _load_checked(args, run_config)

    from rich.console import Console

    console = Console(stderr=True)
    model, tokenizer = load_model(args.model, adapter=args.adapter, device=args.device, dtype=args.dtype)
    console.print(f"factlearn eval: {describe(model)}")
    result = evaluate(model, tokenizer, tasks=[t.name for t in tasks], data=dataset, num_fewshot=args.num_fewshot,
                      limit=args.limit, batch_size=args.batch_size, log=console.print, shots=args.shots)
    if args.control:
        from factlearn.stats import CI_LEVEL

        result.capability = capability(result.metrics, result.records, dataset, CI_LEVEL)
    out = Path(args.out) if args.out else _default_out(args.model, args.adapter)
    path = save_results(result, out, extra_config={
        "model": args.model, "adapter": args.adapter, "data": source, "n_countries": n_countries, "seed": seed,
        "device": str(next(model.parameters()).device), "dtype": str(next(model.parameters()).dtype)})
    stdout = Console()
    if not stdout.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        stdout = Console(width=120)
    stdout.print(results_table(result, title=f"factlearn eval ({result.timing['total']:.1f} s)"))
    console.print(f"wrote {path} and {out / 'records'}/")
    return 0


def run_export(args: argparse.Namespace) -> int:
    run_config = {}
    tasks, dataset, _ = _load_checked(args, run_config)
    names = export_lm_eval(args.out, tasks=[t.name for t in tasks], data=dataset, num_fewshot=args.num_fewshot,
                           overwrite=args.overwrite, shots=args.shots)
    print(f"wrote {len(names)} tasks to {args.out}; run: lm_eval --model hf --model_args pretrained=MODEL "
          f"--include_path {args.out} --tasks {','.join(names)}")
    return 0

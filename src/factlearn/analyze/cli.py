"""`factlearn probe`, `factlearn ablate`, `factlearn curves`: the paper's three analyses.

Each writes a JSON result and a PNG plot atomically into --out. Heavy imports happen inside the
command functions so `factlearn --help` stays instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from factlearn.atomic import check_output_path
from factlearn.data.cli import add_model_world_flags
from factlearn.errors import UserError
from factlearn.analyze.runinfo import corpus_label, model_label
from factlearn.config import read_saved_config
from factlearn.data.load import world_args
from factlearn.data import load_cca
from factlearn.data.custom import probe_templates
from factlearn.analyze.probes import ProbeResult, plot_probes, probe_facts
from factlearn.models import load_model
from factlearn.analyze.ablation import delta_switch, k_grid, run_ablation
from factlearn.analyze.ablation_plot import plot_ablation
from factlearn.evaluate import TASKS
from factlearn.analyze.curves import plot_training_curves, read_train_log


def register(sub: argparse._SubParsersAction) -> None:
    _register_probe(sub)
    _register_ablate(sub)
    _register_curves(sub)


def _world_flags(p: argparse.ArgumentParser) -> None:
    add_model_world_flags(p)
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")


def _register_probe(sub) -> None:
    p = sub.add_parser("probe", help="comparison and negation ratios: fact learned, or only co-occurrence?",
                       description="For every fact of the world, the comparison ratio (log p(true tail) - "
                       "log p(wrong tail) after a fact prompt) and the negation ratio (log p(tail | '... is') - "
                       "log p(tail | '... is not')), over several prompt templates that are not the training "
                       "templates. Writes probes.json and probes.png into --out.")
    p.add_argument("model", help="model spec: a training output folder, an HF folder, an alias, a .gguf file")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder to put on MODEL")
    _world_flags(p)
    p.add_argument("--max-wrong", type=int, default=None, metavar="N",
                   help="compare each fact with a fixed sample of N wrong tails instead of all (faster)")
    p.add_argument("--label", default=None, help="name of this model in the plot (default: the model folder name)")
    p.add_argument("--corpus", default=None, help="training corpus named in the title (default: from the run's config.yaml)")
    p.add_argument("--compare", nargs="+", default=[], metavar="JSON",
                   help="earlier probes.json files to plot next to this model (e.g. the base model)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: analysis/probe-LABEL)")
    p.set_defaults(func=run_probe)


def _register_ablate(sub) -> None:
    p = sub.add_parser("ablate", help="layer-wise ablation: reset the first/last k layers to base, re-evaluate",
                       description="Δ = finetuned - base weights (full finetune) or the adapter (LoRA). For each k "
                       "in the grid, remove Δ from the first k layers (bottom-up) and from the last k layers "
                       "(top-down) and evaluate the tasks; embeddings and final norm/head are separate entries. "
                       "Writes ablation.json and ablation.png into --out.")
    p.add_argument("finetuned", help="the finetuned model folder, or a LoRA adapter folder")
    p.add_argument("--base", default=None, help="the model it was finetuned from (required for a full finetune; "
                   "a LoRA adapter knows its base)")
    p.add_argument("--tasks", default="Eval_QA,Eval_multiple_choice", help="comma-separated eval tasks")
    p.add_argument("--limit", type=int, default=20, help="items per task (a fixed subset; 0 = all)")
    p.add_argument("--num-fewshot", type=int, default=5, help="few-shot examples per prompt")
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--k-step", type=int, default=None, metavar="S", help="evaluate every S-th k (L always included)")
    grid.add_argument("--k-grid", default=None, metavar="K,K,...", help="explicit k values, e.g. 0,2,4,8")
    _world_flags(p)
    p.add_argument("--corpus", default=None, help="training corpus named in the title (default: from config.yaml)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: analysis/ablate-NAME)")
    p.set_defaults(func=run_ablate)


def _register_curves(sub) -> None:
    p = sub.add_parser("curves", help="plot loss vs step (forgetting resets marked) and eval metrics from a train log",
                       description="Reads a run's train_log.jsonl; plots training loss vs step with each forgetting "
                       "reset marked, and eval-in-the-loop metrics (default: MC accuracy when logged) on a second axis.")
    p.add_argument("log", help="a train_log.jsonl, or a training output folder holding one")
    p.add_argument("--metric", action="append", default=None, metavar="TASK/METRIC",
                   help="eval metric to plot, e.g. Eval_multiple_choice/acc or acc (repeatable)")
    p.add_argument("--title", default=None, help="plot title (default: model on corpus, from the run's config.yaml)")
    p.add_argument("--out", default=None, metavar="PNG", help="output image (default: curves.png next to the log)")
    p.set_defaults(func=run_curves)


def _positive(value: int, flag: str) -> None:
    if value < 1:
        raise UserError(f"{flag} must be >= 1, got {value}")


def _load_world(run_cfg: dict, args) -> tuple:
    source, n, seed = world_args(run_cfg, args.data, args.n_countries, args.seed)
    if n < 2:
        raise UserError(f"--n-countries must be >= 2 (wrong tails come from other facts), got {n}")
    return load_cca(None, source=source, n_countries=n, seed=seed), source


def run_probe(args: argparse.Namespace) -> int:
    _positive(args.batch_size, "--batch-size")
    if args.out:
        check_output_path(args.out, folder=True)
    if args.max_wrong is not None:
        _positive(args.max_wrong, "--max-wrong")
    compare = [ProbeResult.load(p) for p in args.compare]  # fail on a bad file before loading the model
    run_cfg = read_saved_config(args.adapter or args.model) if Path(args.adapter or args.model).is_dir() else {}
    world, source = _load_world(run_cfg, args)
    label = args.label or Path(args.adapter or args.model).name
    templates = probe_templates(source)  # a facts file's own (refused when missing); None: the CCA templates
    model, tokenizer = load_model(args.model, adapter=args.adapter, device=args.device)
    result = probe_facts(model, tokenizer, world["Facts"], templates=templates,
                         batch_size=args.batch_size, label=label,
                         model_name=model_label(args.adapter or args.model, run_cfg),
                         corpus=args.corpus or corpus_label(run_cfg), max_wrong=args.max_wrong)
    out = Path(args.out or Path("analysis") / f"probe-{label}")
    result.save_json(out / "probes.json")
    plot_probes([*compare, result], out / "probes.png")
    s = result.summary["all"]
    print(f"{label}: comparison ratio {s['comparison']['mean']:.3f} ± {s['comparison']['std']:.3f}, "
          f"negation ratio {s['negation']['mean']:.3f} ± {s['negation']['std']:.3f} over {s['comparison']['n']} facts")
    print(f"wrote {out / 'probes.json'} and {out / 'probes.png'}")
    return 0


def _parse_k_grid(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise UserError(f"--k-grid '{text}' must be comma-separated integers, e.g. 0,2,4,8") from None


def run_ablate(args: argparse.Namespace) -> int:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if not tasks or unknown:
        raise UserError(f"unknown task(s) {unknown or '(none given)'}; choose from: {', '.join(TASKS)}")
    if args.limit < 0:
        raise UserError(f"--limit must be >= 0 (0 = all items), got {args.limit}")
    _positive(args.batch_size, "--batch-size")
    ks = _parse_k_grid(args.k_grid)
    if args.out:
        check_output_path(args.out, folder=True)
    finetuned = Path(args.finetuned)
    is_adapter = (finetuned / "adapter_config.json").is_file()
    if not is_adapter and not args.base:
        raise UserError(f"{finetuned} is a full model; pass --base with the model it was finetuned from")
    run_cfg = read_saved_config(finetuned) if finetuned.is_dir() else {}
    world, _ = _load_world(run_cfg, args)
    if is_adapter:
        model, tokenizer = load_model(args.base, adapter=str(finetuned), device=args.device) if args.base \
            else load_model(str(finetuned), device=args.device)
        switch = delta_switch(model)
    else:
        model, tokenizer = load_model(str(finetuned), device=args.device)
        base_model, _ = load_model(args.base, device=args.device)
        switch = delta_switch(model, base_model)
        del base_model  # the switch kept copies of the changed tensors only
    grid = k_grid(switch.num_layers, args.k_step, ks)
    name = finetuned.name
    result = run_ablation(model, tokenizer, switch, data=world, tasks=tasks, limit=args.limit or None, ks=grid,
                          num_fewshot=args.num_fewshot, batch_size=args.batch_size,
                          model_name=model_label(str(finetuned), run_cfg), base_name=str(args.base or run_cfg.get("model", "base")),
                          corpus=args.corpus or corpus_label(run_cfg, default="unknown corpus"),
                          progress=lambda msg: print(msg, flush=True))
    out = Path(args.out or Path("analysis") / f"ablate-{name}")
    result.save_json(out / "ablation.json")
    plot_ablation(result, out / "ablation.png")
    print(f"wrote {out / 'ablation.json'} and {out / 'ablation.png'}")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    path = Path(args.log)
    if path.is_dir():
        path = path / "train_log.jsonl"
    log = read_train_log(path)
    out = Path(args.out) if args.out else path.parent / "curves.png"
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} must be a .png file")
    check_output_path(out)
    plot_training_curves(log, out, metrics=args.metric, title=args.title)
    print(f"wrote {out} ({len(log.steps)} steps, {len(log.resets)} reset(s), {len(log.evals)} eval point(s))")
    return 0

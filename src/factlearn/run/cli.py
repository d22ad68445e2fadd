"""`factlearn run`: the experiment grid, end to end (plan, run the unfinished cells, write the report).

Report is a later stage than run, so this module does not import it: the top-level CLI (factlearn/cli.py)
gives the command its report writer and summary printer (`args.write_report`, `args.print_summary`).
Light at import: the grid, torch and transformers load inside the command function.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the paper's experiment grid end to end: train, evaluate, probe, ablate, report",
        description="Generate a world, train on Narrative and Referencing text (and Narrative with active "
        "forgetting), evaluate the capability control, base and trained models on the seven 5-shot tasks and "
        "the two cloze forms, run the probes and the "
        "layer-wise ablation, and write results.json, table.md/.csv, plots and report.html into the run "
        "folder. Finished cells are reused on a rerun; a changed setting recomputes only what it affects. "
        "Profiles: default (CPU-sized, <= 15 min on 2 cores), cpu-full (44 countries, the power to conclude, "
        "about 1 h 20 min), paper (20 countries, original recipe, 3 seeds).")
    p.add_argument("profile", nargs="?", default="default",
                   help="run profile name (default, cpu-full, paper) or a run config .yaml (default: default)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. seeds=[1,2,3] 'models=[smollm2-135m]' methods=[full,lora] "
                        "eval_limit=20 analyses=[probe] recipes.full.overrides=[epochs=5]; cells at once: "
                        "workers=N (processes sharing the CPU), devices=[0,1] or devices=all (one cell per GPU); a "
                        "training cell sharded over every GPU: train_sharding=fsdp2 (on CPU add train_processes=N)")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default: the config's `out`, else runs/<profile>)")
    p.add_argument("--plan", nargs="*", default=None, metavar="key=value",
                   help="print every cell with its predicted time and peak memory per device and whether it fits, "
                        "then stop: nothing is computed or written, and a model folder needs only its config.json. "
                        "Cost another machine with hardware.gpus=8 hardware.gpu_memory_gb=80 "
                        "hardware.sharding=fsdp2 (and hardware.tflops=<effective TFLOP/s per GPU>); overrides may "
                        "follow --plan")
    p.set_defaults(func=run_command)


def _profile_and_overrides(args) -> tuple[str, list[str]]:
    """`factlearn run seeds=[1,2]` puts the override in the profile slot; move it back."""
    profile, overrides = args.profile, list(args.overrides) + list(args.plan or [])
    if "=" in profile:
        overrides.insert(0, profile)
        profile = "default"
    return profile, overrides


def run_command(args) -> int:
    from rich.console import Console

    from factlearn.atomic import check_output_path
    from factlearn.run.config import load_run_config
    from factlearn.run.plan import plan_grid
    from factlearn.run.runner import execute_plan

    profile, overrides = _profile_and_overrides(args)
    cfg = load_run_config(profile, overrides)
    name = Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile
    run_dir = Path(args.out or cfg.out or Path("runs") / name)
    check_output_path(run_dir, folder=True)
    if args.plan is not None:
        from factlearn.run.preview import render
        from factlearn.run.workers import place_cells

        plan = plan_grid(cfg, config_only=True)
        if cfg.executor == "slurm":  # each cell's job request is in the table; a short time limit warns
            from factlearn.run.slurm import time_warnings

            for line in time_warnings(plan.cells, cfg):
                print(line, file=sys.stderr)
        else:
            place_cells(cfg, len(plan.cells))  # the same checks of workers/devices as a run
        print(render(plan, name, run_dir))
        return 0
    console = Console(file=sys.stderr)
    console.print(f"factlearn run: planning {name} grid in {run_dir}", highlight=False)
    plan = plan_grid(cfg)  # read-only: a bad model or config fails here, before the folder is touched
    outcome = execute_plan(plan, run_dir, console=console, profile=name, write_report=args.write_report)
    args.print_summary(run_dir, outcome.seconds, len(outcome.executed), len(outcome.reused))
    return 0

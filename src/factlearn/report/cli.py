"""`factlearn run` (the experiment grid, end to end) and `factlearn report` (rebuild the report).

Light at import: the grid, torch and transformers load inside the command functions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="the paper's experiment grid end to end: train, evaluate, probe, ablate, report",
        description="Generate a world, train on Narrative and Referencing text (and Narrative with active "
        "forgetting), evaluate base and trained models on the seven 5-shot tasks, run the probes and the "
        "layer-wise ablation, and write results.json, table.md/.csv, plots and report.html into the run "
        "folder. Finished cells are reused on a rerun; a changed setting recomputes only what it affects. "
        "Profiles: default (CPU-sized, <= 15 min on 2 cores), paper (20 countries, original recipe, 3 seeds).")
    p.add_argument("profile", nargs="?", default="default",
                   help="run profile name (default, paper) or a run config .yaml (default: default)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. seeds=[1,2,3] 'models=[smollm2-135m]' methods=[full,lora] "
                        "eval_limit=20 analyses=[probe] recipes.full.overrides=[epochs=5]")
    p.add_argument("--out", default=None, metavar="DIR", help="run folder (default: the config's `out`, else runs/<profile>)")
    p.set_defaults(func=run_command)

    r = sub.add_parser("report", help="rebuild results.json, tables, plots and report.html of a run folder",
                       description="Rebuild the report files of an existing run folder from its finished cells, "
                       "without computing anything. Unfinished cells are listed as missing.")
    r.add_argument("run_dir", help="a folder written by `factlearn run`")
    r.set_defaults(func=report_command)


def _profile_and_overrides(args) -> tuple[str, list[str]]:
    """`factlearn run seeds=[1,2]` puts the override in the profile slot; move it back."""
    profile, overrides = args.profile, list(args.overrides)
    if "=" in profile:
        overrides.insert(0, profile)
        profile = "default"
    return profile, overrides


def run_command(args) -> int:
    from rich.console import Console

    from factlearn.atomic import check_output_path
    from factlearn.report.config import load_run_config
    from factlearn.report.runner import run_grid

    profile, overrides = _profile_and_overrides(args)
    cfg = load_run_config(profile, overrides)
    name = Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile
    run_dir = Path(args.out or cfg.out or Path("runs") / name)
    check_output_path(run_dir, folder=True)
    console = Console(file=sys.stderr)
    outcome = run_grid(cfg, run_dir, console=console, profile=name)
    print_summary(run_dir, outcome.seconds, len(outcome.executed), len(outcome.reused))
    return 0


def report_command(args) -> int:
    from factlearn.report.build import build_report

    run_dir = Path(args.run_dir)
    results = build_report(run_dir)
    print_summary(run_dir, None, None, None, results=results)
    return 0


def print_summary(run_dir: Path, seconds: float | None, executed: int | None, reused: int | None,
                  results: dict | None = None) -> None:
    """The table on stdout, then where the files are."""
    import json

    from rich.console import Console

    from factlearn.report.progress import format_seconds
    from factlearn.report.tables import to_markdown, to_rich

    results = results or json.loads((run_dir / "results.json").read_text())
    console = Console()
    if console.is_terminal:
        console.print(to_rich(results["table"]["rows"], results["table"]["tasks"],
                              title=f"{results['run_config']['num_fewshot']}-shot results ({run_dir})"))
    else:  # piped or logged: the markdown table, unwrapped and easy to grep
        console.print(to_markdown(results["table"]["rows"], results["table"]["tasks"],
                                  results["run_config"]["num_fewshot"]), highlight=False, markup=False,
                      soft_wrap=True)
    if results["missing_cells"]:
        console.print(f"{len(results['missing_cells'])} cell(s) not finished; rerun `factlearn run` to complete them.")
    if seconds is not None:
        console.print(f"done in {format_seconds(seconds)}: {executed} cell(s) computed, {reused} reused", highlight=False)
    console.print(f"report: {run_dir / 'report.html'}  table: {run_dir / 'table.md'}  "
                  f"results: {run_dir / 'results.json'}", highlight=False)

"""`factlearn run`'s driver: execute a GridPlan's unfinished cells in a run folder, then hand the folder
to the report writer it is given (report is a later stage: factlearn/cli.py passes report.build_report).

Cells run one after another in this process, or with `workers`/`devices` on worker processes
(run/workers.py); either way only this process writes the files below, except each cell's own folder.

The run folder:
  run_config.yaml   the resolved RunConfig       plan.json     every cell: key, kind, labels, deps
  data/             the world's rows (JSONL)      cells/<key>/  finished cells (done.json written last)
  results.json, table.md, table.csv, plots/*.png, report.html   (rebuilt by `factlearn report`)
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console

from factlearn.atomic import atomic_write_json
from factlearn.config import save_config, to_dict
from factlearn.errors import UserError
from factlearn.run.cells import CellStore
from factlearn.run.grid import GridPlan
from factlearn.run.world import save_run_world
from factlearn.run.progress import RunProgress

PLAN_FILE = "plan.json"
INVOCATION_FILE = "last_invocation.json"


@dataclass
class RunOutcome:
    """What one invocation did: which cells it computed and which it found finished."""

    run_dir: Path
    executed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0


def write_plan(plan: GridPlan, run_dir: Path) -> Path:
    """plan.json: the cells of this config, so `factlearn report` can rebuild without re-planning."""
    return atomic_write_json(run_dir / PLAN_FILE, {
        "run_config": to_dict(plan.cfg),
        "world": plan.world.spec,
        "models": {spec: {"path": m.path, "display": m.display, "num_layers": m.size.num_layers,
                          "params": m.size.params, "identity": m.identity} for spec, m in plan.models.items()},
        "cells": [{"key": c.key, "kind": c.kind, "title": c.title, "labels": c.labels, "deps": list(c.deps),
                   "est_seconds": c.est_seconds, "est_memory": c.est_memory} for c in plan.cells],
    })


def check_runs_here(cfg) -> None:
    """`hardware.*` costs a grid for another machine (--plan); a run always uses this one."""
    from factlearn.run.config import HardwareOptions

    if cfg.hardware != HardwareOptions():
        raise UserError("hardware.* describes the machine that `factlearn run --plan` costs the grid for; a run "
                        "uses this machine: drop hardware.* (choose GPUs with devices=[...], processes with "
                        "workers=N)")


def execute_plan(plan: GridPlan, run_dir: str | Path, console: Console | None = None,
                 profile: str | None = None, write_report: Callable[[Path], object] | None = None) -> RunOutcome:
    """Run every unfinished cell of `plan` (from run.plan.plan_grid) in `run_dir`, then `write_report(run_dir)`
    (still under the run folder's lock) when given.

    With `workers`/`devices` in the run config the cells run in worker processes (run/workers.py);
    otherwise one after another in this process. Either way only this process writes the run's files."""
    from factlearn.run.execute import CellExecutor
    from factlearn.run.sharded import check_batches_split
    from factlearn.run.workers import place_cells

    # A fixed file, not "whatever sys.stderr is": training redirects sys.stderr while it runs.
    console = console or Console(file=sys.stderr)
    run_dir = Path(run_dir)
    check_runs_here(plan.cfg)
    on_slurm = plan.cfg.executor == "slurm"  # run/slurm.py: each cell a Slurm job; workers/devices unused
    # bad workers/devices fail here, before anything is written
    placement = None if on_slurm else place_cells(plan.cfg, len(plan.cells))
    slots = placement.slots if placement is not None else []
    if placement is not None and placement.train_processes:
        check_batches_split(plan.train_cfgs.values(), placement.train_processes)
    started = time.time()
    outcome = RunOutcome(run_dir=run_dir)
    store = CellStore(run_dir)
    # the sequential loop runs only when no GPU is chosen (a chosen GPU always has a worker slot)
    executor = None if slots or on_slurm else CellExecutor(plan, store, train_processes=placement.train_processes)
    live: dict[str, tuple[int, int]] = {}  # workers' running train cells: (steps done, total)

    def live_of(cell) -> tuple[int, int] | None:
        return executor.live_fraction() if executor is not None else live.get(cell.key)

    with store.lock():
        store.remove_stale_temps()
        save_config(plan.cfg, run_dir / "run_config.yaml")
        save_run_world(plan.world, run_dir)
        write_plan(plan, run_dir)
        with RunProgress(plan.cells, console=console, live=live_of, workers=len(slots) or 1) as progress:
            if on_slurm:
                from factlearn.run.slurm import run_plan_on_slurm

                run_plan_on_slurm(plan, store, progress, outcome)
            elif executor is not None:
                _run_here(plan, store, executor, progress, outcome)
            else:
                _run_in_workers(plan, store, slots, progress, outcome, live)
            outcome.seconds = time.time() - started
            atomic_write_json(run_dir / INVOCATION_FILE, {
                "started": started, "wall_seconds": outcome.seconds, "profile": profile,
                "executed": outcome.executed, "reused": outcome.reused})
            if write_report is not None:
                progress.stage("writing report")
                write_report(run_dir)
    return outcome


def _run_here(plan: GridPlan, store: CellStore, executor, progress: RunProgress, outcome: RunOutcome) -> None:
    """The sequential loop: each unfinished cell in plan order, in this process."""
    executor.log = lambda text: progress.stage(text)
    for cell in plan.cells:
        if store.is_done(cell.key):
            outcome.reused.append(cell.key)
            progress.finish(cell, None)
            continue
        progress.start(cell)
        t0 = time.time()
        store.execute(cell, lambda folder, c=cell: executor.run(c, folder))
        outcome.executed.append(cell.key)
        progress.finish(cell, time.time() - t0)
    executor.close()


def _run_in_workers(plan: GridPlan, store: CellStore, slots, progress: RunProgress, outcome: RunOutcome,
                    live: dict) -> None:
    """The unfinished cells on worker processes, each as soon as its upstream cells are finished."""
    from factlearn.run.workers import plan_payload, run_parallel

    progress.console.print(f"running cells on {len(slots)} workers: " + ", ".join(s.name for s in slots),
                           highlight=False)
    done = set()
    for cell in plan.cells:
        if store.is_done(cell.key):
            done.add(cell.key)
            outcome.reused.append(cell.key)
            progress.finish(cell, None)

    def finish(cell, seconds: float) -> None:
        live.pop(cell.key, None)
        outcome.executed.append(cell.key)
        progress.finish(cell, seconds)

    sharded = any(s.train_processes for s in slots)
    run_parallel([c for c in plan.cells if c.key not in done], plan_payload(plan), store, slots, done=done,
                 on_start=progress.start, on_finish=finish, on_log=progress.stage,
                 on_progress=lambda cell, steps, total: live.__setitem__(cell.key, (steps, total)),
                 exclusive=lambda cell: sharded and cell.kind == "train")

"""`factlearn run`'s driver: execute a GridPlan's unfinished cells in a run folder, then write the report.

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

from rich.console import Console

from factlearn.atomic import atomic_write_json
from factlearn.config import save_config, to_dict
from factlearn.run.cells import CellStore
from factlearn.run.plan import GridPlan, save_run_world
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
                   "est_seconds": c.est_seconds} for c in plan.cells],
    })


def execute_plan(plan: GridPlan, run_dir: str | Path, console: Console | None = None,
                 profile: str | None = None) -> RunOutcome:
    """Run every unfinished cell of `plan` (from run.plan.plan_grid) in `run_dir`, then (re)write the report."""
    from factlearn.report.build import build_report
    from factlearn.run.execute import CellExecutor

    # A fixed file, not "whatever sys.stderr is": training redirects sys.stderr while it runs.
    console = console or Console(file=sys.stderr)
    run_dir = Path(run_dir)
    started = time.time()
    outcome = RunOutcome(run_dir=run_dir)
    store = CellStore(run_dir)
    with store.lock():
        store.remove_stale_temps()
        save_config(plan.cfg, run_dir / "run_config.yaml")
        save_run_world(plan.world, run_dir)
        write_plan(plan, run_dir)
        executor = CellExecutor(plan, store)
        with RunProgress(plan.cells, console=console, live=executor.live_fraction) as progress:
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
            progress.stage("writing report")
            outcome.seconds = time.time() - started
            atomic_write_json(run_dir / INVOCATION_FILE, {
                "started": started, "wall_seconds": outcome.seconds, "profile": profile,
                "executed": outcome.executed, "reused": outcome.reused})
            build_report(run_dir)
    return outcome

"""`factlearn run ... executor=slurm`: every unfinished cell of the grid as a Slurm job, through submitit.

The grid's dependencies become job dependencies (`--dependency=afterok:...`), so the scheduler starts a
cell only after the cells it reads from finished; cells with the same upstream jobs and resources go in
one job array (`slurm.array_parallelism` caps how many of its tasks run at once). Each job runs
`run_cell`, which computes its cell through the same CellStore as a local run: the folder is built under
a temporary name, the done marker is written last, then it is renamed into place. So the run folder on
the shared file system stays the one source of truth: a rerun skips finished cells, and a cancelled,
preempted or failed job leaves no finished cell, only a dot-named temporary that the next run deletes.

A sharded training cell (`train_sharding=fsdp2`) is one multi-task job: `slurm.nodes` x
`slurm.tasks_per_node` tasks, each an FSDP2 rank whose torch.distributed environment comes from Slurm
(submitit.helpers.TorchDistributedEnvironment). Rank 0 commits the cell.

The parent only submits, watches `squeue` and prints progress: it needs no GPU and no sacct (clusters
without accounting storage report ended jobs only through squeue, for MinJobAge seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from factlearn.errors import UserError
from factlearn.run.cells import Cell, CellStore
from factlearn.run.slurm_options import sharded_ranks, time_minutes

SLURM_DIR = "slurm"  # in the run folder: submitit's job files and logs, the pickled plan, the job list
PLAN_PICKLE = "plan.pkl"
JOBS_FILE = "jobs.json"
STAGING_DIR = "staging"  # sharded training: the ranks' shared output, moved into the cell by rank 0
ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED")


def is_sharded(cell: Cell, cfg) -> bool:
    return cell.kind == "train" and cfg.train_sharding != "none"


def cell_resources(cell: Cell, cfg) -> dict:
    """What the job of `cell` asks for: nodes, tasks per node, cpus, memory, GPUs, time (None: cluster default)."""
    s = cfg.slurm
    sharded = is_sharded(cell, cfg)
    return {"nodes": s.nodes if sharded else 1,
            "tasks_per_node": sharded_ranks(cfg) // s.nodes if sharded else 1,
            "cpus_per_task": s.cpus_per_task, "mem": s.mem, "gpus_per_node": s.gpus_per_node,
            "time": job_minutes(cell, cfg)}


def job_minutes(cell: Cell, cfg) -> int:
    """The job's time limit in whole minutes: slurm.time, else twice the cell's estimate (at least 10 minutes,
    since start-up on a busy node is not in the estimate)."""
    limit = time_minutes(cfg.slurm.time)
    if limit is not None:
        return max(1, int(round(limit)))
    return max(10, int(2 * cell.est_seconds / 60) + 1)


def describe_resources(cell: Cell, cfg) -> str:
    """One cell's request as --plan prints it, e.g. `1x1 task, 2 cpus, 16G, 1 gpu, 1:00:00`."""
    r = cell_resources(cell, cfg)
    parts = [f"{r['nodes']}x{r['tasks_per_node']} task" + ("s" if r["nodes"] * r["tasks_per_node"] > 1 else "")]
    if r["cpus_per_task"]:
        parts.append(f"{r['cpus_per_task']} cpu" + ("s" if r["cpus_per_task"] > 1 else ""))
    if r["mem"]:
        parts.append(str(r["mem"]))
    if r["gpus_per_node"]:
        parts.append(f"{r['gpus_per_node']} gpu/node")
    parts.append(f"{r['time']} min")
    return ", ".join(parts)


def time_warnings(cells: list[Cell], cfg) -> list[str]:
    """One line per cell whose predicted time is over slurm.time: Slurm would kill its job (warn, not refuse:
    the estimate is for this machine, not the cluster's)."""
    limit = time_minutes(cfg.slurm.time)
    if limit is None:
        return []
    from factlearn.run.progress import format_seconds

    long = [c for c in cells if c.est_seconds > limit * 60]
    if not long:
        return []
    worst = max(long, key=lambda c: c.est_seconds)
    return [f"factlearn run: warning: slurm.time={cfg.slurm.time} is shorter than the --plan estimate of "
            f"{len(long)} cell(s) (longest: {worst.title}, {format_seconds(worst.est_seconds)}); Slurm stops a job "
            "at its limit and the cell is recomputed on rerun: raise slurm.time"]


# -- inside a job ------------------------------------------------------------------------------------

def run_cell(plan_file: str, run_dir: str, key: str) -> str:
    """The job's work: compute cell `key` of the pickled plan into the run folder, unless it is done.

    Returns "done" or "reused". Runs in every task of the job; only a sharded cell has more than one."""
    import pickle

    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    import torch

    if cpus:
        torch.set_num_threads(int(cpus))
    plan = pickle.loads(Path(plan_file).read_bytes())
    cell = next(c for c in plan.cells if c.key == key)
    store = CellStore(run_dir)
    if store.is_done(key):
        return "reused"
    if is_sharded(cell, plan.cfg):
        return _run_sharded_rank(plan, store, cell)
    from factlearn.run.execute import CellExecutor

    executor = CellExecutor(plan, store)
    store.execute(cell, lambda folder: executor.run(cell, folder))
    executor.close()
    return "done"


def _run_sharded_rank(plan, store: CellStore, cell: Cell) -> str:
    """One FSDP2 rank of a sharded training cell: all ranks train into a staging folder named by the job
    (so every rank knows it and a rerun never meets a half-written one); rank 0 then commits the cell."""
    import copy

    import submitit

    from factlearn.config import to_dict
    from factlearn.run.execute import CURVE_LOG, TRAINED_SUBDIR, write_curve_log
    from factlearn.run.training import with_first_pass
    from factlearn.run.sharded import check_batches_split
    from factlearn.train.trainer import train

    dist = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=bool(plan.cfg.slurm.gpus_per_node))
    job = submitit.JobEnvironment()
    staging = store.run_dir / SLURM_DIR / STAGING_DIR / f"{cell.key}-{job.job_id}"
    first_pass = store.path(cell.spec["first_pass"]) / TRAINED_SUBDIR if "first_pass" in cell.spec else None
    cfg = with_first_pass(plan.train_cfgs[cell.key], save=str(staging / TRAINED_SUBDIR),
                          first_pass=None if first_pass is None else str(first_pass))
    cfg = copy.deepcopy(cfg)
    cfg.sharding = "fsdp2"
    check_batches_split([cfg], dist.world_size)
    cfg.batch_size //= dist.world_size  # the ranks split the recipe's batch: the optimizer sees the same batches
    out = Path(train(cfg))
    if dist.rank != 0:
        return "done"

    def commit(folder: Path) -> dict:
        shutil.move(str(out), str(folder / TRAINED_SUBDIR))
        model = folder / TRAINED_SUBDIR
        write_curve_log(model / "train_log.jsonl", folder / CURVE_LOG,
                        first_pass / "train_log.jsonl" if first_pass is not None else None)
        summary_file = model / "train_summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        return {"summary": summary, "config": to_dict(with_first_pass(
            plan.train_cfgs[cell.key], save=str(store.path(cell.key) / TRAINED_SUBDIR),
            first_pass=None if first_pass is None else str(first_pass)))}

    store.execute(cell, commit)
    shutil.rmtree(staging, ignore_errors=True)
    return "done"


# -- the parent: submit, watch, report ---------------------------------------------------------------

@dataclass
class _Job:
    cell: Cell
    job: object  # submitit.Job
    state: str = "PENDING"
    started: float | None = None


class SlurmCellFailed(RuntimeError):
    """A cell's job ended without finishing its cell; the message names the job, its state and its log."""


def _squeue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """job id -> (state, reason) of the jobs Slurm still knows (ended ones for MinJobAge seconds)."""
    if not job_ids:
        return {}
    base = sorted({j.split("_")[0] for j in job_ids})
    done = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(base)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:  # a job list squeue no longer knows at all; ask job by job
        states = {}
        for b in base:
            one = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", b],
                                 capture_output=True, text=True, timeout=60)
            states.update(_parse_squeue(one.stdout))
        return states
    return _parse_squeue(done.stdout)


def _parse_squeue(text: str) -> dict[str, tuple[str, str]]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[parts[0]] = (parts[1], parts[2])
    return states


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)


def _executor(folder: Path, cfg):
    import submitit

    s = cfg.slurm
    executor = submitit.SlurmExecutor(folder=str(folder / "logs" / "%j"), max_num_timeout=0)
    params = {"setup": list(s.setup), "array_parallelism": s.array_parallelism or 256}
    for key in ("partition", "account", "qos", "cpus_per_task", "mem", "gpus_per_node"):
        if getattr(s, key) is not None:
            params[key] = getattr(s, key)
    executor.update_parameters(**params)
    return executor


def _submit(executor, plan_file: Path, run_dir: Path, cells: list[Cell], cfg, after: list[str]) -> list:
    """Submit `cells` (same upstream jobs, same resources) as one job, or one job array."""
    r = cell_resources(cells[0], cfg)
    executor.update_parameters(nodes=r["nodes"], ntasks_per_node=r["tasks_per_node"], time=r["time"],
                               dependency=("afterok:" + ":".join(after)) if after else None,
                               job_name=f"factlearn-{cells[0].kind}")
    if len(cells) == 1:
        return [executor.submit(run_cell, str(plan_file), str(run_dir), cells[0].key)]
    with executor.batch():
        jobs = [executor.submit(run_cell, str(plan_file), str(run_dir), c.key) for c in cells]
    return jobs


def cancel_leftovers(run_dir: Path) -> list[str]:
    """Cancel jobs an earlier, killed invocation left queued or running: their cells are resubmitted now,
    and two jobs computing one cell would only waste the cluster."""
    path = run_dir / SLURM_DIR / JOBS_FILE
    if not path.is_file():
        return []
    ids = list(json.loads(path.read_text()).get("jobs", {}))
    alive = [j for j, (state, _) in _squeue(ids).items() if state not in ENDED]
    scancel(alive)
    return alive


def run_on_slurm(plan, store: CellStore, todo: list[Cell], done: set[str], *, on_start: Callable[[Cell], None],
                 on_finish: Callable[[Cell, float], None], on_log: Callable[[str], None],
                 poll_seconds: float = 1.0) -> None:
    """Submit every cell of `todo` (plan order, none finished) as a Slurm job and wait until all finished.

    A job that ends without its cell's done marker (failed, cancelled, preempted, out of time) stops the
    run: the other jobs are cancelled (their dependents could never start) and SlurmCellFailed names
    the job and its log. Ctrl-C cancels the run's jobs too."""
    import pickle

    from factlearn.atomic import atomic_write_bytes, atomic_write_json

    if shutil.which("sbatch") is None:
        raise UserError("executor=slurm needs the Slurm commands (sbatch, squeue) on PATH; run on a login node "
                        "of your cluster, or use executor=local")
    run_dir = store.run_dir
    folder = run_dir / SLURM_DIR
    cancelled = cancel_leftovers(run_dir)
    if cancelled:
        on_log(f"cancelled {len(cancelled)} job(s) of an earlier invocation: {', '.join(cancelled)}")
    shutil.rmtree(folder / STAGING_DIR, ignore_errors=True)  # half-trained sharded cells of killed jobs
    plan_file = atomic_write_bytes(folder / PLAN_PICKLE, pickle.dumps(plan))
    executor = _executor(folder, plan.cfg)
    job_of: dict[str, str] = {}
    jobs: list[_Job] = []
    remaining = list(todo)
    try:
        while remaining:  # submit level by level: a job's dependencies need their job ids
            ready = [c for c in remaining if all(d in done or d in job_of for d in c.deps)]
            if not ready:
                raise RuntimeError(f"cells {[c.key for c in remaining]} wait on cells that are not in the plan")
            groups: dict[tuple, list[Cell]] = {}
            for cell in ready:
                after = tuple(sorted({job_of[d] for d in cell.deps if d in job_of}))
                resources = tuple(sorted(cell_resources(cell, plan.cfg).items(), key=lambda kv: kv[0]))
                groups.setdefault((after, resources), []).append(cell)
            for (after, _), cells in groups.items():
                for cell, job in zip(cells, _submit(executor, plan_file, run_dir, cells, plan.cfg, list(after))):
                    job_of[cell.key] = job.job_id
                    jobs.append(_Job(cell, job))
            remaining = [c for c in remaining if c not in ready]
        atomic_write_json(folder / JOBS_FILE, {"jobs": {j.job.job_id: j.cell.key for j in jobs}})
        on_log(f"submitted {len(jobs)} Slurm job(s): {jobs[0].job.job_id}..{jobs[-1].job.job_id}" if jobs
               else "nothing to submit")
        _wait(jobs, store, plan.cfg, on_start, on_finish, poll_seconds)
    except BaseException:
        scancel([j.job.job_id for j in jobs if j.state not in ENDED])
        raise


def _wait(jobs: list[_Job], store: CellStore, plan_cfg, on_start, on_finish, poll_seconds: float) -> None:
    open_jobs = list(jobs)
    while open_jobs:
        time.sleep(poll_seconds)
        states = _squeue([j.job.job_id for j in open_jobs])
        for j in list(open_jobs):
            state, reason = states.get(j.job.job_id, ("ENDED", ""))
            if state == "RUNNING" and j.started is None:
                j.started = time.time()
                on_start(j.cell)
            if state == "PENDING" and reason == "DependencyNeverSatisfied":
                state = "CANCELLED"
            j.state = state
            if state not in ENDED and state != "ENDED":
                continue
            open_jobs.remove(j)
            if store.is_done(j.cell.key):
                if j.started is None:
                    on_start(j.cell)
                # a sharded cell's done marker times only rank 0's commit: its job's run time stands for it
                seconds = store.info(j.cell.key).get("seconds", 0.0)
                if j.started is not None and is_sharded(j.cell, plan_cfg):
                    seconds = time.time() - j.started
                on_finish(j.cell, seconds)
                continue
            raise SlurmCellFailed(_failure(j, state))


def _failure(j: _Job, state: str) -> str:
    """Why a job's cell is not finished: its state and the last lines of its log."""
    paths = j.job.paths
    tail = ""
    for log in (paths.stderr, paths.stdout):
        if log.is_file():
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("factlearn: error: ")]
            tail = errors[-1] if errors else "\n".join(lines[-15:])
            if tail:
                break
    how = {"ENDED": "ended"}.get(state, state.lower())
    return (f"{j.cell.title} [{j.cell.key}]: Slurm job {j.job.job_id} {how} without finishing its cell (log: "
            f"{paths.stderr}); rerun the same command to resubmit the unfinished cells" + (f"\n{tail}" if tail else ""))


def run_plan_on_slurm(plan, store: CellStore, progress, outcome) -> None:
    """The runner's Slurm path (as _run_in_workers is its worker path): reuse finished cells, submit the rest."""
    for line in time_warnings(plan.cells, plan.cfg):
        progress.console.print(line, highlight=False)
    done = set()
    for cell in plan.cells:
        if store.is_done(cell.key):
            done.add(cell.key)
            outcome.reused.append(cell.key)
            progress.finish(cell, None)

    def finish(cell: Cell, seconds: float) -> None:
        outcome.executed.append(cell.key)
        progress.finish(cell, seconds)

    run_on_slurm(plan, store, [c for c in plan.cells if c.key not in done], done, on_start=progress.start,
                 on_finish=finish, on_log=lambda text: progress.console.print(f"slurm: {text}", highlight=False))

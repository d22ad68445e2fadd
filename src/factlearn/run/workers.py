"""Running a plan's cells at once: worker processes (one per GPU, or N sharing the CPU) and the parent's
scheduler, which hands each idle worker the next cell whose upstream cells have all finished.

Why processes: a cell loads a model and runs torch; threads would share one interpreter and one torch
thread pool. Each worker is spawned (not forked: the parent may have started torch or CUDA), pinned to
its GPU before torch starts (CUDA_VISIBLE_DEVICES), and given `cores // workers` torch threads, so
workers do not fight over cores. The parent alone writes the run's own files (plan.json, the report)
and prints progress; a worker writes only the cell folders it computes, through CellStore (built under
a temporary name, done marker last). Workers die with the parent (PR_SET_PDEATHSIG on Linux), so a
SIGKILL of `factlearn run` leaves finished cells or none, exactly as the sequential loop does.
"""

from __future__ import annotations

import os
import pickle
import queue
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from factlearn.errors import MachineFailure, UserError
from factlearn.processes import cpu_cores, die_with_parent
from factlearn.run.cells import Cell, CellStore
from factlearn.run.config import RunConfig


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process: its number, the GPU it owns (None on CPU) and its torch thread count."""

    index: int
    gpu: str | None  # the CUDA_VISIBLE_DEVICES entry of its GPU
    threads: int
    all_gpus: tuple[str, ...] = ()  # every GPU of the run: a sharded training cell takes them all
    train_processes: int = 0  # processes of a sharded training cell (0 = unsharded; Placement.train_processes)

    @property
    def name(self) -> str:
        return f"worker {self.index}" + (f" (GPU {self.gpu})" if self.gpu is not None else "")


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES entries of the GPUs this process sees (index i of the list = cuda:i)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = [d.strip() for d in listed.split(",") if d.strip()] if listed else [str(i) for i in range(count)]
    return names[:count]


def worker_count(cfg: RunConfig) -> int:
    """How many cells run at once (unchecked: place_cells checks the choice)."""
    if cfg.workers is not None:
        return cfg.workers
    if cfg.devices == "all":
        return max(len(visible_gpus()), 1)
    return len(cfg.devices) if cfg.devices else 1


def chosen_gpus(cfg: RunConfig) -> list[str]:
    """CUDA_VISIBLE_DEVICES entries of the GPUs `devices` chooses ([] = none chosen); a missing GPU is a UserError."""
    if cfg.devices is None:
        return []
    visible = visible_gpus()
    if cfg.devices == "all":
        if not visible:
            raise UserError("devices=all but no CUDA GPU is visible; drop devices (workers=N runs cells in "
                            "parallel on the CPU)")
        return visible
    missing = [d for d in cfg.devices if d >= len(visible)]
    if missing and not visible:
        raise UserError(f"devices {missing} do not exist: this machine has no CUDA GPU; drop devices "
                        "(workers=N runs cells in parallel on the CPU)")
    if missing:
        raise UserError(f"devices {missing} do not exist: this machine has GPUs 0..{len(visible) - 1}; "
                        "choose from those, or devices=all")
    return [visible[d] for d in cfg.devices]


def sharded_train_processes(cfg: RunConfig, gpus: list[str]) -> int:
    """Processes of a sharded training cell (0 = cells train in their own process); checked against the GPUs."""
    if cfg.train_sharding == "none":
        return 0
    processes = cfg.train_processes if cfg.train_processes is not None else len(gpus)
    if gpus and processes > len(gpus):
        raise UserError(f"train_processes={processes} is more than the {len(gpus)} GPUs chosen with devices; "
                        "drop train_processes (one process per GPU) or choose more devices")
    if processes < 2:
        raise UserError(f"train_sharding=fsdp2 shards over at least 2 processes but devices chooses {len(gpus)} "
                        "GPU; choose more devices, or drop train_sharding")
    return processes


@dataclass(frozen=True)
class Placement:
    """Where a run's cells compute, decided once: the worker processes ([] = the sequential loop in this
    process), the GPUs chosen with `devices`, and the processes of a sharded training cell (0 = unsharded)."""

    slots: list[WorkerSlot]
    gpus: list[str]
    train_processes: int


def place_cells(cfg: RunConfig, n_cells: int) -> Placement:
    """The run's Placement. Bad choices (a GPU that is not there, more workers than cells) are UserErrors,
    raised before anything is written."""
    gpus = chosen_gpus(cfg)
    processes = sharded_train_processes(cfg, gpus)
    return Placement(_worker_slots(cfg, n_cells, gpus, processes), gpus, processes)


def _worker_slots(cfg: RunConfig, n_cells: int, gpus: list[str], train_processes: int) -> list[WorkerSlot]:
    """The worker processes a run uses; [] means the sequential loop in this process."""
    workers = cfg.workers if cfg.workers is not None else max(len(gpus), 1)
    if gpus and workers < len(gpus):
        raise UserError(f"workers={workers} is fewer than the {len(gpus)} devices chosen; drop workers (one per "
                        "device) or list fewer devices")
    if workers > n_cells:
        raise UserError(f"workers={workers} is more than the {n_cells} cells of this grid; use workers={n_cells} "
                        "or fewer")
    if workers == 1 and not gpus:
        return []
    threads = max(1, cpu_cores() // workers)
    return [WorkerSlot(i, gpus[i % len(gpus)] if gpus else None, threads, tuple(gpus), train_processes)
            for i in range(workers)]


# -- the worker process ------------------------------------------------------------------------------

def worker_main(slot: WorkerSlot, plan_bytes: bytes, run_dir: str, tasks, results) -> None:
    """A worker's life: pin itself, then compute the cells it is sent (keys) until it gets None."""
    die_with_parent()
    if slot.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.gpu  # before torch touches CUDA
    import torch

    torch.set_num_threads(slot.threads)
    if slot.gpu is not None and torch.cuda.is_available():
        torch.cuda.set_device(0)
    from factlearn.run.execute import CellExecutor

    plan = pickle.loads(plan_bytes)  # after pinning: unpickling may import torch-using modules
    cells = {c.key: c for c in plan.cells}
    store = CellStore(run_dir)
    executor = CellExecutor(plan, store, log=lambda text: results.put(("log", slot.index, text)),
                            train_gpus=list(slot.all_gpus), train_processes=slot.train_processes,
                            on_train_progress=lambda done, total: results.put(("progress", slot.index, done, total)))
    while (key := tasks.get()) is not None:
        cell = cells[key]
        started = time.time()
        try:
            store.execute(cell, lambda folder: executor.run(cell, folder))
        except BaseException as e:  # reported to the parent, which stops the run
            results.put(("failed", slot.index, key, _picklable(e), traceback.format_exc()))
            continue
        results.put(("done", slot.index, key, time.time() - started))
    executor.close()


def _picklable(e: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


# -- the parent's scheduler ---------------------------------------------------------------------------

@dataclass
class _Worker:
    slot: WorkerSlot
    process: object
    tasks: object
    cell: Cell | None = None  # the cell it is computing


class CellFailed(RuntimeError):
    """A cell raised in a worker; the worker's traceback is in the message."""


def run_parallel(cells: list[Cell], plan_bytes: bytes, store: CellStore, slots: list[WorkerSlot], *,
                 done: set[str], on_start: Callable[[Cell], None], on_finish: Callable[[Cell, float], None],
                 on_progress: Callable[[Cell, int, int], None], on_log: Callable[[str], None],
                 exclusive: Callable[[Cell], bool] = lambda cell: False) -> None:
    """Compute `cells` (plan order, none finished) on the workers; `done`: keys already finished.

    A cell is sent when all its deps are in `done`; an idle worker prefers a ready cell that reads the
    model it used last (it may still hold it loaded). An `exclusive` cell (a sharded training cell: it
    takes every device) starts only when no other cell runs, and nothing starts beside it. After a
    failure no new cell starts; the running ones finish (their folders are valid), then the failure is
    raised.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    workers = []
    for slot in slots:
        tasks = ctx.Queue()
        process = ctx.Process(target=worker_main, args=(slot, plan_bytes, str(store.run_dir), tasks, results),
                              name=f"factlearn-{slot.name}", daemon=True)
        process.start()
        workers.append(_Worker(slot, process, tasks))
    pending = list(cells)
    last_model: dict[int, object] = {}
    failure: tuple[Cell, BaseException, str] | None = None
    try:
        while pending or any(w.cell for w in workers):
            if failure is None:
                for w in workers:
                    running = [o.cell for o in workers if o.cell is not None]
                    if any(exclusive(c) for c in running):
                        break
                    if w.cell is None and (cell := _next_cell(pending, done, last_model.get(w.slot.index),
                                                              exclusive if running else None)):
                        pending.remove(cell)
                        w.cell = cell
                        last_model[w.slot.index] = cell.spec.get("model")
                        on_start(cell)
                        w.tasks.put(cell.key)
            busy = [w for w in workers if w.cell]
            if not busy:
                if failure is None and pending:
                    raise RuntimeError(f"cells {[c.key for c in pending]} wait on cells that are not in the plan")
                break
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                for w in busy:
                    if not w.process.is_alive():
                        raise MachineFailure(f"{w.slot.name} died (exit code {w.process.exitcode}) while computing "
                                             f"{w.cell.title}; out of memory? fewer workers need less")
                continue
            kind, index, *rest = message
            w = workers[index]
            if kind == "log":
                on_log(rest[0])
            elif kind == "progress" and w.cell is not None:
                on_progress(w.cell, rest[0], rest[1])
            elif kind == "done":
                done.add(rest[0])
                on_finish(w.cell, rest[1])
                w.cell = None
            elif kind == "failed":
                failure = failure or (w.cell, rest[1], rest[2])
                w.cell = None
        for w in workers:
            w.tasks.put(None)
        for w in workers:
            w.process.join(timeout=60)
    finally:
        for w in workers:
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
    if failure is not None:
        cell, error, trace = failure
        if isinstance(error, (UserError, KeyboardInterrupt)):
            raise error
        raise CellFailed(f"{cell.title} [{cell.key}] failed:\n{trace}") from error


def _next_cell(pending: list[Cell], done: set[str], model,
               exclusive: Callable[[Cell], bool] | None = None) -> Cell | None:
    """The first ready cell in plan order, or a ready one reading `model` if there is one; `exclusive`
    given (other cells are running): none of the cells it marks."""
    ready = [c for c in pending if all(d in done for d in c.deps) and not (exclusive and exclusive(c))]
    if not ready:
        return None
    same = [c for c in ready if model is not None and c.spec.get("model") == model]
    return (same or ready)[0]


def plan_payload(plan) -> bytes:
    """The plan as the workers receive it (pickled once, unpickled after each worker is pinned)."""
    return pickle.dumps(plan)

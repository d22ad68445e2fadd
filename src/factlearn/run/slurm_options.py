"""What `executor` and the `slurm.*` keys of a run config may say, checked at load.

Kept apart from slurm.py (which submits and watches jobs, and so needs the cell executor) so that the
run config can validate these keys without importing the machinery that runs a grid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from factlearn.errors import UserError

EXECUTORS = ("local", "slurm")
_MEM = re.compile(r"^\d+[KMGT]?$")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass
class SlurmOptions:
    """What each cell's job asks Slurm for (`slurm.*` keys; used only with executor=slurm).

    Null keys leave the cluster's defaults. `nodes` and `tasks_per_node` size a sharded training cell
    (train_sharding=fsdp2); every other cell is one task on one node."""

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    # limit of each job: minutes (60), HH:MM:SS or D-HH:MM:SS; null: twice the cell's --plan estimate, >= 10 min
    time: Optional[str] = None
    cpus_per_task: Optional[int] = None  # also the job's torch threads
    mem: Optional[str] = None  # per node, e.g. 16G
    gpus_per_node: Optional[int] = None
    nodes: int = 1  # nodes of a sharded training cell
    tasks_per_node: Optional[int] = None  # ranks per node of a sharded training cell (null: gpus_per_node)
    setup: list[str] = field(default_factory=list)  # shell lines run before each job (module load ..., source ...)
    array_parallelism: Optional[int] = None  # tasks of one job array running at once (null: 256)


def time_minutes(value: str | None) -> Optional[float]:
    """A Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM:SS) in minutes; None if unset."""
    if value is None:
        return None
    text = str(value).strip()
    m = _TIME.match(text)
    if not m:
        raise UserError(f"slurm.time={text} is not a Slurm time limit; use minutes (60), HH:MM:SS (1:30:00) or "
                        "D-HH:MM:SS (2-00:00:00)")
    days, a, b, c = m.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        return int(days) * 1440 + int(a) * 60 + int(b or 0) + int(c or 0) / 60
    if c is not None:  # HH:MM:SS
        return int(a) * 60 + int(b) + int(c) / 60
    if b is not None:  # MM:SS
        return int(a) + int(b) / 60
    return float(a)


def check_executor(cfg) -> None:
    """executor and slurm.* of a RunConfig: shapes and ranges, and no slurm.* on a local run."""
    if cfg.executor not in EXECUTORS:
        raise UserError(f"executor must be one of {', '.join(EXECUTORS)}, got {cfg.executor}")
    s = cfg.slurm
    if cfg.executor == "local":
        if s != SlurmOptions():
            raise UserError("slurm.* keys size the Slurm jobs of executor=slurm, but executor=local; add "
                            "executor=slurm or drop the slurm.* keys")
        return
    time_minutes(s.time)
    for key in ("cpus_per_task", "gpus_per_node", "tasks_per_node", "array_parallelism"):
        value = getattr(s, key)
        if value is not None and value < 1:
            raise UserError(f"slurm.{key} must be >= 1 or null (the cluster's default), got {value}")
    if s.nodes < 1:
        raise UserError(f"slurm.nodes must be >= 1, got {s.nodes}")
    if s.mem is not None and not _MEM.match(str(s.mem)):
        raise UserError(f"slurm.mem={s.mem} is not a Slurm memory size; use e.g. 16G or 16000 (MB)")
    if cfg.workers is not None or cfg.devices is not None:
        raise UserError("workers and devices choose this machine's processes and GPUs, but executor=slurm runs "
                        "each cell as its own job; drop them and size the jobs with slurm.cpus_per_task and "
                        "slurm.gpus_per_node")
    if cfg.train_sharding == "none" and (s.nodes != 1 or s.tasks_per_node is not None):
        raise UserError("slurm.nodes and slurm.tasks_per_node size a sharded training cell; add "
                        "train_sharding=fsdp2 or drop them")
    if cfg.train_sharding != "none" and sharded_ranks(cfg) < 2:
        raise UserError("train_sharding=fsdp2 on Slurm shards over slurm.nodes x slurm.tasks_per_node ranks, "
                        f"which is {sharded_ranks(cfg)}; set slurm.tasks_per_node=2 or more (or slurm.nodes)")


def sharded_ranks(cfg) -> int:
    """Ranks of a sharded training cell's job: nodes x tasks per node (default: one per GPU, else
    train_processes spread over the nodes)."""
    s = cfg.slurm
    per_node = s.tasks_per_node or s.gpus_per_node
    if per_node is None:
        per_node = max(1, (cfg.train_processes or 1) // s.nodes)
    return s.nodes * per_node

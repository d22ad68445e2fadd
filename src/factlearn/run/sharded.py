"""A grid training cell sharded over several processes (`train_sharding=fsdp2` in a run config).

The cell's TrainConfig (the run's resolved recipe, already checked) is pickled into the cell folder and
each rank under torchrun unpickles and trains it (`rank_main`), so it is not parsed a second time: one
process per GPU chosen with `devices` (NCCL), or `train_processes` processes on the CPU (gloo). An FSDP2 run ends at the weights of an unsharded one up
to the order of float sums (tests/test_train_fsdp.py), so the cell keeps its cache key: sharding
changes how a cell is computed, not what it computes.

torchrun starts each rank in a session of its own, so killing the grid would leave ranks training into
a folder nobody owns. This module is therefore also the launcher: `python -m factlearn.run.sharded
TORCHRUN-ARGS` dies with the grid and then runs torchrun; the ranks die with torchrun's agent in turn.
The environment tells each process whose death to follow (factlearn.processes).
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

from factlearn.errors import UserError
from factlearn.processes import DIE_WITH_PARENT_ENV, die_with_parent_if_asked

SHARDED_CONFIG = "train_config.pkl"  # in the cell folder: what the ranks were told to train (a pickled TrainConfig)
RANK_FLAG = "--rank"  # `python -m factlearn.run.sharded --rank CONFIG`: one rank
SHARDED_LOG = "train_stderr.txt"  # torchrun's and every rank's output


def sharded_command(config_file: Path, processes: int) -> list[str]:
    """The launch line: this module (torchrun behind a die-with-parent guard), then this module per rank."""
    return [sys.executable, "-m", "factlearn.run.sharded", "--standalone", "--nproc_per_node", str(processes),
            "-m", "factlearn.run.sharded", RANK_FLAG, str(config_file)]


def sharded_env(processes: int, gpus: list[str], cores: int) -> dict[str, str]:
    """The ranks' environment: their GPUs (all chosen ones), a share of the cores each, die-with-parent."""
    env = {**os.environ, DIE_WITH_PARENT_ENV: str(os.getpid()), "OMP_NUM_THREADS": str(max(1, cores // processes)),
           "TOKENIZERS_PARALLELISM": "false"}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def check_batches_split(train_cfgs, processes: int) -> None:
    """Every training cell's batch must split evenly over the ranks (checked before a run writes anything)."""
    for cfg in train_cfgs:
        if cfg.batch_size % processes:
            raise UserError(f"batch_size={cfg.batch_size} of the training recipe does not split over {processes} "
                            "sharded processes; choose train_processes (or devices) dividing it, or another "
                            "batch_size")


def train_sharded(train_cfg, folder: Path, processes: int, gpus: list[str], cores: int) -> Path:
    """Train one cell's config over `processes` FSDP2 ranks, each taking an equal part of every batch;
    returns the saved model folder.

    A UserError of the ranks (bad config, model too large for the chosen layer) is raised here as one
    line; any other failure raises with the log's last lines and names the log."""
    from factlearn.atomic import atomic_write_bytes

    cfg = copy.deepcopy(train_cfg)
    cfg.sharding = "fsdp2"
    # batch_size is per process: the ranks split the cell's batch, so the optimizer sees the same batches
    check_batches_split([cfg], processes)
    cfg.batch_size //= processes
    config_file = atomic_write_bytes(folder / SHARDED_CONFIG, pickle.dumps(cfg))
    log_file = folder / SHARDED_LOG
    with open(log_file, "w") as log:
        done = subprocess.run(sharded_command(config_file, processes), env=sharded_env(processes, gpus, cores),
                              stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = log_file.read_text(errors="replace").splitlines()
        user_errors = [line for line in lines if line.startswith("factlearn: error: ")]
        if user_errors:
            raise UserError(user_errors[0][len("factlearn: error: "):])
        raise RuntimeError(f"sharded training ({processes} processes) exited with code {done.returncode}; "
                           f"last lines of {log_file}:\n" + "\n".join(lines[-20:]))
    return Path(cfg.save)


def rank_main(config_file: str) -> int:
    """One rank: train the pickled TrainConfig. A UserError is one `factlearn: error:` line (train_sharded
    raises it again in the grid) and exit code 2, as `factlearn train` would."""
    from factlearn.train.trainer import train

    die_with_parent_if_asked()  # the launcher's (torchrun agent's) PID is in the environment
    with open(config_file, "rb") as f:
        cfg = pickle.load(f)  # written by train_sharded into this cell's folder
    try:
        train(cfg)
    except UserError as e:
        print(f"factlearn: error: {e}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    """`python -m factlearn.run.sharded TORCHRUN-ARGS`: torchrun that dies with the process that started
    it, and whose ranks die with it; with `--rank CONFIG`, one of those ranks."""
    if sys.argv[1:2] == [RANK_FLAG]:
        raise SystemExit(rank_main(sys.argv[2]))
    die_with_parent_if_asked()  # the grid's PID is in the environment
    os.environ[DIE_WITH_PARENT_ENV] = str(os.getpid())  # the ranks' launcher (torchrun's agent) is this process
    from torch.distributed.run import main as torchrun

    torchrun(sys.argv[1:])


if __name__ == "__main__":
    main()

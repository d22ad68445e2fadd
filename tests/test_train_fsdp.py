"""sharding=fsdp2 on CPU: 2 processes (torchrun, gloo) with FSDP2 end where 1 unsharded process ends.

Tolerance: fp32 on CPU; the sharded run differs only in the order of float sums (gradient
reduce-scatter, the global gradient norm), so final weights agree to atol 1e-5 and logged losses to
rel 1e-5 (observed: ~3e-7 on the tiny model).
"""

from __future__ import annotations

import json
import os
import stat
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factlearn.testing import SAMPLE_TEXTS

TEXTS = SAMPLE_TEXTS
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # on conftest.py's offline environment
ATOL, RTOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


@pytest.fixture(scope="module")
def base_args(tiny_model_dir, corpus_file) -> list[str]:
    """12 rows, a global batch of 4 rows (4 in one process, 2 in each of two): 3 steps per epoch."""
    return [f"model={tiny_model_dir}", f"subset={corpus_file}", "epochs=6", "lr=3e-3", "grad_accum=1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_process(*args: str) -> list[str]:
    return [sys.executable, "-m", "factlearn", "train", "cpu_small", *args, "batch_size=4"]


def fsdp2(*args: str) -> list[str]:
    torchrun = str(Path(sys.executable).parent / "torchrun")
    return [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "factlearn", "train",
            "cpu_small", *args, "batch_size=2", "sharding=fsdp2"]


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def weights(folder: Path, name: str = "model.safetensors") -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / name))


def log_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


def losses(folder: Path) -> list[float]:
    return [r["loss"] for r in log_rows(folder) if "loss" in r]


def summary(folder: Path) -> dict:
    return json.loads((folder / "train_summary.json").read_text())


def assert_same_run(one: Path, two: Path, name: str = "model.safetensors") -> None:
    import torch

    a, b = weights(one, name), weights(two, name)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=ATOL), (k, float((a[k] - b[k]).abs().max()))
    assert losses(two) == pytest.approx(losses(one), rel=RTOL)
    assert [r["event"] for r in log_rows(one) if "event" in r] == [r["event"] for r in log_rows(two) if "event" in r]


@pytest.fixture(scope="module")
def full_runs(base_args, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """(one process, FSDP2, the FSDP2 run's output), both with eval-in-the-loop."""
    root = tmp_path_factory.mktemp("full")
    evals = ["eval_every=10", "eval_limit=2"]
    run(one_process(*base_args, *evals, f"save={root / 'one'}"))
    two = run(fsdp2(*base_args, *evals, f"save={root / 'two'}"))
    return root / "one", root / "two", two


@pytest.mark.multiprocess
def test_fsdp2_full_finetune_matches_one_process_on_half_the_memory(full_runs):
    from factlearn.models import load_model

    one, two, done = full_runs
    assert_same_run(one, two)
    umask = os.umask(0o022)
    os.umask(umask)  # the rank that saves writes the weights as a plain write would (issue 23 (c))
    assert stat.S_IMODE((two / "model.safetensors").stat().st_mode) == 0o666 & ~umask
    assert done.stdout.count("trained model written") == 1  # printed and logged once, not per process
    evals = [r for r in log_rows(two) if "eval" in r]
    assert [r["step"] for r in evals] == [0, 10, 18]
    assert evals == [r for r in log_rows(one) if "eval" in r]
    s = summary(two)
    assert s["processes"] == 2 and s["sharding"] == "fsdp2" and s["global_batch_rows"] == 4
    # Parameters + AdamW state each process holds: its shard, about half of one process's whole copy.
    whole, = summary(one)["resident_bytes_per_process"]
    per_rank = s["resident_bytes_per_process"]
    assert len(per_rank) == 2 and all(0.45 * whole <= b <= 0.55 * whole for b in per_rank), (per_rank, whole)
    model, _ = load_model(str(two), device="cpu")  # a normal HF folder, as `factlearn eval` loads it
    assert type(model).__name__ == "LlamaForCausalLM"


@pytest.mark.multiprocess
def test_fsdp2_lora_with_forgetting_matches_one_process(base_args, tmp_path):
    from factlearn.models import load_model

    args = [*base_args, "method=lora", "lora.r=4", "forget.start_layer=2", "forget.at_epoch=3"]
    run(one_process(*args, f"save={tmp_path / 'one'}"))
    run(fsdp2(*args, f"save={tmp_path / 'two'}"))
    assert_same_run(tmp_path / "one", tmp_path / "two", "adapter_model.safetensors")
    assert [r["event"] for r in log_rows(tmp_path / "two") if "event" in r] == ["forget_reset"]
    model, _ = load_model(str(tmp_path / "two"), device="cpu")  # a peft adapter on its base
    assert hasattr(model, "peft_config")


@pytest.mark.multiprocess
def test_fsdp2_full_forgetting_in_one_run_matches_one_process(base_args, full_runs, tmp_path):
    import torch

    args = [*base_args, "forget.start_layer=2", "forget.at_epoch=3"]
    run(one_process(*args, f"save={tmp_path / 'one'}"))
    run(fsdp2(*args, f"save={tmp_path / 'two'}"))
    assert_same_run(tmp_path / "one", tmp_path / "two")
    # the reset changed the run: the upper layers end elsewhere than without forgetting
    no_forget, forgot = weights(full_runs[1]), weights(tmp_path / "two")
    assert not torch.allclose(no_forget["model.layers.3.mlp.up_proj.weight"], forgot["model.layers.3.mlp.up_proj.weight"],
                              atol=1e-3)


@pytest.mark.multiprocess
def test_fsdp2_two_run_forgetting_matches_one_process(base_args, full_runs, tmp_path):
    args = [*base_args, "epochs=2", "forget.start_layer=2", f"forget.from_model={full_runs[0]}"]
    run(one_process(*args, f"save={tmp_path / 'one'}"))
    run(fsdp2(*args, f"save={tmp_path / 'two'}"))
    assert_same_run(tmp_path / "one", tmp_path / "two")
    assert [r["event"] for r in log_rows(tmp_path / "two") if "event" in r] == ["forget_reset"]


def kill_with_workers(launcher: int) -> None:
    workers = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
    for pid in [launcher, *map(int, workers)]:
        os.kill(pid, signal.SIGKILL)


@pytest.mark.multiprocess
def test_fsdp2_sigkilled_run_resumes_to_the_same_weights(base_args, full_runs, tmp_path):
    uninterrupted = full_runs[1]
    args = [*base_args, "eval_every=10", "eval_limit=2", "checkpoint_every=4", f"save={tmp_path / 'cut'}"]
    with open(tmp_path / "cut.err", "w") as err:
        proc = subprocess.Popen(fsdp2(*args), env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 240
        while not list((tmp_path / "cut" / "checkpoints").glob("step-*")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        kill_with_workers(proc.pid)  # as a lost node: torchrun runs each worker in a session of its own
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    assert not (tmp_path / "cut" / "train_summary.json").exists()

    run([*fsdp2(*args), "--resume"])
    s = summary(tmp_path / "cut")
    assert s["resumed_from_step"] >= 4 and s["steps"] == 3 * 6
    assert_same_run(uninterrupted, tmp_path / "cut")
    assert not (tmp_path / "cut" / "checkpoints").exists()


def test_sharding_with_one_process_is_refused(tiny_model_dir, corpus_file, tmp_path):
    for bad in (["sharding=fsdp2"], ["fsdp.cpu_offload=true"], ["sharding=zero3"]):
        done = subprocess.run(one_process(f"model={tiny_model_dir}", f"subset={corpus_file}", *bad,
                                          f"save={tmp_path / 'x'}"), env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (bad, done.stderr[-2000:])
        assert len(done.stderr.strip().splitlines()) == 1 and "sharding" in done.stderr, done.stderr
        assert not (tmp_path / "x").exists()

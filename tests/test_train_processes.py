"""Training across processes: SIGKILL + --resume, and 2 processes (gloo on CPU) == 1 process."""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    return path


def factlearn_train(*args: str) -> list[str]:
    return [sys.executable, "-m", "factlearn", "train", "cpu_small", *args]


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


@pytest.mark.multiprocess
def test_sigkilled_run_resumes_to_the_same_weights(tiny_model_dir, corpus_file, tmp_path):
    import torch

    args = [f"model={tiny_model_dir}", f"subset={corpus_file}", "epochs=20", "batch_size=2", "lr=1e-3",
            "checkpoint_every=10"]
    ref = subprocess.run(factlearn_train(*args, f"save={tmp_path / 'ref'}"), env=ENV, capture_output=True, text=True,
                         timeout=300)
    assert ref.returncode == 0, ref.stderr[-2000:]

    cut = tmp_path / "cut"
    with open(tmp_path / "cut.err", "w") as err:
        proc = subprocess.Popen(factlearn_train(*args, f"save={cut}"), env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 240
        while not list((cut / "checkpoints").glob("step-*")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed; make it longer"
    assert not (cut / "train_summary.json").exists()

    resumed = subprocess.run(factlearn_train(*args, f"save={cut}", "--resume"), env=ENV, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((cut / "train_summary.json").read_text())
    assert summary["resumed_from_step"] >= 10 and summary["steps"] == 6 * 20
    a, b = weights(tmp_path / "ref"), weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert losses(cut) == pytest.approx(losses(tmp_path / "ref"), abs=1e-6)
    assert not (cut / "checkpoints").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.multiprocess
def test_two_processes_match_one_with_the_same_global_batch(tiny_model_dir, corpus_file, tmp_path):
    import torch

    args = [f"model={tiny_model_dir}", f"subset={corpus_file}", "epochs=3", "lr=3e-3", "grad_accum=1"]
    one = subprocess.run(factlearn_train(*args, "batch_size=4", f"save={tmp_path / 'one'}"), env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    accelerate = str(Path(sys.executable).parent / "accelerate")
    two = subprocess.run([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                          "-m", "factlearn", "train", "cpu_small", *args, "batch_size=2", f"save={tmp_path / 'two'}"],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("trained model written") == 1
    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch_rows"] == 4
    assert len(losses(tmp_path / "two")) == 3 * 3
    assert losses(tmp_path / "two") == pytest.approx(losses(tmp_path / "one"), rel=1e-5)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k

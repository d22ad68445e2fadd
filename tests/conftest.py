"""Shared fixtures: a tiny random model for unit tests, the real default model for end-to-end ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

# The one test environment: never touch the network (hub paths must fail fast and clearly), no tokenizer
# threads. Set here once, for this process and every child it starts (children inherit os.environ).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FACTLEARN = [sys.executable, "-m", "factlearn"]


@pytest.fixture
def run_cli(capsys, monkeypatch) -> Callable[..., subprocess.CompletedProcess]:
    """Run `factlearn ARGS...`; returns a CompletedProcess (returncode, stdout, stderr) either way.

    In-process by default (no interpreter start-up: seconds saved per call); `process=True` starts a real
    `python -m factlearn` for what only a process shows (exit codes from signals, tracebacks on stderr,
    environment read at import). `env` adds variables to the test environment; `cwd` is the folder it runs in.
    """

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None,
            process: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        if process:
            return subprocess.run([*FACTLEARN, *argv], capture_output=True, text=True, timeout=timeout,
                                  cwd=cwd, env={**os.environ, **(env or {})})
        from factlearn.cli import main

        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            if cwd is not None:
                m.chdir(cwd)
            capsys.readouterr()  # drop what the test printed before
            try:
                code = main(argv)
            except SystemExit as e:  # argparse (usage errors, --help) exits
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
            out = capsys.readouterr()
        return subprocess.CompletedProcess(["factlearn", *argv], code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny randomly initialised Llama (4 layers, hidden 64) + BPE tokenizer, saved in HF format."""
    from factlearn.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded SmolLM2-135M, converted once into the factlearn cache."""
    from factlearn.models import ensure_converted

    return ensure_converted()

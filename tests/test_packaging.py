"""The built wheel's metadata: torch is a range (a user's CUDA torch survives `pip install factlearn`),
the optional extras exist, and the CPU pin lives only in the set-up path (constraints/cpu.txt)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def metadata(tmp_path_factory):
    """METADATA of a wheel built from this checkout (no network: no build isolation, no deps)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True, timeout=300)
    wheel = next(out.glob("factlearn-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def _requirements(meta) -> list[Requirement]:
    return [Requirement(r) for r in meta.get_all("Requires-Dist")]


def test_torch_is_a_range_not_one_build(metadata):
    torch = [r for r in _requirements(metadata) if r.name == "torch" and r.marker is None]
    assert len(torch) == 1, torch
    spec = torch[0].specifier
    assert not any(s.operator in ("==", "===") for s in spec), f"torch pinned to one build: {spec}"
    # the range admits the CPU build installed here and a user's older or newer CUDA build within it
    for version in ("2.6.0", "2.11.0", "2.13.0"):
        assert spec.contains(version), (version, spec)
    assert not spec.contains("2.5.1")  # below the FSDP2 public API (torch.distributed.fsdp.fully_shard)
    assert not spec.contains("3.0.0")


def test_extras_present(metadata):
    extras = set(metadata.get_all("Provides-Extra"))
    assert {"lmeval", "slurm", "trackers", "test"} <= extras, extras
    by_extra: dict[str, set[str]] = {}
    for req in _requirements(metadata):
        if req.marker is None:
            continue
        for extra in extras:
            if req.marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, set()).add(req.name)
    assert by_extra["slurm"] == {"submitit"}
    assert by_extra["trackers"] == {"tensorboard", "mlflow", "wandb", "trackio"}
    assert by_extra["lmeval"] == {"lm-eval"}
    # the tests read back real tracker stores and run submitit, so `.[test]` installs them too
    assert {"pytest", "lm-eval", "submitit", "tensorboard", "mlflow", "wandb"} <= by_extra["test"]
    # nothing optional leaks into the base install
    base = {r.name for r in _requirements(metadata) if r.marker is None}
    assert not base & {"pytest", "lm-eval", "submitit", "tensorboard", "mlflow", "wandb", "trackio", "trl"}


def test_cpu_pin_lives_in_the_setup_path_only():
    pins = [line.split("#")[0].strip() for line in (ROOT / "constraints" / "cpu.txt").read_text().splitlines()]
    assert "torch==2.13.0" in pins
    makefile = (ROOT / "Makefile").read_text()
    assert "-c $(CONSTRAINTS)" in makefile and "CONSTRAINTS := constraints/cpu.txt" in makefile
    assert "torch==" not in makefile  # the pin has one home


def test_make_run_installs_no_test_extras():
    """`make run` depends on the run stamp alone; only `make test`'s stamp installs `.[test]`."""
    out = subprocess.run(["make", "-n", "-B", "run"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "install" in out and "-e ." in out
    assert "[test]" not in out
    test_out = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    assert "'.[test]'" in test_out

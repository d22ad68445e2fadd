"""Cells: the unit of work, caching and resumption in a `factlearn run`.

A cell is one computation (train a model, evaluate one, probe one, ablate one). Its key is a hash of
everything that determines its result: its own resolved config and the keys of the cells it reads
from, so a change anywhere upstream changes every key downstream and nothing else. A finished cell
lives in <run>/cells/<key>/ with a `done.json` marker written last; the folder is built under a
temporary name and renamed into place (factlearn.atomic.atomic_dir), so a killed run leaves either a
finished cell or none.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from factlearn.atomic import atomic_dir, atomic_write_json
from factlearn.errors import UserError
from factlearn.versions import numerics

# Bump when the meaning of a cell's outputs changes, to invalidate old caches.
CELL_FORMAT = 1
DONE_MARKER = "done.json"
RESULT_FILE = "result.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-able object, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


@dataclass(frozen=True)
class Cell:
    """One unit of work. `spec` decides the key; `labels` only name it in tables and logs."""

    kind: str  # "train" | "eval" | "probe" | "ablate"
    spec: dict
    labels: dict = field(default_factory=dict, compare=False)
    deps: tuple[str, ...] = ()  # keys of upstream cells, also inside spec
    est_seconds: float = 1.0
    est_memory: float = 0.0  # predicted peak bytes on one device (estimate.py)

    @property
    def key(self) -> str:
        return f"{self.kind}-{stable_hash({'format': CELL_FORMAT, 'kind': self.kind, 'spec': self.spec})}"

    @property
    def title(self) -> str:
        """A short human name, e.g. `train smollm2-135m full narrative seed 1`."""
        parts = [self.labels.get(k) for k in ("model", "method", "condition")]
        seed = self.labels.get("seed")
        text = " ".join([self.kind, *(str(p) for p in parts if p)])
        return f"{text} seed {seed}" if seed is not None else text


class CellStore:
    """The cells/ folder of a run: lookup, atomic execution, and an exclusive lock per run folder."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.root = self.run_dir / "cells"

    def path(self, key: str) -> Path:
        return self.root / key

    def is_done(self, key: str) -> bool:
        return (self.path(key) / DONE_MARKER).is_file()

    def result(self, key: str) -> dict:
        """The result.json of a finished cell."""
        return json.loads((self.path(key) / RESULT_FILE).read_text())

    def info(self, key: str) -> dict:
        """The done marker of a finished cell: kind, spec, labels, timings."""
        return json.loads((self.path(key) / DONE_MARKER).read_text())

    def execute(self, cell: Cell, work: Callable[[Path], dict]) -> dict:
        """Run `work(tmp_folder) -> result` and commit the folder as finished cell `cell.key`.

        `work` writes any files it likes into the folder it gets; the result dict becomes
        result.json. The done marker is written last, then the folder is renamed into place.
        """
        started, cpu_started = time.time(), time.process_time()
        with atomic_dir(self.path(cell.key), overwrite=True) as tmp:
            result = work(tmp)
            atomic_write_json(tmp / RESULT_FILE, result)
            finished = time.time()
            atomic_write_json(tmp / DONE_MARKER, {
                "key": cell.key, "kind": cell.kind, "title": cell.title, "labels": cell.labels,
                "spec": cell.spec, "started": started, "finished": finished, "seconds": finished - started,
                # CPU time of all threads: with a shared CPU, cpu_seconds / cores estimates the unshared wall time
                "cpu_seconds": time.process_time() - cpu_started, "est_seconds": cell.est_seconds,
                # what can change the result without changing the key (docs/reproducibility.md)
                "numerics": numerics((cell.spec.get("train") or {}).get("dtype")),
            })
        return result

    def remove_stale_temps(self) -> list[Path]:
        """Delete half-built cell folders left by a killed run (dot-named temp siblings)."""
        removed = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".old")):
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p)
        return removed

    def lock(self) -> "RunLock":
        return RunLock(self.run_dir / ".lock")


class RunLock:
    """An exclusive flock on the run folder: two runs writing the same cells would waste work.

    flock is released by the OS when the process dies, so a killed run never leaves a stale lock.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise UserError(f"another factlearn run is using {self.path.parent}; wait for it to finish "
                            "or choose another folder with --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def topological(cells: list[Cell]) -> Iterator[Cell]:
    """Cells in an order where every cell comes after the cells it depends on (input order kept)."""
    by_key = {c.key: c for c in cells}
    seen: set[str] = set()

    def visit(cell: Cell) -> Iterator[Cell]:
        if cell.key in seen:
            return
        seen.add(cell.key)
        for dep in cell.deps:
            if dep in by_key:
                yield from visit(by_key[dep])
        yield cell

    for cell in cells:
        yield from visit(cell)

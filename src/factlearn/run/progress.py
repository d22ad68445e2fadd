"""One overall progress display for a run: the current stage and an estimate of the time left.

The estimate starts from each cell's predicted cost (tokens x steps x model size, see estimate.py)
and is refined by measurement: once cells of a kind have finished, the remaining cells of that kind
are scaled by measured / predicted time. rich draws the bar; the ETA column is ours because rich's
own ETA assumes uniform work units.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from factlearn.run.cells import Cell


class Estimator:
    """Time-left bookkeeping over a list of cells with predicted costs, some of them running at once."""

    def __init__(self, cells: list[Cell], live: Callable[[Cell], tuple[int, int] | None] | None = None,
                 workers: int = 1):
        self.live = live  # (units done, total) of a running cell when it can tell, e.g. training steps
        self.workers = max(workers, 1)  # cells computed at once: the work left is shared among them
        self.pending = {c.key: c for c in cells}
        self.predicted = defaultdict(float)  # kind -> predicted seconds of finished cells
        self.measured = defaultdict(float)  # kind -> measured seconds of finished cells
        self.running: dict[str, tuple[Cell, float]] = {}  # key -> (cell, start time)

    @property
    def current(self) -> Cell | None:
        """The most recently started running cell."""
        return next(reversed(self.running.values()))[0] if self.running else None

    def ratio(self, kind: str) -> float:
        """Measured / predicted for finished cells of `kind`; all kinds pooled before any of it ran."""
        if self.predicted[kind] > 0:
            return self.measured[kind] / self.predicted[kind]
        total_pred = sum(self.predicted.values())
        return sum(self.measured.values()) / total_pred if total_pred > 0 else 1.0

    def start(self, cell: Cell) -> None:
        self.running[cell.key] = (cell, time.time())

    def finish(self, cell: Cell, seconds: float | None) -> None:
        """Record a finished cell; `seconds=None` means it was reused from the cache (no evidence)."""
        self.pending.pop(cell.key, None)
        self.running.pop(cell.key, None)
        if seconds is not None:
            self.predicted[cell.kind] += cell.est_seconds
            self.measured[cell.kind] += seconds

    def seconds_left(self) -> float:
        left = 0.0
        for cell in self.pending.values():
            expected = cell.est_seconds * self.ratio(cell.kind)
            if cell.key in self.running:
                elapsed = time.time() - self.running[cell.key][1]
                done = self.live(cell) if self.live else None
                if done and done[0] >= 3 and done[1] > 0:  # measured pace of this very cell
                    expected = elapsed * (done[1] - done[0]) / done[0]
                else:
                    expected = max(expected - elapsed, 0.05 * expected)
            left += expected
        return left / self.workers


class DetailColumn(ProgressColumn):
    """`step 12/60` while a training cell runs (from train(on_progress=)), else nothing."""

    def __init__(self, estimator: Estimator):
        super().__init__()
        self.estimator = estimator

    def render(self, task) -> Text:
        current = self.estimator.current
        done = self.estimator.live(current) if self.estimator.live and current else None
        return Text(f"step {done[0]}/{done[1]}" if done else "", style="magenta")


class EtaColumn(ProgressColumn):
    """`~3m20s left`, from the Estimator rather than from rich's uniform-speed guess."""

    def __init__(self, estimator: Estimator):
        super().__init__()
        self.estimator = estimator

    def render(self, task) -> Text:
        if task.finished:
            return Text("done", style="green")
        return Text(f"~{format_seconds(self.estimator.seconds_left())} left", style="cyan")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class RunProgress:
    """The run's progress bar plus one log line per finished cell (visible in logs and CI, too)."""

    def __init__(self, cells: list[Cell], console: Console | None = None,
                 live: Callable[[Cell], tuple[int, int] | None] | None = None, workers: int = 1):
        self.console = console or Console(file=sys.stderr)
        self.estimator = Estimator(cells, live, workers)
        self.total = sum(c.est_seconds for c in cells) or 1.0
        self.count = len(cells)
        self.done = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), DetailColumn(self.estimator), BarColumn(),
            TextColumn("{task.fields[counter]}"),
            TimeElapsedColumn(), EtaColumn(self.estimator), console=self.console, transient=False,
        )
        self.task_id = None

    def __enter__(self) -> "RunProgress":
        self.progress.start()
        self.task_id = self.progress.add_task("starting", total=self.total, counter=f"0/{self.count}")
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def start(self, cell: Cell) -> None:
        self.estimator.start(cell)
        self._describe()

    def _describe(self) -> None:
        """The newest running cell's title, `(+k running)` when others run alongside it."""
        current, others = self.estimator.current, len(self.estimator.running) - 1
        if current is not None:
            more = f" (+{others} running)" if others > 0 else ""
            self.progress.update(self.task_id, description=current.title + more)

    def finish(self, cell: Cell, seconds: float | None) -> None:
        """Advance past `cell`; `seconds=None` means it was reused from an earlier run."""
        self.estimator.finish(cell, seconds)
        self._describe()
        self.done += 1
        self.progress.update(self.task_id, advance=cell.est_seconds, counter=f"{self.done}/{self.count}")
        how = "reused" if seconds is None else f"{format_seconds(seconds)} (predicted {format_seconds(cell.est_seconds)})"
        self.progress.console.print(f"[{self.done}/{self.count}] {cell.title} [{cell.key}]: {how}", highlight=False)

    def stage(self, description: str) -> None:
        """Show a step that is not a cell (writing the report)."""
        self.progress.update(self.task_id, description=description)

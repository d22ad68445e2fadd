"""Experiment trackers (`report_to=[tensorboard, wandb, mlflow, trackio]`), for `train` and `run`.

The trackers are accelerate's own classes (accelerate.tracking: TensorBoardTracker, WandBTracker,
MLflowTracker, TrackioTracker), used directly rather than through `Accelerator(log_with=...)`: the
grid's orchestrating process has no accelerator of its own, and training keeps its accelerator as
the engine builds it. Only the mapping from factlearn's log rows to metric names is written here.

Metric names: `train/loss`, `train/lr`, `train/tokens_per_s`, `train/epoch` per logged step;
`eval/<task>/<metric>` for eval-in-the-loop (the curve points); a run adds its final table and
verdicts (`log_table`, `log_text`). Where files go: `tracking_dir` (TensorBoard event files under
`<tracking_dir>/<run name>/`, W&B runs under `<tracking_dir>/wandb/`, an MLflow store `<tracking_dir>/mlflow.db`
(sqlite, MLflow 3's default backend; its file store is refused unless MLFLOW_ALLOW_FILE_STORE=true)
with artifacts in `<tracking_dir>/mlartifacts`, unless MLFLOW_TRACKING_URI names another store; trackio keeps its own store,
TRACKIO_DIR). W&B honours WANDB_MODE (offline writes only the local run folder).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from factlearn.errors import UserError

# tracker name -> (module it imports, pip package that provides it)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}
NONE = "none"


def check_report_to(value: str | Sequence[str] | None) -> list[str]:
    """The trackers `report_to` names (empty for none); an unknown name is a one-line UserError.

    Checked at config load, so a typo fails before the model loads.
    """
    if value is None:
        return []
    names = [value] if isinstance(value, str) else [str(v) for v in value]
    names = [n.strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in names if n != NONE and n not in TRACKERS]
    if unknown:
        raise UserError(f"report_to: unknown tracker '{unknown[0]}'; choose from {', '.join(TRACKERS)} or none, "
                        "e.g. report_to=[tensorboard,mlflow]")
    if NONE in names and len(set(names)) > 1:
        raise UserError(f"report_to lists 'none' together with {', '.join(n for n in names if n != NONE)}; "
                        "give only trackers, or only none")
    return list(dict.fromkeys(n for n in names if n != NONE))


def check_installed(names: Iterable[str]) -> None:
    """A tracker whose package is not installed: one line naming the `pip install` to run."""
    for name in names:
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"report_to={name} needs the {package} package, which is not installed; run "
                            f"`pip install {package}` (or `pip install 'factlearn[trackers]'` for all trackers)")


def flat_config(values: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as flat `a.b` keys with values every tracker takes (bool, int, float, str)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:  # lists, None: as text (TensorBoard hparams and MLflow params take no lists or nulls)
            out[name] = json.dumps(value)
    return out


def row_metrics(row: dict) -> dict[str, float]:
    """The tracker metrics of one train_log.jsonl row (a step, an eval, or an event)."""
    out: dict[str, float] = {}
    if isinstance(row.get("eval"), dict):
        for task, metrics in row["eval"].items():
            for metric, value in (metrics or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    out[f"eval/{task}/{metric}"] = float(value)
        return out
    if row.get("event"):
        out[f"train/{row['event']}"] = 1.0
        return out
    for key in ("loss", "lr", "tokens_per_s", "epoch"):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[f"train/{key}"] = float(value)
    return out


class Trackers:
    """The open trackers of one training run or grid run; every call goes to each of them.

    Empty (report_to=none) it does nothing, so callers need no branches.
    """

    def __init__(self, trackers: list | None = None):
        self.trackers = list(trackers or [])

    def __bool__(self) -> bool:
        return bool(self.trackers)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.trackers]

    def log(self, values: dict[str, float], step: int | None = None) -> None:
        if values:
            for tracker in self.trackers:
                tracker.log(values, step=step)

    def log_row(self, row: dict) -> None:
        """Forward one train_log.jsonl row (what RunLog writes) at its step."""
        self.log(row_metrics(row), step=row.get("step"))

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Text (verdicts, a table as markdown): TensorBoard's text tab, a W&B/trackio value, an MLflow artifact."""
        for tracker in self.trackers:
            if tracker.name == "mlflow":
                import mlflow

                mlflow.log_text(text, f"{name.replace('/', '_')}.md")
            else:
                tracker.log({name: text}, step=step)

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        """A table: a W&B/trackio table where the tracker has one, else markdown text (see log_text)."""
        for tracker in self.trackers:
            if tracker.name == "wandb":
                tracker.log_table(name, columns=columns, data=[[_cell(v) for v in r] for r in rows], step=step)
            elif tracker.name == "trackio":
                import trackio

                tracker.log({name: trackio.Table(columns=columns, data=[[_cell(v) for v in r] for r in rows])},
                            step=step)
            else:
                Trackers([tracker]).log_text(name, markdown_table(columns, rows), step=step)

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []


def _cell(value) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else str(value)


def markdown_table(columns: list[str], rows: list[list]) -> str:
    """A plain markdown table (TensorBoard renders markdown in its text tab)."""
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def open_trackers(names: Sequence[str], project: str, run_name: str, tracking_dir: str | Path,
                  config: dict | None = None) -> Trackers:
    """Start each named tracker (checked installed first) and store `config` as the run's parameters.

    `project`: the W&B / trackio project and MLflow experiment; `run_name`: this run within it (the
    TensorBoard subfolder). Call on the main process only.
    """
    names = check_report_to(list(names))
    if not names:
        return Trackers()
    check_installed(names)
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, TrackioTracker, WandBTracker

    folder = Path(tracking_dir)
    folder.mkdir(parents=True, exist_ok=True)
    opened = []
    try:
        for name in names:
            if name == "tensorboard":
                tracker = TensorBoardTracker(run_name, str(folder))
            elif name == "wandb":
                tracker = WandBTracker(project, name=run_name, dir=str(folder))
            elif name == "mlflow":
                _default_mlflow_store(folder)
                tracker = MLflowTracker(experiment_name=project, run_name=run_name,
                                        logging_dir=(folder / "mlartifacts").resolve().as_uri())
            else:
                tracker = TrackioTracker(project, name=run_name)
            tracker.start()
            opened.append(tracker)
            if config:
                tracker.store_init_configuration(flat_config(config))
    except BaseException:
        Trackers(opened).finish()
        raise
    return Trackers(opened)


def _default_mlflow_store(folder: Path) -> None:
    """Without MLFLOW_TRACKING_URI, a sqlite store in the tracking folder (MLflow's own default is the cwd)."""
    import os

    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(f"sqlite:///{(folder / 'mlflow.db').resolve()}")

"""Training curves: loss vs step with forgetting resets marked, and eval metrics on a second axis.

This is the paper's Figure 7 form: training loss falls to ~0, jumps when the upper layers are reset
(active forgetting), falls again; multiple-choice accuracy (from eval-in-the-loop) dips, then rises.

Input is a run's `train_log.jsonl` (the trainer's documented format), one JSON object per line:
  step lines   {"step": int, "epoch": float, "loss": float, "lr": float, "tokens_per_s": float, "phase": int}
  a reset      {"step": int, "event": "forget_reset", "forget_start_layer": int}
  eval lines   {"step": int, "eval": {"<task>": {"<metric>": float}}}
If the step counter restarts in a later phase, steps are laid end to end on one x axis ("global step").
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from factlearn.errors import UserError
from factlearn.analyze.runinfo import corpus_label
from factlearn.config import read_saved_config
from factlearn.analyze.plotting import pyplot, save_figure

DEFAULT_METRIC = "Eval_multiple_choice/acc"


@dataclass
class TrainLog:
    """A parsed training log. Every record carries `x`, its position on the global step axis."""

    path: Path
    steps: list[dict] = field(default_factory=list)
    resets: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def metric_names(self) -> list[str]:
        """All `task/metric` names found in eval lines, in first-seen order."""
        names: dict[str, None] = {}
        for rec in self.evals:
            for task, metrics in rec["eval"].items():
                for m in metrics:
                    names[f"{task}/{m}"] = None
        return list(names)

    def metric_series(self, name: str) -> tuple[list[float], list[float]]:
        """(x, values) of one `task/metric` over the eval lines that report it."""
        task, _, metric = name.partition("/")
        xs, ys = [], []
        for rec in self.evals:
            value = rec["eval"].get(task, {}).get(metric)
            if isinstance(value, (int, float)):
                xs.append(rec["x"])
                ys.append(float(value))
        return xs, ys


def _bad(path: Path, lineno: int, what: str) -> UserError:
    return UserError(f"{path}:{lineno}: {what}; pass a train_log.jsonl written by `factlearn train` "
                     "(one JSON object per line with an integer 'step')")


def read_train_log(path: str | Path) -> TrainLog:
    """Parse and validate a train_log.jsonl; any malformed line is a UserError naming its line number."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"training log {path} does not exist; pass the train_log.jsonl of a training run")
    log = TrainLog(path=path)
    offset, last_x = 0, -math.inf
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"training log {path} is not UTF-8 text; pass a train_log.jsonl") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise _bad(path, lineno, f"not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise _bad(path, lineno, "not a JSON object")
        step = rec.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            raise _bad(path, lineno, "missing an integer 'step'")
        if step + offset < last_x:  # the counter restarted (new phase): continue the x axis
            offset = int(last_x)
        x = step + offset
        last_x = max(last_x, x)
        rec = {**rec, "x": x}
        if "loss" in rec:
            if not isinstance(rec["loss"], (int, float)) or isinstance(rec["loss"], bool):
                raise _bad(path, lineno, f"'loss' is {rec['loss']!r}, not a number")
            log.steps.append(rec)
        elif "eval" in rec:
            if not isinstance(rec["eval"], dict) or not all(isinstance(v, dict) for v in rec["eval"].values()):
                raise _bad(path, lineno, "'eval' must map task -> {metric: value}")
            log.evals.append(rec)
        elif "event" in rec:
            (log.resets if rec["event"] == "forget_reset" else log.events).append(rec)
        else:
            raise _bad(path, lineno, "has none of 'loss', 'eval' or 'event'")
    if not log.steps:
        raise UserError(f"training log {path} has no step lines with a 'loss'; was the run killed before step 1?")
    return log


def choose_metrics(log: TrainLog, metrics: list[str] | None) -> list[str]:
    """Resolve requested metrics (`task/metric`, or bare `metric` = that metric of every task).

    With none requested: MC accuracy when the log has it, else nothing (loss only).
    """
    available = log.metric_names()
    if not metrics:
        return [DEFAULT_METRIC] if DEFAULT_METRIC in available else []
    chosen: list[str] = []
    for want in metrics:
        found = [want] if want in available else [n for n in available if n.split("/", 1)[1] == want]
        if not found:
            raise UserError(f"metric '{want}' is not in the eval lines of {log.path}; available: "
                            f"{', '.join(available) or '(no eval lines; train with eval-in-the-loop)'}")
        chosen += [n for n in found if n not in chosen]
    return chosen


def run_title(log_path: Path) -> str:
    """'model on corpus' from the run's config.yaml next to the log, else the run folder's name."""
    cfg = read_saved_config(log_path.parent)
    if not cfg:
        return log_path.parent.name or str(log_path)
    return f"{Path(str(cfg.get('model', 'model'))).name} on {corpus_label(cfg, default='corpus')}"


def plot_training_curves(log: TrainLog | str | Path, out_png: str | Path, metrics: list[str] | None = None,
                         title: str | None = None) -> Path:
    """Plot loss vs global step, mark each forgetting reset, and put eval metrics on a right axis."""
    if not isinstance(log, TrainLog):
        log = read_train_log(log)
    chosen = choose_metrics(log, metrics)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([s["x"] for s in log.steps], [s["loss"] for s in log.steps], color="tab:blue", lw=1.5,
            label="training loss")
    ax.set_xlabel("training step (global)")
    ax.set_ylabel("training loss")
    for i, reset in enumerate(log.resets):
        layer = reset.get("forget_start_layer")
        label = "forgetting reset" + (f" (layers ≥ {layer})" if layer is not None else "")
        ax.axvline(reset["x"], color="tab:red", ls="--", lw=1.2, label=label if i == 0 else None)
        ax.annotate(label, (reset["x"], 0.03), xycoords=("data", "axes fraction"), xytext=(-3, 0),
                    textcoords="offset points", color="tab:red", fontsize=8, rotation=90, ha="right", va="bottom")
    handles, labels = ax.get_legend_handles_labels()
    if chosen:
        ax2 = ax.twinx()
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
        for name, color in zip(chosen, colors * 3):
            xs, ys = log.metric_series(name)
            ax2.plot(xs, ys, marker="o", ms=3, color=color, label=name)
        ax2.set_ylabel("eval metric" if len(chosen) > 1 else chosen[0])
        if all(0 <= y <= 1 for n in chosen for y in log.metric_series(n)[1]):
            ax2.set_ylim(-0.02, 1.02)  # accuracies: show the full 0..1 range
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper right", fontsize=8)
    ax.set_title(title or f"Training curve: {run_title(log.path)}")
    return save_figure(fig, out_png)

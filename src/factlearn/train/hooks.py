"""What the loop reports to: the run log, the eval hook, the progress bar and the progress callback.

Only the main process reports; the others wait where the main one evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from factlearn.errors import UserError
from factlearn.tracking import Trackers, open_trackers
from factlearn.train.config import TrainConfig
from factlearn.evaluate import evaluate
from factlearn.data import load_cca

EvalHook = Callable[[object, object, int], dict]  # (model, tokenizer, step) -> metrics for the log
ProgressCallback = Callable[[int, int], None]  # (optimizer steps done, total optimizer steps)


class RunLog:
    """train_log.jsonl rows, kept in memory (they go into checkpoints) and appended to a live file;
    each new row also goes to the experiment trackers (report_to), so they show what the log holds."""

    def __init__(self, path: Path, rows: list[dict], enabled: bool, trackers: Trackers | None = None):
        self.path, self.rows, self.enabled = path, list(rows), enabled
        self.trackers = trackers or Trackers()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def add(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self.trackers.log_row(row)


def open_train_trackers(cfg: TrainConfig, enabled: bool) -> Trackers:
    """The run's trackers (main process only), named `run_name` (else after the save folder), with the config
    as parameters."""
    if not enabled:
        return Trackers()
    from factlearn.config import to_dict

    folder = cfg.tracking_dir or str(Path(cfg.save).resolve().parent / "tracking")
    return open_trackers(cfg.report_to, "factlearn", cfg.run_name or Path(cfg.save).name, folder, to_dict(cfg))


def log_summary(trackers: Trackers, summary: dict) -> None:
    """The finished run's headline numbers, at its last step."""
    trackers.log({f"summary/{k}": float(v) for k, v in summary.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}, step=summary.get("steps"))


def default_eval_hook(cfg: TrainConfig) -> EvalHook:
    """Eval-in-the-loop with factlearn.evaluate on the same CCA world the corpus came from."""
    data = None
    if not Path(cfg.subset).suffix and not Path(cfg.subset).is_dir():
        data = load_cca(None, source=cfg.data_source, n_countries=cfg.n_countries, seed=cfg.data_seed)

    def hook(model, tokenizer, step):
        return evaluate(model, tokenizer, tasks=list(cfg.eval_tasks), data=data, limit=cfg.eval_limit).metrics

    return hook


def run_eval(hook: EvalHook, accelerator, model, tokenizer, step: int, log: RunLog,
             copy_for_eval: Callable[[], object] | None = None) -> None:
    """Evaluate on the main process (in eval mode) and log the metrics; every process waits for it.

    `copy_for_eval` (sharded runs): a collective that every process calls and that returns a plain
    copy of the model on the main process (None elsewhere); that copy is evaluated and dropped.
    """
    if copy_for_eval is not None:
        model = copy_for_eval()
    if accelerator.is_main_process:
        model.eval()
        metrics = hook(model, tokenizer, step)
        model.train()
        log.add({"step": step, "eval": metrics})
    del model
    accelerator.wait_for_everyone()


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)

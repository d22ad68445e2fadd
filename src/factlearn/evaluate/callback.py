"""A transformers TrainerCallback: factlearn's evaluation every N steps of anyone's HF Trainer or TRL run.

For models trained outside factlearn: the same engine, tasks and results files as `factlearn eval`
(`<out_dir>/step-<N>/results.json` + `records/`), and the metrics go through the trainer's own
`trainer.log`, so its report_to loggers (TensorBoard, W&B, MLflow, ...) and `state.log_history` get
them as `factlearn/<task>/<metric>`. Stage rule: imports only data and evaluate.

    cb = FactlearnEvalCallback(world=None, tasks=["Eval_QA"], every_n_steps=50, out_dir="runs/cb")
    cb.attach(trainer)          # trainer.add_callback(cb) + the trainer whose loggers it uses
    trainer.train()
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from transformers import TrainerCallback

from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED
from factlearn.errors import UserError
from factlearn.evaluate.engine import evaluate, resolve_data
from factlearn.evaluate.results import save_results
from factlearn.evaluate.tasks import get_tasks


def check_world_has_tasks(data: Mapping[str, Any], tasks: Sequence[str]) -> None:
    """Every asked-for task's config must be in the world: a clear UserError naming the first missing one."""
    for task in get_tasks(list(tasks)):
        if task.config not in data:
            raise UserError(f"task {task.name} needs the {task.config} config, which this world lacks (it has "
                            f"{', '.join(map(str, data)) or 'none'}); drop {task.name} from tasks or use a world "
                            "that has it")


class FactlearnEvalCallback(TrainerCallback):
    """Evaluate `tasks` of `world` every `every_n_steps` optimizer steps (and at the end of training).

    `world`: a loaded world (a mapping config -> rows, e.g. factlearn.api.load_world(...).data) or a
    load_cca source (None = the built-in generator, a facts file, "hub", a folder). Bad input (unknown
    task, a task the world lacks, every_n_steps < 1) raises UserError here, before training.
    """

    def __init__(self, world=None, tasks: Sequence[str] | str | None = ("Eval_QA",), every_n_steps: int = 100,
                 out_dir: str | Path = "runs/factlearn-callback", limit: int | None = None, num_fewshot: int = 5,
                 batch_size: int = 16, tokenizer=None, n_countries: int = CANONICAL_N_COUNTRIES, seed: int = CANONICAL_WORLD_SEED):
        if every_n_steps < 1:
            raise UserError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.tasks = [t.name for t in get_tasks(tasks)]
        world = getattr(world, "data", world)  # an api.World (without importing the later facade)
        self.data = resolve_data(world, [t.config for t in get_tasks(self.tasks)] + ["Facts"], n_countries, seed)
        check_world_has_tasks(self.data, self.tasks)
        self.every_n_steps, self.out_dir, self.limit = every_n_steps, Path(out_dir), limit
        self.num_fewshot, self.batch_size, self.tokenizer = num_fewshot, batch_size, tokenizer
        self.trainer = None
        self.evaluated_steps: list[int] = []

    def attach(self, trainer) -> "FactlearnEvalCallback":
        """Add to `trainer` and log through its `trainer.log` (its report_to loggers and log_history)."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step % self.every_n_steps == 0:
            self._evaluate(state, model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step not in self.evaluated_steps:
            self._evaluate(state, model, processing_class)

    def _evaluate(self, state, model, processing_class) -> None:
        step = state.global_step
        self.evaluated_steps.append(step)
        if not state.is_world_process_zero:
            return
        tokenizer = self.tokenizer or getattr(processing_class, "tokenizer", None) or processing_class
        if tokenizer is None:
            raise UserError("FactlearnEvalCallback needs a tokenizer: pass tokenizer=... or give the trainer "
                            "processing_class=tokenizer")
        result = evaluate(model, tokenizer, tasks=self.tasks, data=self.data, num_fewshot=self.num_fewshot,
                          limit=self.limit, batch_size=self.batch_size)
        save_results(result, self.out_dir / f"step-{step}", {"step": step, "source": "FactlearnEvalCallback"})
        metrics = {f"factlearn/{task}/{m}": float(v) for task, ms in result.metrics.items() for m, v in ms.items()}
        if self.trainer is not None:
            self.trainer.log(metrics)
        else:  # not attached: still in the trainer's history, just not sent to its loggers
            state.log_history.append({**metrics, "step": step})

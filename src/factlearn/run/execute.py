"""What each kind of cell does. Each step calls the stage package that owns the work (train,
evaluate, analyze) and returns a JSON-able result; files go into the cell's folder.

One model stays loaded between consecutive cells that read the same model (eval, probe and ablate
of one trained model run back to back), since loading costs seconds per cell on CPU.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

from factlearn.atomic import atomic_write_jsonl, atomic_write_text
from factlearn.config import to_dict
from factlearn.run.cells import Cell, CellStore
from factlearn.run.grid import GridPlan
from factlearn.run.training import TrackingTarget, cell_run_name, with_first_pass
from factlearn.tracking import check_report_to

TRAINED_SUBDIR = "model"
CURVE_LOG = "curve_log.jsonl"  # the whole training history of the cell's model (both passes with forgetting)


def write_curve_log(own_log: Path, out: Path, first_pass_log: Path | None) -> Path:
    """The first pass's log lines followed by this run's, so the curve shows loss before and after the reset.

    The second run's step counter restarts at 0; factlearn.analyze.curves lays restarted steps end to end.
    """
    text = first_pass_log.read_text() if first_pass_log is not None and first_pass_log.is_file() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    return atomic_write_text(out, text + own_log.read_text())


def read_summary(trained: Path) -> dict:
    """A finished training folder's train_summary.json ({} when the trainer wrote none)."""
    path = trained / "train_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


class CellExecutor:
    """Runs cells of one GridPlan; `log` receives short status lines for the progress display."""

    def __init__(self, plan: GridPlan, store: CellStore, log: Callable[[str], None] = lambda _: None,
                 on_train_progress: Callable[[int, int], None] | None = None, train_gpus: list[str] | None = None,
                 train_processes: int = 0):
        self.plan = plan
        self.store = store
        self.log = log
        self.train_gpus = train_gpus or []  # every GPU of the run: what a sharded training cell spreads over
        self.train_processes = train_processes  # of a sharded training cell (workers.Placement); 0 = unsharded
        self.on_train_progress = on_train_progress  # also told (steps done, total): a worker's parent
        self._loaded: tuple[str, Any] | None = None  # (model location, (model, tokenizer))
        self._live: tuple[int, int] | None = None  # (optimizer steps done, total) of the running train cell

    def live_fraction(self) -> tuple[int, int] | None:
        """(steps done, total steps) of the training in progress, as the trainer last reported it."""
        return self._live

    def _on_train_progress(self, done: int, total: int) -> None:
        self._live = (done, total)
        if self.on_train_progress is not None:
            self.on_train_progress(done, total)

    def run(self, cell: Cell, folder: Path) -> dict:
        return getattr(self, f"_run_{cell.kind}")(cell, folder)

    def close(self) -> None:
        self._loaded = None

    # -- models ---------------------------------------------------------------------------------
    def model_location(self, model_id: dict) -> str:
        """A base model's path, or the saved model/adapter folder of a finished train cell."""
        if "trained" in model_id:
            return str(self.store.path(model_id["trained"]) / TRAINED_SUBDIR)
        return model_id["path"]

    def load(self, model_id: dict):
        """(model, tokenizer), reusing the one already in memory when it is the same model."""
        from factlearn.models import load_model

        location = self.model_location(model_id)
        if self._loaded is None or self._loaded[0] != location:
            self._loaded = None  # free the previous model before loading the next
            self._loaded = (location, load_model(location, device=self.plan.cfg.device))
        return self._loaded[1]

    def tracking(self, cell: Cell) -> TrackingTarget | None:
        """Where a training cell's trackers log (the run's report_to), or None without trackers."""
        names = check_report_to(self.plan.cfg.report_to)
        if not names:
            return None
        return TrackingTarget(tuple(names), str(self.store.run_dir / "tracking"), cell_run_name(cell.title, cell.key))

    def _train_here(self, train_cfg, folder: Path, on_budget=None) -> Path:
        """Train in this process. The trainer's own tqdm bar would fight the run's progress display; keep it
        (and any warnings) in the cell folder instead. tqdm picks up sys.stderr when the bar is created."""
        from factlearn.train import train

        try:
            with open(folder / "train_stderr.txt", "w") as err, contextlib.redirect_stderr(err):
                return Path(train(train_cfg, on_progress=self._on_train_progress, on_budget=on_budget))
        finally:
            self._live = None

    # -- steps ----------------------------------------------------------------------------------
    def _run_train(self, cell: Cell, folder: Path) -> dict:
        first_pass = self.store.path(cell.spec["first_pass"]) / TRAINED_SUBDIR if "first_pass" in cell.spec else None
        # active forgetting continues from the plain run's weights, a finished cell by now
        train_cfg = with_first_pass(self.plan.train_cfgs[cell.key], save=str(folder / TRAINED_SUBDIR),
                                    first_pass=None if first_pass is None else str(first_pass),
                                    tracking=self.tracking(cell))
        self._loaded = None  # training needs the memory
        out = self._train_sharded(train_cfg, folder) if self.train_processes else self._train_here(train_cfg, folder)
        write_curve_log(out / "train_log.jsonl", folder / CURVE_LOG,
                        first_pass / "train_log.jsonl" if first_pass is not None else None)
        return {"summary": read_summary(out), "config": to_dict(train_cfg)}

    def _run_curve(self, cell: Cell, folder: Path) -> dict:
        """A learning curve (run/curves.py): train at a constant rate after warm-up and evaluate the curve
        tasks at the end of each budget's epoch; each point's records go to points/epoch_<N>.jsonl."""
        from factlearn.evaluate import evaluate

        cfg, spec = self.plan.cfg, cell.spec["curve"]["eval"]
        points: list[dict] = []
        (folder / "points").mkdir()

        def on_budget(model, tokenizer, epochs: int) -> dict:
            result = evaluate(model, tokenizer, tasks=spec["tasks"], data=self.plan.world.data,
                              num_fewshot=spec["num_fewshot"], limit=spec["limit"], batch_size=cfg.eval_batch_size,
                              shots=spec["shots"], level=cfg.ci_level)
            atomic_write_jsonl(folder / "points" / f"epoch_{epochs}.jsonl",
                               [{"task": task, **rec} for task, recs in result.records.items() for rec in recs])
            points.append({"epochs": epochs, "metrics": result.metrics,
                           "items": {task: len(recs) for task, recs in result.records.items()}})
            return result.metrics  # to the train log and the trackers

        train_cfg = with_first_pass(self.plan.train_cfgs[cell.key], save=str(folder / TRAINED_SUBDIR), first_pass=None,
                                    tracking=self.tracking(cell))
        self._loaded = None  # training needs the memory
        out = self._train_here(train_cfg, folder, on_budget=on_budget)
        for weights in out.glob("*.safetensors"):  # a curve keeps its points, not its weights (~0.5 GB each)
            weights.unlink()
        return {"points": points, "summary": read_summary(out), "rows_per_fact": cell.labels.get("rows_per_fact")}

    def _train_sharded(self, train_cfg, folder: Path) -> Path:
        """The cell trained by FSDP2 ranks over every device of the run (run/sharded.py)."""
        from factlearn.run.sharded import train_sharded
        from factlearn.processes import cpu_cores

        self.log(f"training sharded over {self.train_processes} processes")
        return train_sharded(train_cfg, folder, self.train_processes, self.train_gpus, cpu_cores())

    def _run_eval(self, cell: Cell, folder: Path) -> dict:
        from factlearn.evaluate import evaluate

        cfg = self.plan.cfg
        model, tokenizer = self.load(cell.spec["model"])
        result = evaluate(model, tokenizer, tasks=list(cfg.tasks), data=self.plan.world.data,
                          num_fewshot=cfg.num_fewshot, limit={t: cfg.limit_for(t) for t in cfg.tasks},
                          batch_size=cfg.eval_batch_size, shots=cfg.shots, level=cfg.ci_level)
        atomic_write_jsonl(folder / "records.jsonl",
                           [{"task": task, **rec} for task, recs in result.records.items() for rec in recs])
        counts = {task: len(recs) for task, recs in result.records.items()}
        return {"metrics": result.metrics, "items": counts, "contamination": result.contamination,
                "shots": cfg.shots}

    def _run_control(self, cell: Cell, folder: Path) -> dict:
        """The base model on the real-capitals control: its successes, n and chance per task."""
        from factlearn.evaluate import evaluate
        from factlearn.evaluate.control import control_counts, control_data

        spec = cell.spec["control"]
        data = control_data()
        model, tokenizer = self.load(cell.spec["model"])
        result = evaluate(model, tokenizer, tasks=spec["tasks"], data=data, num_fewshot=spec["num_fewshot"],
                          batch_size=self.plan.cfg.eval_batch_size, shots=spec["shots"])
        atomic_write_jsonl(folder / "records.jsonl",
                           [{"task": task, **rec} for task, recs in result.records.items() for rec in recs])
        # counts, not the decision: capability at the run's ci_level is decided at report time
        return {"metrics": result.metrics, "counts": control_counts(result.metrics, result.records, data)}

    def _run_probe(self, cell: Cell, folder: Path) -> dict:
        from factlearn.analyze.probes import probe_facts

        model, tokenizer = self.load(cell.spec["model"])
        result = probe_facts(model, tokenizer, self.plan.world.data["Facts"], templates=cell.spec["probe"]["templates"],
                             batch_size=self.plan.cfg.eval_batch_size, label=cell.labels["condition"],
                             model_name=cell.labels["model"], corpus=cell.labels["corpus"] or "none (base)")
        return result.to_dict()

    def _run_ablate(self, cell: Cell, folder: Path) -> dict:
        from factlearn.analyze.ablation import delta_switch, run_ablation
        from factlearn.analyze.ablation_plot import plot_ablation
        from factlearn.models import load_model

        cfg = self.plan.cfg
        spec = cell.spec["ablation"]
        model, tokenizer = self.load(cell.spec["model"])
        base_model = None
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            base_model, _ = load_model(cell.spec["base"]["path"], device=cfg.device)
        switch = delta_switch(model, base_model)
        del base_model  # FullDelta keeps its own copies of the changed tensors
        result = run_ablation(model, tokenizer, switch, data=self.plan.world.data, tasks=spec["tasks"],
                              limit=spec["limit"], ks=spec["ks"], num_fewshot=spec["num_fewshot"],
                              batch_size=cfg.eval_batch_size, model_name=cell.labels["model"],
                              base_name=cell.spec["base"]["spec"], corpus=cell.labels["corpus"], progress=self.log,
                              refine_budget=spec.get("refine_budget"))
        plot_ablation(result, folder / "ablation.png")
        return result.to_dict()

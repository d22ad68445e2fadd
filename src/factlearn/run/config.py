"""The schema of a `factlearn run`: which models, seeds, corpora, methods, tasks and analyses.

A run config only *chooses* the grid; how to train is delegated to named train configs (one per
method), so that the run profile `paper` can point at the original recipe and `default` at a
CPU-sized one without copying their keys here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from factlearn.data.schema import CLOZE_OF, CORPUS_CONFIGS, EVAL_CONFIGS, KNOWLEDGE_CONFIGS, TABLE_ORDER
from factlearn.errors import UserError
from factlearn.run.slurm_options import SlurmOptions, check_executor
from factlearn.stats import CI_LEVEL, PARITY_MARGIN, check_level
from factlearn.train.config import METHODS, SHARDINGS, TrainConfig

ANALYSES = ("probe", "ablate", "curves")


@dataclass
class Recipe:
    """How one finetuning method is trained: a train config (name or YAML path) plus overrides."""

    config: str = "cpu_small"
    overrides: list[str] = field(default_factory=list)


@dataclass
class CorpusOverrides:
    """Extra train overrides per corpus, after the recipe's (one field per CCA corpus config). A dataclass,
    not a dict, so that a profile can clear a default with `Corpus_referencing: []` (omegaconf merges dicts
    key by key, so `{}` would keep it)."""

    Corpus_narrative: list[str] = field(default_factory=list)
    Corpus_referencing: list[str] = field(default_factory=lambda: ["epochs=1"])

    def of(self, corpus: str) -> list[str]:
        return list(getattr(self, corpus))


@dataclass
class ForgettingOptions:
    """Active forgetting: train an extra model on `corpora` with the upper layers reset midway."""

    enabled: bool = True
    corpora: list[str] = field(default_factory=lambda: ["Corpus_narrative"])
    methods: list[str] = field(default_factory=lambda: list(METHODS))  # the original: LoRA only
    # Layers >= start_layer are reset to pretrained; None -> a third (train.config.default_forget_start_layer).
    start_layer: Optional[int] = None
    # Also train narrative+continued: the same two passes without the reset (F4's budget-matched control).
    # Off in `default` (its 15-minute budget): there F4 says reset and extra training are confounded.
    continued: bool = False


@dataclass
class AblationOptions:
    """Layer-wise ablation: remove the finetuning delta from the first/last k layers, re-evaluate."""

    corpora: list[str] = field(default_factory=lambda: ["Corpus_narrative", "Corpus_referencing"])
    ks: list[int] = field(default_factory=list)  # empty -> about `points` evenly spaced k from 0 to all layers
    points: int = 3
    tasks: list[str] = field(default_factory=lambda: ["Eval_QA", "Eval_multiple_choice_cloze"])
    limit: Optional[int] = 8  # items per task for each k (None -> all)
    refine_budget: int = 4  # extra evaluations that narrow k*'s interval until its third is decided (>= 1)


# The curve task set: the knowledge axis (QA, MC cloze) and every reasoning form, generated and likelihood.
CURVE_TASKS = ("Eval_QA", "Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze", "Eval_indirect_reasoning",
               "Eval_indirect_reasoning_cloze", "Eval_reverse", "Eval_reverse_cloze")


@dataclass
class CurveOptions:
    """Learning curves (run/curves.py): each training condition trained once more, at a constant learning
    rate after the recipe's warm-up, and evaluated at the end of each budget's epoch. Only then is a point
    at N epochs the model a separate N-epoch run would give (a decaying rate would not be)."""

    budgets: Optional[list[int]] = None  # epochs (of each condition's own corpus) to evaluate at; null = no curves
    tasks: list[str] = field(default_factory=lambda: list(CURVE_TASKS))
    limit: Optional[int] = None  # items per curve task at each point (None -> all)
    # A curve retrains its condition, so on CPU the powered profile curves one seed and keeps its three
    # seeds for the single-budget verdicts.
    seeds: Optional[list[int]] = None  # seeds that get a curve (null = every seed of the run)

    def check(self, run_seeds: list[int]) -> None:
        if self.budgets is None:
            return
        if self.seeds is not None:
            if not self.seeds:
                raise UserError("curve.seeds is empty; list the seeds to curve, e.g. curve.seeds=[1], "
                                "or curve.seeds=null for every seed")
            if len(set(self.seeds)) != len(self.seeds):
                raise UserError(f"curve.seeds {list(self.seeds)} has duplicates; list each seed once")
            stray = [s for s in self.seeds if s not in run_seeds]
            if stray:
                raise UserError(f"curve.seeds {stray} are not among the run's seeds {list(run_seeds)}; "
                                "pick curve seeds from seeds")
        b = list(self.budgets)
        if not b:
            raise UserError("curve.budgets is empty; list epochs to evaluate at, e.g. curve.budgets=[1,2,3,5], "
                            "or curve.budgets=null for no curves")
        if any(x < 1 for x in b):
            raise UserError(f"curve.budgets must be epochs >= 1, got {b}")
        if len(set(b)) != len(b):
            raise UserError(f"curve.budgets {b} has duplicates; list each budget once")
        if b != sorted(b):
            raise UserError(f"curve.budgets {b} is unsorted; list the budgets in increasing order, e.g. {sorted(b)}")
        _need_subset("curve.tasks", self.tasks, EVAL_CONFIGS)
        if not any(t in self.tasks for t in KNOWLEDGE_CONFIGS):
            raise UserError(f"curve.tasks {list(self.tasks)} has no knowledge measure; add "
                            f"{' or '.join(KNOWLEDGE_CONFIGS)} (the x axis of reasoning vs knowledge)")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"curve.limit must be >= 1 or null (all items), got {self.limit}")


@dataclass
class HardwareOptions:
    """The machine `factlearn run --plan` costs the grid for; null keys mean this machine. Planning only:
    a run executes on the machine it is on (choose its GPUs with `devices`, its processes with `workers`)."""

    gpus: Optional[int] = None  # number of GPUs
    gpu_memory_gb: Optional[float] = None  # memory of one GPU, in GB (1e9 bytes), e.g. 80
    sharding: str = "none"  # none: each cell on one device; fsdp2: a training cell sharded over all GPUs
    tflops: Optional[float] = None  # effective TFLOP/s of one device (None -> estimate.py's rate)


@dataclass
class RunConfig:
    """One experiment grid. Every cell's cache key derives from the parts of this that it uses.

    The defaults are the `default` profile's values (configs/run/default.yaml; a test keeps them equal)."""

    models: list[str] = field(default_factory=lambda: ["smollm2-135m"])
    seeds: list[int] = field(default_factory=lambda: [1])
    corpora: list[str] = field(default_factory=lambda: list(CORPUS_CONFIGS))
    methods: list[str] = field(default_factory=lambda: ["full"])
    recipes: dict[str, Recipe] = field(default_factory=lambda: {
        "full": Recipe("cpu_small", ["epochs=5"]), "lora": Recipe("cpu_small", ["method=lora", "lr=1.0e-3"])})
    # Extra train overrides per corpus, after the recipe's: e.g. fewer epochs on the 5x larger
    # referencing corpus so both corpora get a similar number of training tokens on a CPU budget.
    corpus_overrides: CorpusOverrides = field(default_factory=CorpusOverrides)
    forgetting: ForgettingOptions = field(default_factory=ForgettingOptions)
    # The paper's seven tasks, in its Table 1 order (any of data.schema.EVAL_CONFIGS may be chosen).
    tasks: list[str] = field(default_factory=lambda: list(TABLE_ORDER) + list(CLOZE_OF))
    num_fewshot: int = 5
    eval_limit: Optional[int] = 12  # items per task (None -> all)
    eval_limit_tasks: Optional[list[str]] = field(default_factory=lambda: [  # tasks eval_limit applies to (None -> all)
        "Eval_multiple_choice", "Eval_reverse", "Eval_2hop_reasoning", "Eval_2hop_reasoning_raw",
        "Eval_animal_commonsense"])
    shots: str = "same-split"  # few-shot pool: same-split (the original) or other-facts
    control: bool = True  # evaluate every base model on the real-capitals capability control
    ci_level: float = CI_LEVEL  # confidence of every interval, test and verdict (applied at report time)
    # above this share of wrong-form generated answers a task is marked for a condition (report/forms.py)
    wrong_form_share: float = 0.25
    parity_margin: float = PARITY_MARGIN  # F3/F5 compare generalisation only where knowledge levels are this close
    eval_batch_size: int = 16
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    ablation: AblationOptions = field(default_factory=AblationOptions)
    curve: CurveOptions = field(default_factory=CurveOptions)
    # The world: the built-in generator (n_countries, world_seed) unless data_source names a CCA copy.
    n_countries: int = 8
    world_seed: int = 0
    data_source: Optional[str] = None
    device: str = "auto"
    workers: Optional[int] = None  # cells run at once, each in its own process; null = one per device, else 1
    devices: Any = None  # GPUs that run cells, one cell per GPU at a time: null (just `device`), all, or [0,1,...]
    # Other cells wait while a sharded training cell runs (run/sharded.py).
    train_sharding: str = "none"  # fsdp2: a training cell takes every GPU of devices (or train_processes), sharded
    train_processes: Optional[int] = None  # processes of a sharded training cell; null = one per GPU of devices
    hardware: HardwareOptions = field(default_factory=HardwareOptions)
    executor: str = "local"  # local: this machine (workers, devices); slurm: each cell a Slurm job (run/slurm.py)
    slurm: SlurmOptions = field(default_factory=SlurmOptions)  # what each job asks for; executor=slurm only
    out: Optional[str] = None  # run folder; None -> runs/<profile>
    report_to: list[str] = field(default_factory=lambda: ["none"])  # tensorboard, wandb, mlflow, trackio: a tracker run per training cell, one for the report
    # Not a key of the config: each (method, corpus)'s validated TrainConfig, resolved once by
    # load_run_config from recipes and corpus_overrides (run/recipes.py).
    train_configs: dict = field(default_factory=dict, repr=False, compare=False,
                                metadata={"omegaconf_ignore": True})

    def train_config(self, method: str, corpus: str) -> TrainConfig:
        """The resolved recipe of `method` on `corpus` (shared: copy before changing it)."""
        if not self.train_configs:
            raise RuntimeError("RunConfig.train_configs is empty: load run configs with load_run_config")
        return self.train_configs[method][corpus]

    def limit_for(self, task: str) -> Optional[int]:
        """The item limit of one task: eval_limit, unless eval_limit_tasks leaves the task whole."""
        if self.eval_limit_tasks is not None and task not in self.eval_limit_tasks:
            return None
        return self.eval_limit

    def check(self) -> None:
        """Value rules omegaconf cannot express; each message says how to fix it."""
        _need_subset("corpora", self.corpora, CORPUS_CONFIGS)
        _need_subset("methods", self.methods, METHODS)
        _need_subset("tasks", self.tasks, EVAL_CONFIGS)
        if self.eval_limit_tasks is not None:
            _need_subset("eval_limit_tasks", self.eval_limit_tasks, EVAL_CONFIGS, allow_empty=True)
        from factlearn.evaluate.forms import check_wrong_form_share

        check_wrong_form_share(self.wrong_form_share)
        check_level(self.ci_level, "ci_level")
        from factlearn.analyze.refine import check_refine_budget
        from factlearn.evaluate.fewshot import check_shots
        from factlearn.stats import check_parity_margin

        check_parity_margin(self.parity_margin)
        check_refine_budget(self.ablation.refine_budget)
        check_shots(self.shots)
        _need_subset("analyses", self.analyses, ANALYSES, allow_empty=True)
        _need_subset("forgetting.corpora", self.forgetting.corpora, CORPUS_CONFIGS, allow_empty=True)
        _need_subset("forgetting.methods", self.forgetting.methods, METHODS, allow_empty=True)
        if self.forgetting.enabled:
            missing = [c for c in self.forgetting.corpora if c not in self.corpora]
            if missing:
                raise UserError(f"forgetting.corpora {missing} are not in corpora {self.corpora}; forgetting "
                                "continues from the plain run on the same corpus, so add them to corpora")
        _need_subset("ablation.corpora", self.ablation.corpora, CORPUS_CONFIGS, allow_empty=True)
        _need_subset("ablation.tasks", self.ablation.tasks, EVAL_CONFIGS)
        if not self.models:
            raise UserError("models is empty; give at least one, e.g. models=[smollm2-135m]")
        if not self.seeds:
            raise UserError("seeds is empty; give at least one, e.g. seeds=[1]")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds {self.seeds} has duplicates; list each seed once")
        for method in self.methods:
            if method not in self.recipes:
                raise UserError(f"method '{method}' has no recipe; add recipes.{method}.config=<train config>")
        if self.num_fewshot < 0:
            raise UserError(f"num_fewshot must be >= 0, got {self.num_fewshot}")
        for key, value in (("eval_limit", self.eval_limit), ("ablation.limit", self.ablation.limit)):
            if value is not None and value < 1:
                raise UserError(f"{key} must be >= 1 or null (all items), got {value}")
        if self.eval_batch_size < 1:
            raise UserError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.n_countries < 2:
            raise UserError(f"n_countries must be >= 2 (multiple choice needs wrong answers), got {self.n_countries}")
        if self.forgetting.start_layer is not None and self.forgetting.start_layer < 1:
            raise UserError(f"forgetting.start_layer must be >= 1 (layer 0 is always kept), got {self.forgetting.start_layer}")
        if any(k < 0 for k in self.ablation.ks):
            raise UserError(f"ablation.ks must be >= 0, got {self.ablation.ks}")
        if self.ablation.points < 2:
            raise UserError(f"ablation.points must be >= 2, got {self.ablation.points}")
        self.curve.check(list(self.seeds))
        from factlearn.tracking import check_installed, check_report_to

        check_installed(check_report_to(self.report_to))
        self._check_parallel()

    def _check_parallel(self) -> None:
        """workers, devices and hardware: shapes and ranges (that a device exists is checked at run time)."""
        check_executor(self)
        if self.workers is not None and self.workers < 1:
            raise UserError(f"workers must be >= 1 (processes running cells at once), got {self.workers}")
        devices = self.devices
        if devices is not None and devices != "all":
            if not isinstance(devices, list) or not devices or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
                raise UserError(f"devices must be all, or a list of GPU indexes such as [0,1], got {devices}")
            if len(set(devices)) != len(devices):
                raise UserError(f"devices {devices} has duplicates; list each GPU once")
        if devices is not None and self.device not in ("auto", "cuda"):
            raise UserError(f"devices={devices} runs cells on GPUs but device={self.device}; set device=auto "
                            "or drop devices (workers=N runs cells in parallel on the CPU)")
        self._check_train_sharding()
        hw = self.hardware
        if hw.sharding not in SHARDINGS:
            raise UserError(f"hardware.sharding must be one of {', '.join(SHARDINGS)}, got {hw.sharding}")
        for key, value in (("hardware.gpus", hw.gpus), ("hardware.gpu_memory_gb", hw.gpu_memory_gb),
                           ("hardware.tflops", hw.tflops)):
            if value is not None and value <= 0:
                raise UserError(f"{key} must be > 0 or null (this machine), got {value}")


    def _check_train_sharding(self) -> None:
        if self.train_sharding not in SHARDINGS:
            raise UserError(f"train_sharding must be one of {', '.join(SHARDINGS)}, got {self.train_sharding}")
        if self.train_sharding == "none":
            if self.train_processes is not None:
                raise UserError("train_processes is the process count of a sharded training cell; add "
                                "train_sharding=fsdp2 or drop train_processes")
            return
        if self.train_processes is None and self.devices is None and self.executor != "slurm":
            raise UserError("train_sharding=fsdp2 needs its processes: train_processes=N on the CPU, or devices=all "
                            "(or a list) for one process per GPU")
        if self.train_processes is not None and self.train_processes < 2:
            raise UserError(f"train_sharding=fsdp2 shards over at least 2 processes, got train_processes="
                            f"{self.train_processes}; use train_processes=2 or more, or drop train_sharding")


def _need_subset(key: str, values: list[str], allowed: tuple[str, ...], allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        raise UserError(f"{key} is empty; choose from: {', '.join(allowed)}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UserError(f"{key} has unknown value(s) {bad}; choose from: {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise UserError(f"{key} {values} has duplicates; list each once")


def load_run_config(profile_or_path: str | None = "default", overrides: list[str] | None = None) -> RunConfig:
    """A run profile (`default`, `paper`) or YAML path, with `key=value` overrides, validated."""
    from factlearn.config import load_config
    from factlearn.run.recipes import resolve_recipes

    cfg = load_config(RunConfig, "run", profile_or_path or "default", overrides or [])
    cfg.train_configs = resolve_recipes(cfg)
    return cfg

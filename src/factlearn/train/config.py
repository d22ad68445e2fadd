"""The training config: one dataclass schema, shipped YAMLs, `key=value` overrides.

Keys follow the original's names where it had them (`model`, `subset`, `save`, `lr`, `epochs`, ...).
`check()` holds the value rules that need no model; rules that need the model (the forgetting layer
must exist) are checked by `check_against_model` right after loading, still before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from factlearn.data.world import CANONICAL_N_COUNTRIES, CANONICAL_WORLD_SEED
from factlearn.errors import UserError
from factlearn.config import load_config

METHODS = ("full", "lora")
SHARDINGS = ("none", "fsdp2")
DTYPES = ("auto", "fp32", "float32", "bf16", "bfloat16", "fp16", "float16")
# transformers schedules that take (warmup, total) and nothing else (train/schedule.py builds them);
# the others need extra knobs we do not expose.
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "polynomial", "inverse_sqrt")
LORA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def default_forget_start_layer(num_layers: int) -> int:
    """The first layer active forgetting resets when none is given: layers [n // 3, n) are reset.

    The paper resets the upper two thirds (`forget_start_layer=10` of Llama-3-8B's 32 layers), so the
    boundary rounds down. This is the single home of the rule; the grid and error messages use it.
    """
    return max(1, num_layers // 3)


@dataclass
class LoraSection:
    """peft LoraConfig fields. Defaults are the original's: rsLoRA r 64, alpha 16, every projection."""

    r: int = 64
    alpha: float = 16.0
    dropout: float = 0.0
    use_rslora: bool = True
    target_modules: list[str] = field(default_factory=lambda: list(LORA_PROJECTIONS))


@dataclass
class ForgetSection:
    """Active forgetting: reset every decoder layer with index >= start_layer to its pretrained value.

    Two forms: `from_model` (the original's two runs: the first run's output folder; this run is the
    second pass) or `at_epoch` (one command: reset after that many epochs, then train the rest).
    Either way the pass after the reset starts a fresh AdamW state and a fresh warmup + decay
    schedule (over the remaining epochs), as the original's second run did.
    """

    start_layer: Optional[int] = None  # null = no forgetting
    at_epoch: Optional[int] = None
    from_model: Optional[str] = None


@dataclass
class FsdpSection:
    """Options of sharding=fsdp2 (train/fsdp.py)."""

    cpu_offload: bool = False  # keep parameter shards, gradients and the AdamW step on CPU (GPU runs only)


@dataclass
class TrainConfig:
    """Everything one finetuning run needs. `batch_size` is per process (like HF's per-device size)."""

    model: str = "smollm2-135m"
    subset: str = "Corpus_narrative"  # a CCA corpus config name, or a .jsonl/.parquet/dataset folder with `text`
    data_source: Optional[str] = None  # where CCA comes from: null = built-in generator, "hub", or a folder
    n_countries: int = CANONICAL_N_COUNTRIES  # size of the generated world (ignored for the hub / local files)
    data_seed: int = CANONICAL_WORLD_SEED  # seed of the generated world; kept apart from `seed` so seeds share one world
    seed: int = 1
    method: str = "full"
    lr: float = 1.5e-5
    epochs: int = 5
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    # A snapshot along a run equals a shorter run only if warm-up does not scale with the run length
    # (ceil(total * warmup_ratio) does): fix it here, with a constant schedule after it, for curve points.
    warmup_steps: Optional[int] = None  # warm-up optimizer steps of every phase whatever its length (overrides warmup_ratio); null = warmup_ratio
    max_grad_norm: float = 1.0  # 0 = no clipping
    max_length: int = 1024
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"  # any transformers SchedulerType name
    gradient_checkpointing: bool = False
    # Opt-in: less varied batches raised the final loss of a short benchmark run, and were not faster.
    bucket_by_length: bool = False  # group rows of similar length into a batch (less padding, less varied batches)
    # Same loss as padding (checked once per model); skips the padding's compute (benchmarks/README.md).
    pack_rows: bool = True  # lay a micro-batch's rows end to end (block-diagonal attention) when cheaper than padding
    dtype: str = "auto"  # compute precision; bf16/fp16 = fp32 master weights + autocast (like HF bf16=True)
    device: str = "auto"  # auto, cpu, cuda; under `accelerate launch` the launcher decides
    sharding: str = "none"  # none (one full copy per process, DDP) or fsdp2 (weights, gradients, AdamW state sharded; torchrun)
    fsdp: FsdpSection = field(default_factory=FsdpSection)
    save: str = "runs/finetune"
    lora: LoraSection = field(default_factory=LoraSection)
    forget: ForgetSection = field(default_factory=ForgetSection)
    checkpoint_every: int = 0  # steps; 0 = no checkpoints (no --resume)
    keep_checkpoints: int = 2  # newest checkpoints kept while training; all are dropped once the run ends
    log_every: int = 1  # steps between train_log.jsonl lines
    eval_every: int = 0  # steps between eval-in-the-loop runs; 0 = off
    eval_tasks: list[str] = field(default_factory=lambda: ["Eval_multiple_choice"])
    eval_limit: Optional[int] = None
    curve_epochs: list[int] = field(default_factory=list)  # epochs (from this run's start) after which train(on_budget=...) sees the model; [] = none
    report_to: list[str] = field(default_factory=lambda: ["none"])  # tensorboard, wandb, mlflow, trackio (factlearn/tracking.py)
    tracking_dir: Optional[str] = None  # where trackers write files; null = <save's parent>/tracking
    run_name: Optional[str] = None  # the trackers' name for this run; null = the save folder's name
    overwrite: bool = False

    def check(self) -> None:
        """Value rules that need no model; each failure is a one-line UserError with the fix."""
        if self.method not in METHODS:
            raise UserError(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr}")
        for key in ("epochs", "batch_size", "grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("checkpoint_every", "eval_every", "weight_decay", "max_grad_norm"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise UserError(f"warmup_steps must be >= 0 (optimizer steps of warm-up per phase), got {self.warmup_steps}; "
                            "pass a count, or warmup_steps=null to use warmup_ratio")
        if self.max_length < 2:
            raise UserError(f"max_length must be >= 2 tokens (one input, one target), got {self.max_length}")
        if self.n_countries < 1:
            raise UserError(f"n_countries must be >= 1, got {self.n_countries}")
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        if self.sharding not in SHARDINGS:
            raise UserError(f"sharding must be one of {', '.join(SHARDINGS)}, got '{self.sharding}'")
        if self.fsdp.cpu_offload and self.sharding != "fsdp2":
            raise UserError("fsdp.cpu_offload=true needs sharding=fsdp2; add sharding=fsdp2 or drop fsdp.cpu_offload")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise UserError(f"eval_limit must be >= 1 or null, got {self.eval_limit}")
        if not self.save.strip():
            raise UserError("save must name an output folder, e.g. save=runs/my-run")
        self._check_trackers()
        self._check_scheduler()
        self._check_lora()
        self._check_forget()
        self._check_curve_epochs()

    def _check_trackers(self) -> None:
        from factlearn.tracking import check_installed, check_report_to

        check_installed(check_report_to(self.report_to))

    def _check_scheduler(self) -> None:
        if self.lr_scheduler not in SCHEDULERS:
            raise UserError(f"lr_scheduler must be one of {', '.join(SCHEDULERS)}, got '{self.lr_scheduler}'")

    def _check_lora(self) -> None:
        lo = self.lora
        if lo.r < 1:
            raise UserError(f"lora.r (LoRA rank) must be >= 1, got {lo.r}")
        if not lo.alpha > 0:
            raise UserError(f"lora.alpha must be > 0, got {lo.alpha}")
        if not 0 <= lo.dropout < 1:
            raise UserError(f"lora.dropout must be in [0, 1), got {lo.dropout}")
        if not lo.target_modules:
            raise UserError("lora.target_modules is empty; name the modules to adapt, e.g. lora.target_modules=[q_proj,v_proj]")

    def _check_forget(self) -> None:
        fg = self.forget
        if fg.start_layer is None:
            if fg.at_epoch is not None or fg.from_model is not None:
                raise UserError("forget.at_epoch / forget.from_model need forget.start_layer (the first layer to reset)")
            return
        if fg.start_layer < 0:
            raise UserError(f"forget.start_layer must be >= 0, got {fg.start_layer}")
        if (fg.at_epoch is None) == (fg.from_model is None):
            raise UserError("forgetting needs exactly one of forget.at_epoch=N (one command: reset after epoch N) "
                            "or forget.from_model=FOLDER (second run after a first-pass output)")
        if fg.at_epoch is not None and not 1 <= fg.at_epoch < self.epochs:
            raise UserError(f"forget.at_epoch must be in [1, epochs-1] = [1, {self.epochs - 1}], got {fg.at_epoch}; "
                            "raise epochs so some training follows the reset")

    def _check_curve_epochs(self) -> None:
        points = list(self.curve_epochs)
        if not points:
            return
        given, fixed = (f"curve_epochs=[{','.join(str(e) for e in es)}]" for es in (points, sorted(set(points))))
        if min(points) < 1:
            raise UserError(f"{given} has {min(points)}, but a curve point comes after >= 1 epoch; drop {min(points)}")
        if len(set(points)) != len(points):
            raise UserError(f"{given} has duplicates; list each epoch once, e.g. {fixed}")
        if points != sorted(points):
            raise UserError(f"{given} is unsorted; list the epochs in increasing order, e.g. {fixed}")
        if points[-1] > self.epochs:
            raise UserError(f"{given} has {points[-1]}, which exceeds the training length epochs={self.epochs}; "
                            f"raise epochs to {points[-1]} or drop {points[-1]} from curve_epochs")

    def check_against_model(self, num_layers: int) -> None:
        """Rules that need the loaded model: the forgetting boundary must be one of its layers."""
        start = self.forget.start_layer
        if start is not None and not 0 <= start <= num_layers:  # = num_layers: reset nothing (narrative+continued)
            raise UserError(f"forget.start_layer={start} is outside 0..{num_layers} for this {num_layers}-layer model; "
                            f"pick a layer in that range ({num_layers} resets nothing; the paper resets the upper 2/3, "
                            f"from {default_forget_start_layer(num_layers)})")


def load_train_config(name_or_path: str | None = "cpu_small", overrides: list[str] | None = None) -> TrainConfig:
    """A shipped config name (cpu_small, finetune_full, finetune_lora) or a YAML path, plus overrides."""
    return load_config(TrainConfig, "train", name_or_path, overrides)

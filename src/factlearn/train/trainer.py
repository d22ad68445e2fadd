"""The training loop: plain PyTorch, read top to bottom, with accelerate for devices and processes.

One step = one global batch of rows (batch_size x grad_accum x processes), each row its own sequence:
packed end to end with restarting position ids when that is cheaper and the model keeps packed rows
apart (checked once), else right-padded to the longest row of its micro-batch. The loss is the summed
cross-entropy of every target token divided by the step's total target-token count, so the result
does not depend on how the rows are split into micro-batches or processes (1 process with batch b ==
2 with b/2).

Why not HF Trainer: it computes logits for every position including padding (a 49k-vocab
projection is a large share of a 135M model's compute), pads to a fixed multiple, and knows nothing
of active forgetting; this loop projects only the positions that carry loss.

Scale out: the same code runs under `accelerate launch` (DDP: a full copy per process) or, with
sharding=fsdp2, under torchrun with weights, gradients and AdamW state sharded (fsdp.py):
    accelerate launch --multi_gpu --num_processes 2 -m factlearn train cpu_small      # DDP (gloo on CPU)
    accelerate launch --num_processes 8 -m factlearn train finetune_full model=...    # 8 GPUs, DDP
    torchrun --nproc_per_node 8 -m factlearn train finetune_full sharding=fsdp2 model=...  # 8 GPUs, FSDP2
DeepSpeed and accelerate's FSDP plugin are refused with a one-line error (engine.check_engine).

The parts live next door: loss.py (the loss and the packing guard), engine.py (accelerator, model,
optimizer), output.py (the output folder), hooks.py (log, eval, progress), schedule.py (phases and
learning-rate schedules), checkpoint.py (resume), cpu_memory.py (CPU allocator tuning), fsdp.py
(sharding=fsdp2). Everything the loop does differently on shards is one small interface,
engine.Layout: engine.Replicated (one full copy per process) or fsdp.Sharded.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from factlearn.config import to_yaml
from factlearn.train import checkpoint as ckpt_io
from factlearn.train import forgetting, fsdp
from factlearn.train.config import TrainConfig
from factlearn.train.cpu_memory import keep_freed_memory_on_cpu
from factlearn.train.data import (collate, epoch_batches, load_corpus, pack, pack_pays_off, shard_step,
                                  steps_per_epoch, target_tokens, tokenize_rows)
from factlearn.train.engine import Layout, Replicated, check_engine, make_accelerator, make_optimizer
from factlearn.train.hooks import (EvalHook, ProgressCallback, RunLog, default_eval_hook, log_summary,
                                   open_train_trackers, progress_bar, run_eval)
from factlearn.train.loss import attention_costs, packing_matches_padding
from factlearn.train.output import (LIVE_LOG, check_same_config, discard_work_if_unresumable, prepare_output,
                                    save_output)
from factlearn.train.schedule import Phase, make_scheduler, plan_phases

__all__ = ["train", "TrainState", "LIVE_LOG", "make_layout", "BudgetCallback"]

# (model, tokenizer, epochs_done) -> metrics or None: a learning-curve point (cfg.curve_epochs), see _curve_point.
BudgetCallback = Callable[[Any, Any, int], Optional[dict]]  # metrics: {task: {metric: value}}, logged


def make_layout(cfg: TrainConfig, accelerator) -> Layout:
    """The model's layout over processes for `cfg.sharding`, its launch checked (before any work)."""
    check_engine(accelerator)
    if cfg.sharding == "fsdp2":
        fsdp.check_fsdp(cfg, accelerator)
        return fsdp.Sharded()
    return Replicated()


def train(cfg: TrainConfig, eval_hook: EvalHook | None = None, resume: bool = False,
          on_progress: ProgressCallback | None = None, on_budget: BudgetCallback | None = None) -> Path:
    """Finetune per `cfg`; return the finished output folder (HF model or peft adapter + logs).

    Collective under `accelerate launch`: every process calls it; only the main one writes files and
    calls `on_progress(optimizer_steps_done, total_optimizer_steps)`: once at the start (with the
    resumed step) and after every optimizer step. Everything that can be wrong with the input is
    checked before the first step.

    `on_budget(model, tokenizer, epochs_done)`: a learning-curve point, called on the main process
    after the last step of each epoch in `cfg.curve_epochs` (counted from this run's start, across
    forgetting phases; the point at forget.at_epoch comes before the reset), with the whole model in
    eval mode under torch.no_grad. With a constant learning rate after a fixed warm-up
    (cfg.warmup_steps) the point at N epochs is the model an N-epoch run with the same seed gives.
    The metrics it may return go to train_log.jsonl (an `eval` row) and the trackers.
    A resumed run does not repeat points of epochs finished before the resume. Every process passes
    an on_budget (only the main one calls it) or none does: a sharded run gathers the copy together.
    """
    from accelerate.utils import set_seed  # accelerate (and torch) load only when training starts

    accelerator = make_accelerator(cfg)
    layout = make_layout(cfg, accelerator)
    if accelerator.device.type == "cpu":
        keep_freed_memory_on_cpu()
    save = Path(cfg.save)
    resume_from = prepare_output(cfg, resume)
    accelerator.wait_for_everyone()  # every process judged the folder before the main one writes to it
    if resume_from is not None:
        check_same_config(resume_from, cfg)
    if cfg.eval_every and eval_hook is None:
        eval_hook = default_eval_hook(cfg)

    set_seed(cfg.seed)
    model, tokenizer = layout.build(cfg, accelerator)
    texts = load_corpus(cfg.subset, cfg.data_source, cfg.n_countries, cfg.data_seed)["text"]
    rows, truncated = tokenize_rows(texts, tokenizer, cfg.max_length)
    if truncated and accelerator.is_main_process:
        print(f"factlearn: {truncated} of {len(texts)} training rows are longer than max_length={cfg.max_length} "
              f"tokens and were cut to {cfg.max_length}; raise max_length to train on them whole",
              file=sys.stderr, flush=True)
    pretrained_upper = None
    if cfg.forget.at_epoch is not None and cfg.method == "full":
        pretrained_upper = forgetting.snapshot_upper_layers(model, cfg.forget.start_layer)

    created = not save.exists()
    trackers = open_train_trackers(cfg, accelerator.is_main_process)  # report_to; empty for none
    log = RunLog(save / LIVE_LOG, ckpt_io.read_log(resume_from) if resume_from else [],
                 enabled=accelerator.is_main_process, trackers=trackers)
    state = TrainState(cfg, accelerator, model, tokenizer, rows, log, to_yaml(cfg), eval_hook, on_progress,
                       pretrained_upper, layout=layout, on_budget=on_budget)
    try:
        summary = _loop(state, resume_from)
    except BaseException:
        trackers.finish()
        if accelerator.is_main_process:
            discard_work_if_unresumable(save, created)
        raise
    summary.update(truncated_rows=truncated, max_length=cfg.max_length)
    accelerator.wait_for_everyone()
    final = layout.plain_model(cfg, model, accelerator.is_main_process)
    if accelerator.is_main_process:
        save_output(cfg, final, tokenizer, log.rows, summary, state.config_yaml)
        log_summary(trackers, summary)
    trackers.finish()
    accelerator.wait_for_everyone()
    return save


@dataclass
class TrainState:
    """What the loop and every step share: the run's fixed parts, then its running counters."""

    cfg: TrainConfig
    accelerator: Any
    model: Any
    tokenizer: Any
    rows: list[list[int]]  # token ids, one training row each
    log: RunLog
    config_yaml: str  # saved into every checkpoint
    eval_hook: EvalHook | None = None
    on_progress: ProgressCallback | None = None
    pretrained_upper: dict | None = None  # the upper layers' pretrained weights (forget.at_epoch, method=full)
    layout: Layout = field(default_factory=Replicated)  # how the model lies over the processes
    on_budget: BudgetCallback | None = None  # learning-curve points at cfg.curve_epochs
    loss_module: Any = None  # the prepared causal_lm_loss_module; set by the loop
    packing_costs: tuple[float, float] | None = None  # pack_pays_off's costs; None = always pad
    step: int = 0  # optimizer steps done, counting those before a resume
    tokens_seen: int = 0  # by this run (not before a resume), for tokens_per_s
    last_loss: float = math.nan
    resident_bytes: int = 0  # parameters + optimizer state this process held at the end of its last phase
    lengths: list[int] = field(init=False)

    def __post_init__(self):
        self.lengths = [len(r) for r in self.rows]

    @property
    def rows_per_step(self) -> int:
        return self.cfg.batch_size * self.cfg.grad_accum * self.accelerator.num_processes

    @property
    def epoch_steps(self) -> int:
        return steps_per_epoch(len(self.rows), self.rows_per_step)

    @property
    def total_steps(self) -> int:
        return self.epoch_steps * self.cfg.epochs


@dataclass(frozen=True)
class StartPoint:
    """Where the loop begins: the very start, or where a checkpoint left off."""

    phase: int  # index into plan_phases(cfg) of the first phase to train
    position: dict  # {"phase", "epoch", "batch", "step"}: the checkpoint's, or all zero
    checkpoint: Path | None = None  # the checkpoint resumed from
    mid_phase: bool = False  # phases[phase] continues from the checkpoint: its optimizer, schedule, batch


def _loop(state: TrainState, resume_from: Path | None) -> dict:
    """Every phase, epoch and step, from the start or from a checkpoint; returns the run summary."""
    from accelerate.utils import gather_object

    cfg, accelerator = state.cfg, state.accelerator
    phases = plan_phases(cfg)
    start = _start_point(state, phases, resume_from)
    state.step = start.position["step"]
    _prepare_loss(state)
    started = time.time()
    progress = progress_bar(state.total_steps, state.step, accelerator.is_main_process)
    _report_progress(state)
    try:
        if state.eval_hook and state.step == 0:
            _eval(state)
        for k in range(start.phase, len(phases)):
            _train_phase(state, phases[k], progress, start if k == start.phase and start.mid_phase else None)
        if state.eval_hook and cfg.eval_every and state.step % cfg.eval_every != 0:
            _eval(state)
    finally:
        progress.close()
    elapsed = time.time() - started
    resident = gather_object([state.resident_bytes]) if accelerator.num_processes > 1 else [state.resident_bytes]
    return {"steps": state.step, "epochs": cfg.epochs, "final_loss": state.last_loss, "rows": len(state.rows),
            "train_seconds": round(elapsed, 2), "tokens_per_s": round(state.tokens_seen / max(elapsed, 1e-9), 1),
            "processes": accelerator.num_processes, "global_batch_rows": state.rows_per_step,
            "trainable_params": sum(p.numel() for p in state.model.parameters() if p.requires_grad),
            "resumed_from_step": start.position["step"] if start.checkpoint is not None else None,
            "method": cfg.method, "forget_start_layer": cfg.forget.start_layer,
            "packed_rows": state.packing_costs is not None, "sharding": cfg.sharding,
            "resident_bytes_per_process": resident}


def _start_point(state: TrainState, phases: list[Phase], resume_from: Path | None) -> StartPoint:
    """Load a checkpoint's weights and this process's RNG states; say where its run left off."""
    forget = state.cfg.forget
    if resume_from is None:
        if forget.from_model:
            state.log.add({"step": 0, "event": "forget_reset", "forget_start_layer": forget.start_layer})
        return StartPoint(0, {"phase": phases[0].number, "epoch": 0, "batch": 0, "step": 0})
    ckpt_io.load_weights(resume_from, state.model, state.layout.sharded, state.accelerator.is_main_process)
    ckpt_io.load_rng(resume_from, state.accelerator.process_index)
    position = ckpt_io.read_position(resume_from)
    k = next(k for k, phase in enumerate(phases) if phase.number == position["phase"])
    if position["epoch"] >= phases[k].end_epoch:  # the checkpoint closed its phase; the next one starts fresh
        return StartPoint(k + 1, position, resume_from)
    return StartPoint(k, position, resume_from, mid_phase=True)


def _prepare_loss(state: TrainState) -> None:
    """The loss module, and whether micro-batches may be packed (checked once per model)."""
    plain_loss = state.layout.plain_loss(state.model)
    if state.cfg.pack_rows:
        if packing_matches_padding(plain_loss, state.rows, state.tokenizer.pad_token_id, state.accelerator.device):
            state.packing_costs = attention_costs(state.model)
        elif state.accelerator.is_main_process:
            print(f"factlearn: {type(state.model).__name__} does not keep packed rows apart; training on padded "
                  "batches (set pack_rows=false to silence this)", flush=True)
    state.loss_module = state.layout.prepare_loss(plain_loss, state.accelerator)


def _train_phase(state: TrainState, phase: Phase, progress, resumed: StartPoint | None) -> None:
    """The forgetting reset that opens a phase, a fresh optimizer and schedule, then the phase's steps.

    `resumed`: the checkpoint this phase continues from (optimizer, schedule, data position), or None.
    """
    cfg, accelerator = state.cfg, state.accelerator
    if phase.after_reset and cfg.forget.at_epoch is not None and resumed is None:
        _forget_now(state)
    optimizer = state.layout.prepare_optimizer(make_optimizer(cfg, state.model), accelerator)
    scheduler = make_scheduler(cfg.lr_scheduler, optimizer, state.epoch_steps * (phase.end_epoch - phase.first_epoch),
                               cfg.warmup_ratio, cfg.warmup_steps)
    first_epoch, first_batch = phase.first_epoch, 0
    if resumed is not None:
        ckpt_io.load_optimizer_and_scheduler(resumed.checkpoint, optimizer, scheduler, state.model,
                                             state.layout.sharded, accelerator.is_main_process)
        first_epoch, first_batch = resumed.position["epoch"], resumed.position["batch"]
    for epoch in range(first_epoch, phase.end_epoch):
        batches = epoch_batches(state.lengths, state.rows_per_step, cfg.seed, epoch, cfg.bucket_by_length)
        for b in range(first_batch if epoch == first_epoch else 0, len(batches)):
            started, lr = time.time(), scheduler.get_last_lr()[0]
            loss = _train_step(state, optimizer, batches[b])
            scheduler.step()
            state.step += 1
            n_tokens = sum(state.lengths[i] for i in batches[b])
            state.tokens_seen, state.last_loss = state.tokens_seen + n_tokens, loss
            tokens_per_s = n_tokens / max(time.time() - started, 1e-9)
            if state.step % cfg.log_every == 0 or state.step == state.total_steps:
                state.log.add({"step": state.step, "epoch": round(epoch + (b + 1) / len(batches), 4), "loss": loss,
                               "lr": lr, "tokens_per_s": round(tokens_per_s, 1), "phase": phase.number})
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_s:.0f}")
            _report_progress(state)
            if state.eval_hook and cfg.eval_every and state.step % cfg.eval_every == 0:
                _eval(state)
            epoch_done = b + 1 == len(batches)
            if epoch_done and epoch + 1 in cfg.curve_epochs:  # before the checkpoint, so a resume never repeats it
                _curve_point(state, epoch + 1)
            if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < state.total_steps:
                position = {"phase": phase.number, "epoch": epoch + epoch_done, "batch": 0 if epoch_done else b + 1}
                ckpt_io.save_checkpoint(Path(cfg.save), state.step, state.model, optimizer, scheduler, position,
                                        state.log.rows, state.config_yaml, accelerator, state.layout.sharded)
                if accelerator.is_main_process:
                    ckpt_io.prune_checkpoints(Path(cfg.save), cfg.keep_checkpoints)
    state.resident_bytes = fsdp.resident_bytes(state.model, getattr(optimizer, "optimizer", optimizer))


def _train_step(state: TrainState, optimizer, batch: list[int]) -> float:
    """Forward/backward every micro-batch of this process, clip, step; return the step's mean token loss."""
    import torch

    accelerator, loss_module, rows = state.accelerator, state.loss_module, state.rows
    world = accelerator.num_processes
    denom = target_tokens(batch, rows)
    micros = shard_step(batch, rows, state.cfg.grad_accum, accelerator.process_index, world)
    local_sum = torch.zeros((), device=accelerator.device)
    for i, micro in enumerate(micros):
        if state.packing_costs is not None and pack_pays_off([len(r) for r in micro.rows], *state.packing_costs):
            ids, positions = pack(micro.rows)
            inputs = {"input_ids": ids, "position_ids": positions}
        else:
            ids, mask = collate(micro.rows, state.tokenizer.pad_token_id)
            inputs = {"input_ids": ids, "attention_mask": mask}
        inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
        with state.layout.micro_batch_context(accelerator, loss_module, last_micro=i == len(micros) - 1):
            loss_sum = loss_module(**inputs) * micro.weight
            # DDP averages gradients over processes, so scale by `world` to get sum / global tokens.
            accelerator.backward(loss_sum * (world / denom))
        accelerator.unwrap_model(loss_module).add_lookup_grads()
        local_sum += loss_sum.detach()
    if state.cfg.max_grad_norm > 0:
        state.layout.clip_grad_norm_(accelerator, loss_module.parameters(), state.cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total = accelerator.reduce(local_sum, reduction="sum") if world > 1 else local_sum
    return float(total) / denom


def _forget_now(state: TrainState) -> None:
    """The one-command form's reset; a fresh optimizer and schedule follow (as the original's 2nd run)."""
    cfg, start = state.cfg, state.cfg.forget.start_layer
    if cfg.method == "lora":
        forgetting.reset_lora_layers(state.model, start, seed=cfg.seed + 1)
    else:
        forgetting.reset_full_layers(state.model, state.pretrained_upper, start)
    state.log.add({"step": state.step, "event": "forget_reset", "forget_start_layer": start})


def _eval(state: TrainState) -> None:
    """Eval-in-the-loop, on the model itself or (sharded) on a whole copy the layout gathers."""
    copy_for_eval = state.layout.eval_copy(state.cfg, state.model, state.accelerator)
    run_eval(state.eval_hook, state.accelerator, state.model, state.tokenizer, state.step, state.log, copy_for_eval)


def _curve_point(state: TrainState, epochs_done: int) -> None:
    """Hand the model after `epochs_done` epochs to on_budget (main process, eval mode, no grad); all wait.

    Sharded runs hand over the whole copy the layout gathers (a collective), as eval-in-the-loop does.
    """
    import torch

    if state.on_budget is None:
        return
    copy_for_eval = state.layout.eval_copy(state.cfg, state.model, state.accelerator)
    model = copy_for_eval() if copy_for_eval is not None else state.model
    if state.accelerator.is_main_process:
        model.eval()
        try:
            with torch.no_grad():
                metrics = state.on_budget(model, state.tokenizer, epochs_done)
        finally:
            model.train()
        state.log.add({"step": state.step, "event": "curve_point", "epochs": epochs_done})
        if isinstance(metrics, dict):  # the point's scores, in the log and the trackers as eval/<task>/<metric>
            state.log.add({"step": state.step, "epochs": epochs_done, "eval": metrics})
    del model
    state.accelerator.wait_for_everyone()


def _report_progress(state: TrainState) -> None:
    if state.on_progress is not None and state.accelerator.is_main_process:
        state.on_progress(state.step, state.total_steps)

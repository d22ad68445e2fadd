"""The training loop: plain PyTorch, read top to bottom, with accelerate for devices and processes.

One step = one global batch of rows (batch_size x grad_accum x processes), each row its own sequence:
packed end to end with restarting position ids when that is cheaper and the model keeps packed rows
apart (checked once), else right-padded to the longest row of its micro-batch. The loss is the summed cross-entropy of every
target token divided by the step's total target-token count, so the result does not depend on how
the rows are split into micro-batches or processes (1 process with batch b == 2 with b/2).

Why not HF Trainer: it computes logits for every position including padding (a 49k-vocab
projection is a large share of a 135M model's compute), pads to a fixed multiple, and knows nothing
of active forgetting; this loop projects only the positions that carry loss.

Scale out: the same code runs under `accelerate launch`:
    accelerate launch --multi_gpu --num_processes 2 -m factlearn train cpu_small      # DDP (gloo on CPU)
    accelerate launch --num_processes 8 -m factlearn train finetune_full model=...    # 8 GPUs, DDP
FSDP and DeepSpeed are refused with a one-line error (check_engine): see its docstring for why.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from factlearn.errors import UserError
from factlearn.train import checkpoint as ckpt_io
from factlearn.train import forgetting
from factlearn.train.config import TrainConfig
from factlearn.train.data import (collate, epoch_batches, load_corpus, pack, pack_pays_off, shard_step,
                                  steps_per_epoch, target_tokens, tokenize_rows)

EvalHook = Callable[[object, object, int], dict]
LIVE_LOG = "train_log.partial.jsonl"  # written while training; the finished folder holds train_log.jsonl


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with one optimizer and schedule. Index 1 = after a forgetting reset."""

    index: int
    first_epoch: int
    end_epoch: int


def plan_phases(cfg: TrainConfig) -> list[Phase]:
    """No forgetting: one phase. forget.at_epoch=N: epochs [0,N) then [N,epochs). from_model: all phase 1."""
    fg = cfg.forget
    if fg.start_layer is not None and fg.at_epoch is not None:
        return [Phase(0, 0, fg.at_epoch), Phase(1, fg.at_epoch, cfg.epochs)]
    return [Phase(1 if fg.from_model else 0, 0, cfg.epochs)]


def causal_lm_loss_module(model):
    """Wrap `model` so forward returns the summed loss over real target tokens only.

    Calling the decoder for hidden states and projecting only the target positions skips the output
    projection (and its backward) for padding; the result equals the usual shifted cross-entropy.
    """
    import torch
    import torch.nn.functional as F

    from factlearn.models import unwrap_peft

    class CausalLMLoss(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm
            embed, head = self.base.get_input_embeddings(), self.base.get_output_embeddings()
            tied = type(embed) is torch.nn.Embedding and head is not None and embed.weight is head.weight
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            # Tied input/output embeddings (SmolLM2): autograd would sum the lookup's gradient and the
            # head's 49152x576 one into a fresh tensor every step (~0.1-0.18 s and +113 MB on CPU).
            # Instead the lookup reads a detached weight and add_lookup_grads() adds its rows into the
            # head's gradient in place. Not under DDP: its reducer only sees gradients from autograd.
            self.lookup_in_place = tied and embed.weight.requires_grad and not distributed
            self._lookup = None  # (input ids, detached embeddings) of the last forward, until its backward

        @property
        def base(self):
            return unwrap_peft(self.lm)

        def forward(self, input_ids, attention_mask=None, position_ids=None):
            """Padded rows (attention_mask) or packed rows (position_ids restarting at 0 per row)."""
            base = self.base
            inputs = {"input_ids": input_ids}
            if self.lookup_in_place and torch.is_grad_enabled():
                embeds = F.embedding(input_ids, base.get_input_embeddings().weight.detach()).requires_grad_()
                self._lookup = (input_ids, embeds)  # one forward per backward: replaced, never accumulated
                inputs = {"inputs_embeds": embeds}
            hidden = base.get_decoder()(**inputs, attention_mask=attention_mask, position_ids=position_ids,
                                        use_cache=False).last_hidden_state
            if attention_mask is None:  # packed: a token that starts a row is no target of the one before
                carries_loss = position_ids[:, 1:] != 0
            else:
                real = attention_mask.bool()
                carries_loss = real[:, 1:] & real[:, :-1]  # position t predicts token t+1; mask, not token id
            logits = base.get_output_embeddings()(hidden[:, :-1][carries_loss]).float()
            cap = getattr(base.config, "final_logit_softcapping", None)
            if cap:
                logits = torch.tanh(logits / cap) * cap
            return F.cross_entropy(logits, input_ids[:, 1:][carries_loss], reduction="sum")

        def add_lookup_grads(self) -> None:
            """After each backward: add the embedding lookup's gradient into the tied weight's .grad."""
            if self._lookup is None:
                return
            (ids, embeds), self._lookup = self._lookup, None
            weight = self.base.get_input_embeddings().weight
            if weight.grad is None:
                weight.grad = torch.zeros_like(weight)
            if embeds.grad is not None:
                with torch.no_grad():
                    weight.grad.index_add_(0, ids.reshape(-1), embeds.grad.reshape(-1, embeds.shape[-1]))

    return CausalLMLoss(model)


def packing_matches_padding(loss_module, rows: list[list[int]], pad_id: int, device) -> bool:
    """Does this model treat packed rows as separate sequences? Checked once, on a few real rows.

    Why a check: only models whose attention masks come from transformers' masking utilities turn
    restarting position ids into a block-diagonal mask; others would let a row attend to the rows
    before it. The packed loss must equal the padded loss (fp32, no autocast) to use packing.
    """
    import torch

    sample = [r[:16] for r in rows[:3]]
    if len(sample) < 2:
        return True  # one row: packing and padding are the same input
    was_training = loss_module.training
    loss_module.eval()
    try:
        with torch.no_grad():
            ids, mask = collate(sample, pad_id)
            padded = float(loss_module(ids.to(device), attention_mask=mask.to(device)))
            ids, positions = pack(sample)
            packed = float(loss_module(ids.to(device), position_ids=positions.to(device)))
    except (TypeError, ValueError, RuntimeError):  # the model rejects position ids without a mask
        return False
    finally:
        loss_module.train(was_training)
    return abs(packed - padded) <= 1e-4 * max(1.0, abs(padded))


def attention_costs(model) -> tuple[float, float]:
    """(FLOPs per token for the weights, FLOPs per attended query-key pair), for pack_pays_off."""
    from factlearn.models import unwrap_peft

    base = unwrap_peft(model)
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    return 2.0 * sum(p.numel() for p in base.parameters()), 4.0 * hidden * forgetting.num_layers(base)


def keep_freed_memory_on_cpu() -> bool:
    """Make glibc malloc keep large freed blocks for reuse instead of returning them to the OS.

    Why: by default every block over 32 MB (the 49152x576 embedding gradient, the logits) is a
    fresh mmap each step and is unmapped when freed, so each step pays page faults to re-zero
    hundreds of MB; on a 2-core CPU that was ~40% of a SmolLM2 step (2.35 s -> 1.35 s median).
    PyTorch's CPU tuning guide suggests jemalloc/tcmalloc via LD_PRELOAD for the same reason; this
    is the in-process equivalent (no library does it). Process-wide; a no-op off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold, limit = -1, -3, 1 << 30
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


def make_accelerator(cfg: TrainConfig):
    """Device from cfg.device (the launcher's choice under `accelerate launch`); bf16/fp16 = autocast."""
    import torch
    from accelerate import Accelerator

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    precision = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "fp16", "float16": "fp16"}.get(cfg.dtype, "no")
    if cfg.dtype == "auto":
        precision = "bf16" if cuda else "no"
    return Accelerator(cpu=not cuda, mixed_precision=precision)


def check_engine(accelerator) -> None:
    """Refuse FSDP and DeepSpeed before any work: this loop is written for DDP (or one process).

    Why: it builds a fresh optimizer for each phase (after a forgetting reset) and saves full weights
    and the optimizer state from the main process; DeepSpeed needs model and optimizer prepared
    together, and both engines shard state that the saves here would miss. Untestable without GPUs,
    so refused rather than half-supported.
    """
    from accelerate.utils import DistributedType

    engines = {DistributedType.FSDP: "FSDP", DistributedType.DEEPSPEED: "DeepSpeed"}
    if accelerator.distributed_type in engines:
        raise UserError(f"{engines[accelerator.distributed_type]} is not supported by factlearn train yet (its "
                        "optimizer and saves assume full weights on every process); launch with DDP instead: "
                        "accelerate launch --multi_gpu --num_processes N -m factlearn train ...")


def build_model(cfg: TrainConfig, device: str):
    """Load the model (fp32 master weights) and apply the method; validate the forgetting layer."""
    from factlearn.models import load_model

    fg = cfg.forget
    spec = fg.from_model if (fg.from_model and cfg.method == "full") else cfg.model
    if fg.from_model and cfg.method == "full" and (Path(fg.from_model) / "adapter_config.json").is_file():
        raise UserError(f"forget.from_model={fg.from_model} is a LoRA adapter folder; use method=lora, "
                        "or pass the output folder of a method=full run")
    model, tokenizer = load_model(spec, device=device, dtype="fp32", trainable=True)
    cfg.check_against_model(forgetting.num_layers(model))
    if cfg.method == "full":
        own_cpu_weights(model)
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model

        lo = cfg.lora
        peft_cfg = LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, use_rslora=lo.use_rslora,
                              target_modules=list(lo.target_modules), task_type="CAUSAL_LM")
        try:
            model = get_peft_model(model, peft_cfg)
        except ValueError as e:
            raise UserError(f"LoRA cannot be applied: {str(e).splitlines()[0][:160]}; check lora.target_modules") from None
    model.train()
    return model, tokenizer


def own_cpu_weights(model) -> None:
    """Copy CPU weights that may be views of the memory-mapped checkpoint into private memory.

    Why: the first optimizer step writes every weight, and writing a page of a private file mapping
    is a copy-on-write fault; for SmolLM2 that made the first step ~2.5 s of optimizer time instead
    of ~0.4 s, while copying up front costs ~0.2 s. Tied weights stay tied (same Parameter object).
    """
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.device.type == "cpu":
                param.data = param.data.clone()


def first_pass_reset(cfg: TrainConfig, model, device: str) -> None:
    """The two-run form: make `model` the forgetting start point of the second pass."""
    fg = cfg.forget
    if cfg.method == "lora":
        forgetting.load_lower_lora_layers(model, fg.from_model, fg.start_layer)
        return
    from factlearn.models import load_model, model_fingerprint

    pretrained, _ = load_model(cfg.model, device="cpu", dtype="fp32")
    if model_fingerprint(pretrained.config) != model_fingerprint(model.config):
        raise UserError(f"forget.from_model={fg.from_model} was not trained from model={cfg.model}; "
                        "pass the base model of the first run as model=")
    forgetting.reset_full_layers(model, forgetting.snapshot_upper_layers(pretrained, fg.start_layer), fg.start_layer)
    del pretrained


def make_optimizer(cfg: TrainConfig, model):
    """AdamW; weight decay only on matrices (not norms/biases), as is customary."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    fused = next(model.parameters()).device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)


def prepare_output(cfg: TrainConfig, resume: bool) -> Path | None:
    """Apply the output-folder policy; returns the checkpoint to resume from, if any.

    A non-empty `save` folder is refused unless overwrite=true (replaced once the new run is complete)
    or --resume (continue from its newest complete checkpoint).
    """
    save = Path(cfg.save)
    if save.exists() and not save.is_dir():
        raise UserError(f"save={save} is a file, not a folder; choose another save= folder")
    busy = save.exists() and any(save.iterdir())
    if resume:
        latest = ckpt_io.latest_checkpoint(save)
        if latest is None:
            raise UserError(f"--resume: {save} has no complete checkpoint to resume from; run without --resume "
                            "(with overwrite=true to replace the folder) and set checkpoint_every=N")
        return latest
    if busy and not cfg.overwrite:
        finished = (save / "train_summary.json").is_file()
        what = "a finished run" if finished else "files of an interrupted or other run"
        raise UserError(f"output folder {save} already holds {what}; choose another save=, pass --overwrite "
                        "(overwrite=true) to replace it, or --resume to continue from its checkpoints")
    if busy:  # overwrite: stale work files of an earlier attempt must not be mistaken for ours
        shutil.rmtree(save / ckpt_io.CKPT_DIR, ignore_errors=True)
        (save / LIVE_LOG).unlink(missing_ok=True)
    return None


def default_eval_hook(cfg: TrainConfig) -> EvalHook:
    """Eval-in-the-loop with factlearn.evaluate on the same CCA world the corpus came from."""
    try:
        from factlearn.evaluate import evaluate
    except ImportError:
        raise UserError("eval_every > 0 needs factlearn.evaluate, which is not available; set eval_every=0") from None
    data = None
    if not Path(cfg.subset).suffix and not Path(cfg.subset).is_dir():
        from factlearn.data import load_cca

        data = load_cca(None, source=cfg.data_source, n_countries=cfg.n_countries, seed=cfg.data_seed)

    def hook(model, tokenizer, step):
        return evaluate(model, tokenizer, tasks=list(cfg.eval_tasks), data=data, limit=cfg.eval_limit).metrics

    return hook


class RunLog:
    """train_log.jsonl rows, kept in memory (they go into checkpoints) and appended to a live file."""

    def __init__(self, path: Path, rows: list[dict], enabled: bool):
        self.path, self.rows, self.enabled = path, list(rows), enabled
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))

    def add(self, row: dict) -> None:
        if not self.enabled:
            return
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def train(cfg: TrainConfig, eval_hook: EvalHook | None = None, resume: bool = False) -> Path:
    """Finetune per `cfg`; return the finished output folder (HF model or peft adapter + logs).

    Collective under `accelerate launch`: every process calls it; only the main one writes files.
    Everything that can be wrong with the input is checked before the first step.
    """
    from accelerate.utils import set_seed

    from factlearn.config import to_yaml

    accelerator = make_accelerator(cfg)
    check_engine(accelerator)
    if accelerator.device.type == "cpu":
        keep_freed_memory_on_cpu()
    save = Path(cfg.save)
    resume_from = prepare_output(cfg, resume)
    accelerator.wait_for_everyone()  # every process judged the folder before the main one writes to it
    if resume_from is not None:
        _check_same_config(resume_from, cfg)
    if cfg.eval_every and eval_hook is None:
        eval_hook = default_eval_hook(cfg)

    set_seed(cfg.seed)
    model, tokenizer = build_model(cfg, str(accelerator.device))
    texts = load_corpus(cfg.subset, cfg.data_source, cfg.n_countries, cfg.data_seed)["text"]
    rows = tokenize_rows(texts, tokenizer, cfg.max_length)
    pretrained_upper = None
    if cfg.forget.at_epoch is not None and cfg.method == "full":
        pretrained_upper = forgetting.snapshot_upper_layers(model, cfg.forget.start_layer)
    if cfg.forget.from_model:
        first_pass_reset(cfg, model, str(accelerator.device))

    created = not save.exists()
    log = RunLog(save / LIVE_LOG, ckpt_io.read_log(resume_from) if resume_from else [],
                 enabled=accelerator.is_main_process)
    try:
        summary = _loop(cfg, accelerator, model, tokenizer, rows, log, resume_from, pretrained_upper,
                        eval_hook, to_yaml(cfg))
    except BaseException:
        if accelerator.is_main_process:
            _discard_work_if_unresumable(save, created)
        raise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_output(cfg, model, tokenizer, log.rows, summary, to_yaml(cfg))
    accelerator.wait_for_everyone()
    return save


def _loop(cfg: TrainConfig, accelerator, model, tokenizer, rows, log: RunLog, resume_from: Path | None,
          pretrained_upper, eval_hook: EvalHook | None, config_yaml: str) -> dict:
    """Every phase, epoch and step, from the start or from a checkpoint; returns the run summary."""
    from factlearn.train.schedule import make_scheduler

    save, fg = Path(cfg.save), cfg.forget
    phases = plan_phases(cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    step_rows = cfg.batch_size * cfg.grad_accum * world
    spe = steps_per_epoch(len(rows), step_rows)
    total_steps = spe * cfg.epochs
    lengths = [len(r) for r in rows]

    # Where to start: phase k (list index), and whether its optimizer state comes from the checkpoint.
    start_k, resumed_k, position = 0, None, {"phase": phases[0].index, "epoch": 0, "batch": 0, "step": 0}
    if fg.from_model and resume_from is None:
        log.add({"step": 0, "event": "forget_reset", "forget_start_layer": fg.start_layer})
    if resume_from is not None:
        ckpt_io.load_weights(resume_from, model)
        ckpt_io.load_rng(resume_from, rank)
        position = ckpt_io.read_position(resume_from)
        start_k = next(k for k, ph in enumerate(phases) if ph.index == position["phase"])
        if position["epoch"] >= phases[start_k].end_epoch:
            start_k += 1  # the checkpoint closed its phase; the next one starts fresh
        else:
            resumed_k = start_k

    plain_loss = causal_lm_loss_module(model)
    packing = None  # None = pad every micro-batch; else the costs pack_pays_off weighs
    if cfg.pack_rows:
        if packing_matches_padding(plain_loss, rows, tokenizer.pad_token_id, accelerator.device):
            packing = attention_costs(model)
        elif accelerator.is_main_process:
            print(f"factlearn: {type(model).__name__} does not keep packed rows apart; training on padded "
                  "batches (set pack_rows=false to silence this)", flush=True)
    loss_module = accelerator.prepare(plain_loss)
    step = position["step"]
    started, tokens_seen, last_loss = time.time(), 0, float("nan")
    progress = _progress_bar(total_steps, step, accelerator.is_main_process)
    try:
        if eval_hook and step == 0:
            _run_eval(eval_hook, accelerator, model, tokenizer, 0, log)
        for k in range(start_k, len(phases)):
            phase, fresh = phases[k], k != resumed_k
            if phase.index == 1 and fg.at_epoch is not None and fresh:
                _forget_now(cfg, model, pretrained_upper, step, log)
            optimizer = accelerator.prepare(make_optimizer(cfg, model))
            scheduler = make_scheduler(cfg.lr_scheduler, optimizer, spe * (phase.end_epoch - phase.first_epoch),
                                       cfg.warmup_ratio)
            first_epoch, first_batch = phase.first_epoch, 0
            if not fresh:
                ckpt_io.load_optimizer_and_scheduler(resume_from, optimizer, scheduler)
                first_epoch, first_batch = position["epoch"], position["batch"]
            for epoch in range(first_epoch, phase.end_epoch):
                batches = epoch_batches(lengths, step_rows, cfg.seed, epoch, cfg.bucket_by_length)
                for b in range(first_batch if epoch == first_epoch else 0, len(batches)):
                    t0 = time.time()
                    lr = scheduler.get_last_lr()[0]
                    loss = _train_step(cfg, accelerator, loss_module, optimizer, batches[b], rows, tokenizer, rank, world,
                                       packing)
                    scheduler.step()
                    step += 1
                    n_tokens = sum(lengths[i] for i in batches[b])
                    tokens_seen, last_loss = tokens_seen + n_tokens, loss
                    tok_s = n_tokens / max(time.time() - t0, 1e-9)
                    if step % cfg.log_every == 0 or step == total_steps:
                        log.add({"step": step, "epoch": round(epoch + (b + 1) / len(batches), 4), "loss": loss,
                                 "lr": lr, "tokens_per_s": round(tok_s, 1), "phase": phase.index})
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:.0f}")
                    if eval_hook and cfg.eval_every and step % cfg.eval_every == 0:
                        _run_eval(eval_hook, accelerator, model, tokenizer, step, log)
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
                        done = b + 1 == len(batches)
                        pos = {"phase": phase.index, "epoch": epoch + done, "batch": 0 if done else b + 1}
                        ckpt_io.save_checkpoint(save, step, model, optimizer, scheduler, pos, log.rows,
                                                config_yaml, accelerator)
                        if accelerator.is_main_process:
                            ckpt_io.prune_checkpoints(save, cfg.keep_checkpoints)
        if eval_hook and cfg.eval_every and step % cfg.eval_every != 0:
            _run_eval(eval_hook, accelerator, model, tokenizer, step, log)
    finally:
        progress.close()
    elapsed = time.time() - started
    return {"steps": step, "epochs": cfg.epochs, "final_loss": last_loss, "rows": len(rows),
            "train_seconds": round(elapsed, 2), "tokens_per_s": round(tokens_seen / max(elapsed, 1e-9), 1),
            "processes": world, "global_batch_rows": step_rows,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "resumed_from_step": position["step"] if resume_from is not None else None,
            "method": cfg.method, "forget_start_layer": fg.start_layer, "packed_rows": packing is not None}


def _train_step(cfg, accelerator, loss_module, optimizer, batch, rows, tokenizer, rank, world,
                packing: tuple[float, float] | None = None) -> float:
    """Forward/backward every micro-batch of this process, clip, step; return the step's mean token loss."""
    import torch

    denom = target_tokens(batch, rows)
    micros = shard_step(batch, rows, cfg.grad_accum, rank, world)
    local_sum = torch.zeros((), device=accelerator.device)
    for i, micro in enumerate(micros):
        if packing is not None and pack_pays_off([len(r) for r in micro.rows], *packing):
            ids, positions = pack(micro.rows)
            inputs = {"input_ids": ids, "position_ids": positions}
        else:
            ids, mask = collate(micro.rows, tokenizer.pad_token_id)
            inputs = {"input_ids": ids, "attention_mask": mask}
        inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
        sync = i == len(micros) - 1
        ctx = accelerator.no_sync(loss_module) if not sync else _nullcontext()
        with ctx:
            loss_sum = loss_module(**inputs) * micro.weight
            # DDP averages gradients over processes, so scale by `world` to get sum / global tokens.
            accelerator.backward(loss_sum * (world / denom))
        accelerator.unwrap_model(loss_module).add_lookup_grads()
        local_sum += loss_sum.detach()
    if cfg.max_grad_norm > 0:
        accelerator.clip_grad_norm_(loss_module.parameters(), cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    total = accelerator.reduce(local_sum, reduction="sum") if world > 1 else local_sum
    return float(total) / denom


def _nullcontext():
    import contextlib

    return contextlib.nullcontext()


def _forget_now(cfg: TrainConfig, model, pretrained_upper, step: int, log: RunLog) -> None:
    """The one-command form's reset; a fresh optimizer and schedule follow (as the original's 2nd run)."""
    start = cfg.forget.start_layer
    if cfg.method == "lora":
        forgetting.reset_lora_layers(model, start, seed=cfg.seed + 1)
    else:
        forgetting.reset_full_layers(model, pretrained_upper, start)
    log.add({"step": step, "event": "forget_reset", "forget_start_layer": start})


def _run_eval(hook: EvalHook, accelerator, model, tokenizer, step: int, log: RunLog) -> None:
    if accelerator.is_main_process:
        model.eval()
        metrics = hook(model, tokenizer, step)
        model.train()
        log.add({"step": step, "eval": metrics})
    accelerator.wait_for_everyone()


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=not enabled, dynamic_ncols=True)


def _check_same_config(ckpt: Path, cfg: TrainConfig) -> None:
    """--resume must continue the same run: every key but the output policy must match."""
    from omegaconf import OmegaConf

    from factlearn.config import to_dict

    saved = OmegaConf.to_container(OmegaConf.create((ckpt / "config.yaml").read_text()))
    now = to_dict(cfg)
    ignore = {"overwrite", "eval_every", "eval_tasks", "eval_limit", "log_every", "keep_checkpoints"}
    diff = [k for k in now if k not in ignore and saved.get(k) != now[k]]
    if diff:
        raise UserError(f"--resume with a config that differs from the interrupted run's in {', '.join(diff)} "
                        f"(saved in {ckpt}/config.yaml); resume with the same config and overrides")


def _discard_work_if_unresumable(save: Path, created: bool) -> None:
    """On an error or Ctrl-C: keep checkpoints (for --resume); otherwise leave no trace of this run."""
    if ckpt_io.latest_checkpoint(save) is not None:
        return
    shutil.rmtree(save / ckpt_io.CKPT_DIR, ignore_errors=True)
    (save / LIVE_LOG).unlink(missing_ok=True)
    if created and save.is_dir() and not any(save.iterdir()):
        save.rmdir()


def save_output(cfg: TrainConfig, model, tokenizer, log_rows: list[dict], summary: dict, config_yaml: str) -> Path:
    """Build the finished folder next to `save` and rename it into place (replacing the work files).

    Full: model.safetensors + config (loads with AutoModelForCausalLM). LoRA: the peft adapter plus
    factlearn_base.json (loads with PeftModel / factlearn.models.load_model).
    """
    from factlearn.atomic import atomic_dir
    from factlearn.models import model_fingerprint

    save = Path(cfg.save)
    with atomic_dir(save, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if cfg.method == "lora":
            base = model.get_base_model().config
            base_spec = str(Path(cfg.model).resolve()) if Path(cfg.model).exists() else cfg.model  # cwd-proof
            (tmp / "factlearn_base.json").write_text(
                json.dumps({"base_spec": base_spec, "fingerprint": model_fingerprint(base)}, indent=2) + "\n")
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log_rows))
        (tmp / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return save

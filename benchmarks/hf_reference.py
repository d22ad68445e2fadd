"""The peers factlearn's trainer is measured against: Hugging Face `Trainer` in two configurations.

- "original": the original project's recipe — pad every batch to a multiple of 8
  (`DataCollatorForLanguageModeling`), gradient checkpointing on.
- "packed": what a knowledgeable user would pick when speed matters — no gradient checkpointing and
  padding-free packing (`DataCollatorWithFlattening`: the batch's rows laid end to end with
  restarting position ids, no padding computed; each row's first label is -100 so no row predicts
  across a boundary).

Shared by bench_train.py (CPU, SmolLM2) and gpu_check.py (CUDA, randomly initialised models), so both
run the peers the same way. Takes token-id rows, not text: the caller tokenizes once for every trainer.
"""

from __future__ import annotations

import time
from pathlib import Path

PEERS = ("original", "packed")


def hf_trainer_run(model, tokenizer, rows: list[list[int]], peer: str, out_dir: str | Path, *, batch: int,
                   lr: float, seed: int, bf16: bool, use_cpu: bool, deadline: float | None = None) -> dict:
    """Train `model` one epoch over `rows` with HF Trainer as `peer` configures it.

    `deadline` (a time.perf_counter() value): stop after the step that passes it (at least two steps).

    Returns {"seconds": the train() call, "losses": logged per step, "step_seconds": per step (wall),
    "step_cpu_seconds": per step (this process's CPU time: robust to other jobs on a shared machine
    when run on one thread), "model": the trained model}.
    """
    from transformers import (DataCollatorForLanguageModeling, DataCollatorWithFlattening, PrinterCallback, Trainer,
                              TrainerCallback, TrainingArguments)

    if peer not in PEERS:
        raise ValueError(f"peer must be one of {PEERS}, not {peer!r}")
    packed = peer == "packed"
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        learning_rate=lr, num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0.1, max_grad_norm=1.0,
        weight_decay=0.0, seed=seed, gradient_checkpointing=not packed, bf16=bf16, use_cpu=use_cpu,
        logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0)
    collator = (DataCollatorWithFlattening() if packed
                else DataCollatorForLanguageModeling(tokenizer, mlm=False, pad_to_multiple_of=8))
    stamps: list[float] = []
    cpu: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())

        def on_step_end(self, args, state, control, **k):
            stamps.append(time.perf_counter())
            cpu.append(time.process_time())
            if deadline is not None and stamps[-1] > deadline and len(stamps) >= 4:
                control.should_training_stop = True
            return control

    trainer = Trainer(model=model, args=args, train_dataset=[{"input_ids": r} for r in rows],
                      data_collator=collator, callbacks=[StepTimer()])
    trainer.remove_callback(PrinterCallback)  # one dict per step on stdout; the caller reports
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "step_seconds": [stamps[i + 1] - stamps[i] for i in range(0, len(stamps) - 1, 2)],
            "step_cpu_seconds": [cpu[i + 1] - cpu[i] for i in range(0, len(cpu) - 1, 2)],
            "model": trainer.model}

"""Resumable checkpoints: <save>/checkpoints/step-N, each complete or absent.

A checkpoint holds what the next step depends on: the trainable weights (the adapter for LoRA),
optimizer and scheduler state, every process's RNG states, the data position (phase, epoch, batches
done; the batch order itself is a pure function of seed and epoch), the log so far, and the config.
Each is built in a dot-named temp folder and renamed into place, so a SIGKILL mid-write leaves the
previous checkpoint as the newest complete one.

Hand-written rather than `accelerator.save_state` because that saves the whole model (the frozen
base weights in every LoRA checkpoint, not just the adapter) and knows nothing of our data position.

Sharded runs (sharding=fsdp2) write the same files from gathered state: every process takes part in
gathering the full trainable weights and the optimizer state (keyed by parameter name) to process 0,
which writes them; on resume process 0 reads them and broadcasts, each process keeping its shard.
Chosen over sharded torch.distributed.checkpoint files so that every checkpoint is complete-or-absent
by the one rename below; the cost is that process 0 holds the full trainable weights and AdamW state
in CPU memory while writing (for a full finetune: ~12 bytes per parameter).
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
from pathlib import Path

from factlearn.atomic import atomic_dir
from factlearn.errors import UserError
from factlearn.train import fsdp

CKPT_DIR = "checkpoints"
_STEP = re.compile(r"^step-(\d+)$")


def rng_state() -> dict:
    """Python, numpy and torch RNG states of this process (plus CUDA when present)."""
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model) -> dict:
    """Trainable parameters by name, on CPU (shared/tied tensors appear once)."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(save_dir: Path, step: int, model, optimizer, scheduler, position: dict, log_rows: list[dict],
                    config_yaml: str, accelerator, sharded: bool = False) -> Path | None:
    """Write checkpoint step-`step` (collective: every process must call it). Returns its path on the main process."""
    import torch
    from accelerate.utils import gather_object
    from safetensors.torch import save_file

    rngs = gather_object([rng_state()])  # one per process, in rank order
    if sharded:
        weights, optimizer_state = fsdp.gather_state(model, trainable_only=True), fsdp.gather_optimizer_state(model, optimizer)
    if not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return None
    if not sharded:
        weights, optimizer_state = trainable_state(model), optimizer.state_dict()
    final = Path(save_dir) / CKPT_DIR / f"step-{step}"
    with atomic_dir(final, overwrite=True) as tmp:
        save_file(weights, str(tmp / "trainable.safetensors"))
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        with open(tmp / "rng.pkl", "wb") as f:
            pickle.dump(rngs, f)
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log_rows))
        (tmp / "config.yaml").write_text(config_yaml)
        (tmp / "state.json").write_text(json.dumps({"step": step, **position}, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(save_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temp folders are dot-named and never match)."""
    root = Path(save_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and (p / "state.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(save_dir: Path) -> Path | None:
    found = list_checkpoints(save_dir)
    return found[-1] if found else None


def prune_checkpoints(save_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` complete checkpoints."""
    for old in list_checkpoints(save_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_position(ckpt: Path) -> dict:
    return json.loads((ckpt / "state.json").read_text())


def read_log(ckpt: Path) -> list[dict]:
    return [json.loads(line) for line in (ckpt / "train_log.jsonl").read_text().splitlines() if line.strip()]


def load_weights(ckpt: Path, model, sharded: bool = False, main: bool = True) -> None:
    """Copy the checkpoint's trainable weights into `model` (names must match exactly).

    `sharded` (sharding=fsdp2): collective; process 0 (`main`) reads the file and broadcasts.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(ckpt / "trainable.safetensors"), "pt") as f:
        names = set(f.keys())
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in names]
    unknown = [n for n in names if n not in params]
    if missing or unknown:
        raise UserError(f"checkpoint {ckpt} does not match this model (missing {missing[:1]}, unknown {unknown[:1]}); "
                        "resume with the same model and method as the interrupted run")
    if sharded:
        fsdp.load_trainable(model, load_file(str(ckpt / "trainable.safetensors")) if main else {})
        return
    state = load_file(str(ckpt / "trainable.safetensors"))
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


def load_optimizer_and_scheduler(ckpt: Path, optimizer, scheduler, model, sharded: bool = False,
                                 main: bool = True) -> None:
    """`sharded` (sharding=fsdp2): collective; process 0 (`main`) reads the state and broadcasts."""
    import torch

    if sharded:
        state = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True) if main else {}
        fsdp.load_optimizer_state(model, optimizer, state)
    else:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", map_location="cpu", weights_only=True))


def load_rng(ckpt: Path, rank: int) -> None:
    """Restore this process's RNG states (rank 0's when the process count changed)."""
    with open(ckpt / "rng.pkl", "rb") as f:
        states = pickle.load(f)  # written by this module only
    set_rng_state(states[rank] if rank < len(states) else states[0])

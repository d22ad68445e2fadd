"""The output folder: refuse to clobber, resume only the same run, leave no trace of a failed one,
and write the finished folder atomically.

While training, <save>/ holds only work files (checkpoints/ and the live log); the finished folder
(model or adapter, tokenizer, config, log, summary) replaces them in one rename at the end.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from factlearn.errors import UserError
from factlearn.train import checkpoint as ckpt_io
from factlearn.train.config import TrainConfig
from factlearn.config import to_dict
from factlearn.atomic import atomic_dir
from factlearn.models import model_fingerprint

LIVE_LOG = "train_log.partial.jsonl"  # written while training; the finished folder holds train_log.jsonl


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


def check_same_config(ckpt: Path, cfg: TrainConfig) -> None:
    """--resume must continue the same run: every key but the output policy must match."""
    from omegaconf import OmegaConf

    saved = OmegaConf.to_container(OmegaConf.create((ckpt / "config.yaml").read_text()))
    now = to_dict(cfg)
    ignore = {"overwrite", "eval_every", "eval_tasks", "eval_limit", "log_every", "keep_checkpoints", "report_to",
              "tracking_dir", "run_name"}
    diff = [k for k in now if k not in ignore and saved.get(k) != now[k]]
    if diff:
        raise UserError(f"--resume with a config that differs from the interrupted run's in {', '.join(diff)} "
                        f"(saved in {ckpt}/config.yaml); resume with the same config and overrides")


def discard_work_if_unresumable(save: Path, created: bool) -> None:
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

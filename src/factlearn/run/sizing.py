"""What costing a grid needs, read without loading any weights: a model's config (and tokenizer, when
there is one), token counts of the world's rows, and the hardware the cells will run on.

`factlearn run --plan` may be pointed at a folder that holds only a config.json (e.g. the published
shape of a model whose weights are not on this machine): then tokens are estimated as characters / 4,
which is close for English text under the BPE vocabularies of current LLMs, and the plan says so.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from factlearn.errors import UserError
from factlearn.run import estimate
from factlearn.run.config import RunConfig

CHARS_PER_TOKEN = 4
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")

Counter = Callable[[str], int]


# -- models -------------------------------------------------------------------------------------------

def read_model_config(spec: str) -> tuple[str, dict]:
    """(location, config dict) of a model spec from its config alone: an alias, a folder with a
    config.json (weights optional), or a hub id in the local HF cache (or downloadable). Writes nothing."""
    from factlearn.models import ALIASES, cache_root, embedded_gguf_path, is_hub_id

    if spec in ALIASES:
        converted = cache_root() / "models" / spec
        if (converted / "config.json").is_file():
            return str(converted), _read_config(converted, spec)
        gguf = embedded_gguf_path(spec)  # not converted yet: the GGUF's own metadata has the shape
        try:
            from transformers import AutoConfig

            return str(gguf), AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name).to_dict()
        except Exception as e:
            raise UserError(f"cannot read the config of model '{spec}' from {gguf.name} ({_first_line(e)}); run "
                            f"`factlearn models convert` once, or pass a folder with a config.json") from None
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path), _read_config(path, spec)
    if path.exists():
        raise UserError(f"--plan reads a model's shape from its config.json, and {path} is a file; pass the "
                        "folder that holds config.json")
    if is_hub_id(spec):
        from huggingface_hub import try_to_load_from_cache

        from factlearn.models import hub_reachable

        cached = try_to_load_from_cache(spec, "config.json")
        if isinstance(cached, str):
            return str(Path(cached).parent), _read_config(Path(cached).parent, spec)
        if not hub_reachable():
            raise UserError(f"cannot read the config of '{spec}': it is not in the local Hugging Face cache and "
                            "the hub is unreachable (offline); pass a local folder with its config.json")
        from transformers import AutoConfig

        try:
            return spec, AutoConfig.from_pretrained(spec).to_dict()
        except Exception as e:
            raise UserError(f"cannot read the config of '{spec}' from the hub: {_first_line(e)}") from None
    raise UserError(f"model '{spec}' is not an alias, an existing folder or a hub id (org/name); check the "
                    "spelling")


def _read_config(folder: Path, spec: str) -> dict:
    """A folder's config.json, checked to be a causal LM that transformers can parse."""
    from transformers import AutoConfig

    from factlearn.models import check_causal_lm

    if not (folder / "config.json").is_file():
        raise UserError(f"model folder {folder} has no config.json, so its shape cannot be read; pass a folder "
                        "saved with save_pretrained (a config.json alone is enough for --plan)")
    try:
        config = AutoConfig.from_pretrained(str(folder))
    except Exception as e:
        raise UserError(f"cannot read the config of model {spec}: {_first_line(e)}; fix {folder / 'config.json'}") \
            from None
    check_causal_lm(config, spec)
    return json.loads((folder / "config.json").read_text())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200].rstrip(".") if text else type(e).__name__


def token_counter(location: str, config_only: bool) -> tuple[Counter, bool]:
    """(count tokens of a text, exact?): the model's tokenizer, or with `config_only` and no tokenizer
    files, characters / CHARS_PER_TOKEN."""
    if config_only:
        folder = Path(location)
        if not (folder.is_dir() and any((folder / f).is_file() for f in TOKENIZER_FILES)):
            return (lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))), False
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(location)
        except Exception:  # a tokenizer is a nicety for an estimate
            return (lambda text: max(1, round(len(text) / CHARS_PER_TOKEN))), False
    else:
        from factlearn.models import load_tokenizer

        tokenizer = load_tokenizer(location)
    return (lambda text: len(tokenizer(text)["input_ids"])), True


# -- data -----------------------------------------------------------------------------------------------

CHOICE_TOKENS = 3.0  # tokens of one cloze choice scored after the shared context (an entity name: 2-4)


def eval_items(cfg: RunConfig, data, count: Counter, tasks: list[str], limit) -> dict:
    """Per task: (items evaluated, tokens in one few-shot context, scored without generating), for estimates.

    `limit`: one limit for every task, or a function task name -> limit."""
    from factlearn.evaluate.tasks import CLOZE, GENERATE, get_tasks

    items = {}
    for task in get_tasks(tasks):
        rows = data[task.config]
        task_limit = limit(task.name) if callable(limit) else limit
        n = len(rows) if task_limit is None else min(task_limit, len(rows))
        sample = rows.select(range(min(len(rows), 8))).to_list()
        texts = [str(r["question"]) + " " + " ".join(map(str, r.get("choices") or [])) + str(r["answer"]) for r in sample]
        per_item = sum(count(t) + 8 for t in texts) / max(len(texts), 1)
        ctx = per_item * (cfg.num_fewshot + 1)
        if task.kind == CLOZE:  # score_shared: the context once, then each choice's tokens over it
            ctx += len(rows[0]["choices"]) * CHOICE_TOKENS
        items[task.name] = (n, ctx, task.kind != GENERATE)
    return items


def corpus_tokens(world, corpus: str, count: Counter) -> tuple[int, float, int]:
    """(rows, mean tokens per row + 1 for EOS, longest sampled row) of a training corpus."""
    rows = world.data[corpus]["text"]
    sample = rows[:: max(1, len(rows) // 64)]
    lengths = [count(t) for t in sample] or [0]
    return len(rows), sum(lengths) / max(len(sample), 1) + 1, max(lengths) + 1


# -- hardware -----------------------------------------------------------------------------------------

def local_hardware(cfg: RunConfig, workers: int) -> estimate.Hardware:
    """This machine as a run uses it: `workers` GPUs (one cell each), or `workers` processes sharing the CPU."""
    from factlearn.models import pick_device

    workers = max(workers, 1)
    if pick_device(cfg.device).startswith("cuda"):
        import torch

        return estimate.Hardware("cuda", workers, float(torch.cuda.get_device_properties(0).total_memory))
    return estimate.Hardware("cpu", workers, estimate.system_memory() / workers)


def plan_hardware(cfg: RunConfig, workers: int) -> estimate.Hardware:
    """The hardware cells are costed for: `hardware.*` where set (for --plan), else this machine."""
    hw = cfg.hardware
    if hw.gpus is not None:
        memory = hw.gpu_memory_gb * estimate.GB if hw.gpu_memory_gb else None
        if memory is None:
            local = local_hardware(cfg, 1)
            if local.kind != "cuda":
                raise UserError(f"hardware.gpus={hw.gpus} needs hardware.gpu_memory_gb=<GB per GPU> on a machine "
                                "without a GPU, e.g. hardware.gpu_memory_gb=80")
            memory = local.memory
        machine = estimate.Hardware("cuda", hw.gpus, memory)
    else:
        machine = local_hardware(cfg, workers)
        if hw.gpu_memory_gb is not None:
            if machine.kind != "cuda":
                raise UserError("hardware.gpu_memory_gb describes GPUs, and none is visible here; add "
                                "hardware.gpus=N for the machine you plan for")
            machine = dataclasses.replace(machine, memory=hw.gpu_memory_gb * estimate.GB)
    if hw.sharding == "fsdp2":
        if machine.kind != "cuda":
            raise UserError("hardware.sharding=fsdp2 plans training sharded over GPUs; add hardware.gpus=N "
                            "(N >= 2) for the machine you plan for")
        if machine.count < 2:
            raise UserError(f"hardware.sharding=fsdp2 with {machine.count} GPU shards nothing (one process holds "
                            "everything); set hardware.gpus=N with N >= 2, or hardware.sharding=none")
    flops = hw.tflops * 1e12 if hw.tflops else None
    sharding = hw.sharding
    if hw.gpus is None and cfg.train_sharding == "fsdp2" and machine.kind == "cuda" and machine.count >= 2:
        sharding = "fsdp2"  # this machine's run shards its training cells over its GPUs (on CPU: one RAM anyway)
    return dataclasses.replace(machine, sharding=sharding, flops=flops)

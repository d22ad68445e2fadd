"""GPU check: factlearn's eval engine and trainer on one CUDA device, as ratios measured in one run.

    bash benchmarks/gpu_check.sh                 # on a GPU machine: <= 8 minutes, nothing downloaded
    bash benchmarks/gpu_check.sh --cpu-smoke     # every section, tiny, on CPU (exercises the code paths)

Needs only torch, transformers, accelerate (and peft for factlearn's imports); `datasets`, `omegaconf`,
`gguf` and `lm_eval` may be missing, so it imports only factlearn modules that work without them and
builds everything locally: randomly initialised models of the real shapes (SmolLM2-135M and a
Llama-3.2-1B-shaped model), a byte-level BPE tokenizer trained on the generated world's text, and the
CCA rows from the world generator as plain dicts. Random weights make the answers meaningless but the
work identical: the same prompts, the same tokens, the same shapes.

Sections, each within its own time budget (a section out of time stops early and says so):
1. peak: the measured dense bf16 matmul peak (fp32 on CPU) that MFU is quoted against;
2. train: factlearn's training step (its loss module, row packing, fused AdamW, bf16 autocast) vs two
   HF Trainer peers (hf_reference.py): tokens/s, MFU, peak GPU memory;
3. fsdp2: the same step with the model sharded by factlearn's own sharding=fsdp2 code (train/fsdp.py
   `shard`: FSDP2 per decoder layer + the loss module as root) on a one-process group, vs plain;
4. eval: factlearn's engine vs lm-eval 0.4 on the same prompts when lm_eval is importable, else vs
   an lm-eval-like loop (batch 1, HF forward / generate, lm-eval's tokenization): items/s and the
   number of items whose answers differ;
5. scoring: shared-context scoring (each context once, continuations over its KV cache) vs the
   per-pair reference path, on probe-shaped requests and on the two cloze tasks: ratio, answers.
The ratio lines are printed again as a summary at the end. Exit code: 0 when every section ran and
no answer differs, 1 otherwise, 2 without a CUDA device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # hf_reference.py, eval_reference.py

# Real shapes (config.json of HuggingFaceTB/SmolLM2-135M and meta-llama/Llama-3.2-1B) and tiny stand-ins.
SHAPES = {
    "smollm2-135m": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                         intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0),
    "llama-1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                     intermediate_size=8192, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0),
}
TINY_SHAPES = {
    "tiny-a": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, vocab_size=1024, max_position_embeddings=2048),
    "tiny-b": dict(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=192, vocab_size=1536, max_position_embeddings=2048),
}
EVAL_TASKS = ("Eval_QA", "Eval_reverse", "Eval_multiple_choice", "Eval_indirect_reasoning",
              "Eval_2hop_reasoning", "Eval_2hop_reasoning_raw", "Eval_animal_commonsense")
FAILURES: list[str] = []
SUMMARY: list[str] = []  # the ratio lines, printed again together at the end


def say(section: str, text: str, summary: bool = False) -> None:
    print(f"[{section}] {text}", flush=True)
    if summary:
        SUMMARY.append(f"[{section}] {text}")


class Clock:
    """The whole run's deadline, and each section's share of what is left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def section(self, seconds: float) -> float:
        """A deadline for a section: `seconds` from now, never past the run's end."""
        return time.perf_counter() + max(0.0, min(seconds, self.left()))


def run_section(name: str, fn, *args) -> None:
    """Run one section; a failure is reported and counted, and the next section still runs."""
    try:
        fn(*args)
    except Exception as e:  # a check reports every section it can
        FAILURES.append(name)
        say(name, f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
        traceback.print_exc(limit=4)


# --------------------------------------------------------------------------- building blocks

def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")


def world_data(n_countries: int) -> dict[str, list[dict]]:
    """Every CCA config of the generated world as plain rows (no `datasets`)."""
    from factlearn.data.build import build_rows
    from factlearn.data.schema import CONFIGS
    from factlearn.data.world import generate_world

    world = generate_world(n_countries, seed=0)
    return {config: build_rows(world, config) for config in CONFIGS}


def make_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE trained on the world's own text, with SmolLM2's special tokens (as factlearn.testing)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>", unk_token="<|endoftext|>")


def build_model(shape: dict, tokenizer, device: str, seed: int = 0):
    """A randomly initialised LlamaForCausalLM of `shape` (fp32, tied embeddings), made on `device`.

    The embedding rows past the tokenizer's vocabulary are zero: their logits are then 0, below the
    best real token's, so greedy answers are text (as with a real model) while every shape stays real.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[len(tokenizer):] = 0
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def reset_accelerate() -> None:
    """accelerate keeps one process-wide state; each trainer here sets its own precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


# --------------------------------------------------------------------------- 1. peak

def matmul_peak(device: str, seconds: float) -> float:
    """Best FLOP/s of repeated square matmuls: bf16 8192^3 on CUDA, fp32 512^3 on CPU."""
    import torch

    cuda = device.startswith("cuda")
    n, dtype = (8192, torch.bfloat16) if cuda else (512, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t0))
    return best


# --------------------------------------------------------------------------- 2./3. training

def factlearn_steps(model, tokenizer, rows: list[list[int]], args, deadline: float, sharded: bool = False) -> dict:
    """factlearn's own step (train/trainer.py `_train_step`) over `rows`, one process, timed per step.

    `sharded`: under FSDP2 on the one-process group the caller set up (see `_shard`).
    """
    from factlearn.train.config import TrainConfig
    from factlearn.train.data import epoch_batches
    from factlearn.train.engine import make_accelerator, make_optimizer
    from factlearn.train.hooks import RunLog
    from factlearn.train.trainer import TrainState, _prepare_loss, _train_step

    reset_accelerate()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(batch_size=args.batch, lr=1e-4, seed=1, save=tmp, device=args.device_kind,
                          dtype="bf16" if args.cuda else "fp32")
        accelerator = make_accelerator(cfg)
        model.config.use_cache = False
        model.train()
        state = TrainState(cfg, accelerator, model, tokenizer, rows, RunLog(Path(tmp) / "log.jsonl", [], False), "")
        if sharded:
            _shard(state)
        else:
            _prepare_loss(state)
        optimizer = make_optimizer(cfg, state.model)
        if not sharded:  # as the trainer: a sharded run's optimizer is not prepared by accelerate
            optimizer = accelerator.prepare(optimizer)
        batches = epoch_batches(state.lengths, args.batch, cfg.seed, 0, False)[:args.steps]
        step_seconds, tokens, losses = [], [], []
        for batch in batches:
            if time.perf_counter() > deadline and len(step_seconds) >= 2:
                break
            t0 = time.perf_counter()
            losses.append(_train_step(state, optimizer, batch))  # returns a float: the step has synced
            step_seconds.append(time.perf_counter() - t0)
            tokens.append(sum(len(rows[i]) for i in batch))
    return {"step_seconds": step_seconds, "tokens": tokens, "losses": losses,
            "packed": state.packing_costs is not None}


def _shard(state) -> None:
    """The model under FSDP2 exactly as `factlearn train sharding=fsdp2` lays it out (train/fsdp.py):
    one unit per decoder layer, the loss module as the root, bf16 params when the accelerator is bf16."""
    from factlearn.train import fsdp
    from factlearn.train.loss import causal_lm_loss_module
    from factlearn.train.trainer import _prepare_loss

    loss = causal_lm_loss_module(state.model)  # after init_process_group: no in-place lookup gradient
    fsdp.shard(state.cfg, state.accelerator, state.model, loss)
    state.layout = fsdp.Sharded(loss)
    _prepare_loss(state)  # the packing check, on the sharded module as the trainer does


def peer_steps(model, tokenizer, rows: list[list[int]], peer: str, args, deadline: float) -> dict:
    from hf_reference import hf_trainer_run

    reset_accelerate()
    with tempfile.TemporaryDirectory() as tmp:
        out = hf_trainer_run(model, tokenizer, rows[:args.steps * args.batch], peer, tmp, batch=args.batch, lr=1e-4,
                             seed=1, bf16=args.cuda, use_cpu=not args.cuda, deadline=deadline)
    done = len(out["step_seconds"])
    per_step = sum(len(r) for r in rows[:done * args.batch]) / max(done, 1)  # Trainer shuffles: mean tokens
    return {"step_seconds": out["step_seconds"], "tokens": [per_step] * done, "losses": out["losses"]}


def throughput(run: dict) -> tuple[float, float]:
    """(tokens/s over the steps after the first, median step tokens/s): step 1 carries one-off costs."""
    times, tokens = run["step_seconds"][1:] or run["step_seconds"], run["tokens"][1:] or run["tokens"]
    median = sorted(times)[len(times) // 2]
    return sum(tokens) / sum(times), (sum(tokens) / len(tokens)) / median


def train_section(args, clock: Clock, peak: float, tokenizer, rows, plain_results: dict) -> None:
    for name, shape in args.shapes.items():
        results = {}
        for which in ("ours", "hf-original", "hf-packed"):
            if clock.left() < 20:
                say("train", f"{name} {which}: skipped, out of time")
                continue
            reset_memory(args.device)
            model = build_model(shape, tokenizer, args.device)
            params = n_params(model)
            deadline = clock.section(args.train_seconds)
            if which == "ours":
                run = factlearn_steps(model, tokenizer, rows, args, deadline)
            else:
                run = peer_steps(model, tokenizer, rows, which.split("-")[1], args, deadline)
            run["peak_gib"] = peak_memory_gib(args.device)
            run["tok_s"], run["median_tok_s"] = throughput(run)
            results[which] = run
            del model
            packed = f", rows packed: {'yes' if run['packed'] else 'no'}" if "packed" in run else ""
            say("train", f"{name} ({params / 1e6:.1f}M params) {which:>11}: {run['tok_s']:9.0f} tokens/s "
                f"(median step {run['median_tok_s']:9.0f}), MFU {100 * 6 * params * run['tok_s'] / peak:5.2f} %, "
                f"{len(run['step_seconds'])} steps, loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}, "
                f"peak memory {run['peak_gib']:.2f} GiB{packed}", summary=True)
        if "ours" in results:
            plain_results[name] = results["ours"]
            for peer in ("hf-original", "hf-packed"):
                if peer in results:
                    say("train", f"{name}: ours vs {peer}: {results['ours']['tok_s'] / results[peer]['tok_s']:.2f}x "
                        f"tokens/s (median step {results['ours']['median_tok_s'] / results[peer]['median_tok_s']:.2f}x), "
                        f"peak memory {results['ours']['peak_gib']:.2f} vs {results[peer]['peak_gib']:.2f} GiB", summary=True)


def fsdp2_section(args, clock: Clock, peak: float, tokenizer, rows, plain_results: dict) -> None:
    """factlearn's step with the model sharded by its own sharding=fsdp2 code, on a one-process group.

    (`factlearn train sharding=fsdp2` itself refuses one process: sharding needs several to pay off.
    On one device the shard is the whole model, so this measures FSDP2's own cost against plain.)
    """
    import socket

    import torch.distributed as dist

    name = args.fsdp_shape
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("nccl" if args.cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=1)
    try:
        reset_memory(args.device)
        model = build_model(args.shapes[name], tokenizer, args.device)
        params = n_params(model)
        run = factlearn_steps(model, tokenizer, rows, args, clock.section(args.train_seconds), sharded=True)
        run["peak_gib"] = peak_memory_gib(args.device)
        run["tok_s"], run["median_tok_s"] = throughput(run)
        del model
    finally:
        dist.destroy_process_group()
    say("fsdp2", f"{name} FSDP2 (1 device): {run['tok_s']:9.0f} tokens/s (median step {run['median_tok_s']:9.0f}), "
        f"MFU {100 * 6 * params * run['tok_s'] / peak:5.2f} %, {len(run['step_seconds'])} steps, "
        f"loss {run['losses'][0]:.3f} -> {run['losses'][-1]:.3f}, peak memory {run['peak_gib']:.2f} GiB, "
        f"rows packed: {'yes' if run['packed'] else 'no'}", summary=True)
    plain = plain_results.get(name)
    if plain is None:
        say("fsdp2", f"no plain run of {name} to compare with (the train section skipped it)")
        return
    say("fsdp2", f"{name}: FSDP2 vs plain: {run['tok_s'] / plain['tok_s']:.2f}x tokens/s (median step "
        f"{run['median_tok_s'] / plain['median_tok_s']:.2f}x), peak memory {run['peak_gib']:.2f} vs "
        f"{plain['peak_gib']:.2f} GiB; first-step loss {run['losses'][0]:.4f} vs {plain['losses'][0]:.4f}", summary=True)


# --------------------------------------------------------------------------- 4. evaluation

def eval_section(args, clock: Clock, tokenizer, data) -> None:
    import importlib.util

    import torch

    from eval_reference import baseline_answers, lm_eval_answers

    from factlearn.evaluate import evaluate

    name = args.eval_shape
    limit = args.eval_limit if clock.left() > 90 else max(1, args.eval_limit // 4)  # late: fewer items
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.eval_dtype]
    model = build_model(args.shapes[name], tokenizer, args.device).to(dtype).eval()
    evaluate(model, tokenizer, tasks=list(EVAL_TASKS), data=data, limit=1, batch_size=args.eval_batch)  # warm-up
    sync(args.device)
    t0 = time.perf_counter()
    ours = evaluate(model, tokenizer, tasks=list(EVAL_TASKS), data=data, limit=limit,
                    batch_size=args.eval_batch)
    sync(args.device)
    ours_s = time.perf_counter() - t0
    n_items = sum(len(r) for r in ours.records.values())
    say("eval", f"{name} ({args.eval_dtype}) factlearn engine: {n_items} items in {ours_s:.1f} s "
        f"({n_items / ours_s:.1f} items/s, batch {args.eval_batch}, 5-shot, {len(EVAL_TASKS)} tasks)")
    if importlib.util.find_spec("lm_eval") is not None:
        label = "lm-eval 0.4 (HFLM, batch 1)"
        theirs, theirs_s = lm_eval_answers(model, tokenizer, data, list(EVAL_TASKS), limit)
    else:
        say("eval", "lm-eval: skipped: lm-eval not installed; comparing with an lm-eval-like loop instead "
            "(batch 1, HF forward per request / model.generate, lm-eval's tokenization and stop rule)")
        label = "lm-eval-like loop (batch 1)"
        theirs, theirs_s = baseline_answers(model, tokenizer, ours.records, data, clock.section(args.eval_seconds))
    compared = [(task, rec) for task, recs in ours.records.items() for rec in recs if (task, rec["doc_index"]) in theirs]
    differ = [(task, rec["doc_index"], rec["prediction"], theirs[(task, rec["doc_index"])])
              for task, rec in compared if rec["prediction"] != theirs[(task, rec["doc_index"])]]
    say("eval", f"{label}: {len(theirs)} items in {theirs_s:.1f} s ({len(theirs) / theirs_s:.2f} items/s)")
    say("eval", f"engine vs {label}: {(n_items / ours_s) / (len(theirs) / theirs_s):.2f}x items/s; "
        f"items whose answers differ: {len(differ)} of {len(compared)} compared", summary=True)
    for task, index, mine, other in differ[:5]:
        say("eval", f"  differs: {task} item {index}: factlearn {mine!r} vs {other!r}")
    if differ:
        FAILURES.append("eval answers")


CLOZE_TASKS = ("Eval_multiple_choice_cloze", "Eval_2hop_reasoning_cloze")
PROBE_PROMPTS = ("On a map of {head}, the city marked as the national capital is",
                 "Of all the cities in {head}, the capital is not")


def scoring_section(args, clock: Clock, tokenizer, data) -> None:
    """Shared-context scoring (scoring.score_shared: each context once, its continuations packed after it
    under a block attention mask) vs the per-pair reference path (scoring_reference), on probe-shaped
    requests (every tail of the world after each prompt) and on the cloze tasks through the engine:
    answers must be identical. Also times the packed path under other pass budgets than the CUDA
    default (scoring.PASS_BUDGETS, not yet measured on a GPU), so the first lent GPU can set it."""
    from unittest import mock

    import torch

    from factlearn.evaluate import engine, scoring
    from factlearn.evaluate.scoring_reference import reference_score_continuations

    def reference_shared(model, tok, contexts, continuations, batch_size=16):
        flat = reference_score_continuations(model, tok, [c for c, ks in zip(contexts, continuations) for _ in ks],
                                             [k for ks in continuations for k in ks], batch_size)
        out, at = [], 0
        for ks in continuations:
            out.append(flat[at:at + len(ks)])
            at += len(ks)
        return out

    def timed(fn, *a, **kw):
        sync(args.device)
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        sync(args.device)
        return out, time.perf_counter() - t0

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.eval_dtype]
    model = build_model(args.shapes[args.eval_shape], tokenizer, args.device).to(dtype).eval()
    facts = [r for r in data["Facts"]][: 4 if args.cpu_smoke else None]
    tails = [f" {t}" for t in dict.fromkeys(r["tail"] for r in data["Facts"])]
    prompts = [t.format(head=f["head"]) for f in facts for t in PROBE_PROMPTS]
    scoring.score_shared(model, tokenizer, prompts[:2], [tails] * 2, batch_size=args.eval_batch)  # warm-up
    new, new_s = timed(scoring.score_shared, model, tokenizer, prompts, [tails] * len(prompts), args.eval_batch)
    ref, ref_s = timed(reference_shared, model, tokenizer, prompts, [tails] * len(prompts), args.eval_batch)
    gap = max(abs(a - b) for x, y in zip(new, ref) for a, b in zip(x, y))
    same = sum(max(range(len(x)), key=x.__getitem__) == max(range(len(y)), key=y.__getitem__) for x, y in zip(new, ref))
    say("scoring", f"probe-shaped: {len(prompts)} prompts x {len(tails)} tails: shared {new_s:.2f} s, per-pair "
        f"{ref_s:.2f} s: {ref_s / new_s:.2f}x; largest log-likelihood gap {gap:.1e}; same best tail {same}/{len(prompts)}",
        summary=True)
    requests = [pair for p in prompts for pair in scoring.encode_pairs(tokenizer, p, tails)]
    pad, max_len = scoring._pad_id(tokenizer), scoring.max_length(model, tokenizer)
    budgets = [(2048, 1024), scoring.PASS_BUDGETS["cuda"], (65536, 16384)]
    times = [timed(scoring.score_token_requests, model, requests, pad, max_len, 1024, batch_tokens=b, logit_rows=r)[1]
             for b, r in budgets]
    say("scoring", "packed pass budgets (columns, scored positions): " + "; ".join(
        f"{b}/{r}: {t:.2f} s" for (b, r), t in zip(budgets, times)) + f" (default {budgets[1]})", summary=True)
    limit = max(1, args.eval_limit // (1 if clock.left() > 60 else 4))
    kwargs = dict(tasks=list(CLOZE_TASKS), data=data, limit=limit, batch_size=args.eval_batch)
    ours, ours_s = timed(engine.evaluate, model, tokenizer, **kwargs)
    with mock.patch.object(engine, "score_shared", reference_shared):
        theirs, theirs_s = timed(engine.evaluate, model, tokenizer, **kwargs)
    answers = lambda res: [r["prediction"] for t in CLOZE_TASKS for r in res.records[t]]  # noqa: E731
    differ = sum(a != b for a, b in zip(answers(ours), answers(theirs)))
    say("scoring", f"cloze tasks ({limit} items each): shared {ours_s:.2f} s, per-choice {theirs_s:.2f} s: "
        f"{theirs_s / ours_s:.2f}x; items whose answers differ: {differ}", summary=True)
    if differ or same != len(prompts) or gap > (1e-4 if dtype == torch.float32 else 5e-2):
        FAILURES.append("scoring answers")


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="run every section tiny on CPU (tests the script)")
    p.add_argument("--budget", type=float, default=360.0,
                   help="seconds for all sections together (default 360: with start-up, well inside gpu_check.sh's 8 minutes)")
    p.add_argument("--steps", type=int, default=30, help="training steps per trainer (fewer when out of time)")
    p.add_argument("--batch", type=int, default=16, help="rows per step (the paper's recipe: 16)")
    p.add_argument("--train-seconds", type=float, default=45.0, help="time budget of one trainer run")
    p.add_argument("--eval-limit", type=int, default=40, help="items per task for the engine")
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--eval-seconds", type=float, default=100.0, help="time budget of the batch-1 baseline")
    p.add_argument("--eval-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="fp32 by default: random weights make near-ties common, and bf16 rounding differs "
                        "between batched and batch-1 runs")
    p.add_argument("--sections", default="peak,train,fsdp2,eval,scoring")
    args = p.parse_args(argv)
    args.cuda = not args.cpu_smoke
    args.device = args.device_kind = "cuda" if args.cuda else "cpu"
    args.shapes = SHAPES if args.cuda else TINY_SHAPES
    args.fsdp_shape = "llama-1b" if args.cuda else "tiny-b"
    args.eval_shape = "smollm2-135m" if args.cuda else "tiny-a"
    if args.cpu_smoke:
        args.steps, args.eval_limit, args.eval_batch = min(args.steps, 3), 1, 4
        args.train_seconds, args.eval_seconds = min(args.train_seconds, 20.0), min(args.eval_seconds, 20.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, or pass "
              "--cpu-smoke to exercise every section on CPU", file=sys.stderr)
        return 2
    import transformers

    clock, started = Clock(args.budget), time.perf_counter()
    device_name = torch.cuda.get_device_name(0) if args.cuda else f"CPU, {torch.get_num_threads()} threads"
    say("env", f"{device_name}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"budget {args.budget:.0f} s" + ("; CPU SMOKE: tiny shapes, numbers mean nothing" if args.cpu_smoke else ""))
    sections = args.sections.split(",")
    peak = matmul_peak(args.device, 2.0 if args.cuda else 0.5) if "peak" in sections else float("nan")
    unit, scale = ("TFLOP/s", 1e12) if args.cuda else ("GFLOP/s", 1e9)
    say("peak", f"{'bf16' if args.cuda else 'fp32'} matmul peak {peak / scale:.1f} {unit} (MFU below = 6 x params "
        "x tokens/s against it; params count the tied embedding once, as the head)", summary=True)
    data = world_data(20)
    texts = [r["text"] for c in ("Corpus_narrative", "Corpus_referencing") for r in data[c]]
    texts += [r["question"] for c in EVAL_TASKS for r in data[c]]
    tokenizer = make_tokenizer(texts, 4096 if args.cuda else 512)
    narrative = tokenizer([r["text"] for r in data["Corpus_narrative"]])["input_ids"]
    rows = [narrative[i % len(narrative)] for i in range(args.steps * args.batch)]
    say("data", f"20-country world; tokenizer: byte-level BPE, {len(tokenizer)} tokens; {len(rows)} training rows "
        f"of Corpus_narrative, {sum(map(len, rows)) / len(rows):.1f} tokens a row")
    plain: dict = {}
    if "train" in sections:
        run_section("train", train_section, args, clock, peak, tokenizer, rows, plain)
    if "fsdp2" in sections:
        run_section("fsdp2", fsdp2_section, args, clock, peak, tokenizer, rows, plain)
    if "eval" in sections:
        reset_memory(args.device)
        run_section("eval", eval_section, args, clock, tokenizer, data)
        say("eval", f"peak memory {peak_memory_gib(args.device):.2f} GiB")
    if "scoring" in sections:
        run_section("scoring", scoring_section, args, clock, tokenizer, data)
    print("\n--- summary ---\n" + "\n".join(SUMMARY), flush=True)
    verdict = "all sections ran" if not FAILURES else f"FAILED: {', '.join(FAILURES)}"
    say("done", f"{time.perf_counter() - started:.0f} s; {verdict}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    raise SystemExit(main())

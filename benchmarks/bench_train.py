"""Benchmark: factlearn's trainer vs two HF Trainer peers on SmolLM2 + the narrative corpus.

    .venv/bin/python benchmarks/bench_train.py --steps 6          # quick
    .venv/bin/python benchmarks/bench_train.py --steps 30 --method lora
    .venv/bin/python benchmarks/bench_train.py --runs reference,hf-packed,ours   # skip ours-bucketed

Every trainer gets the same rows (steps x batch rows of Corpus_narrative, 6-country world), the same
steps, seed, lr schedule and fp32 on CPU. "ours" is the default config; "ours-bucketed" adds the
opt-in bucket_by_length=true (less padding; less varied batches). Two peers (hf_reference.py):
"reference" is the original's recipe (HF Trainer, DataCollatorForLanguageModeling padding to a
multiple of 8, gradient checkpointing on); "hf-packed" is the configuration a knowledgeable user would
pick on CPU (HF Trainer, no gradient checkpointing, padding-free DataCollatorWithFlattening). Each
trainer runs in its own subprocess so that peak memory (ru_maxrss) is its own. Throughput counts real
(non-pad) tokens only, timed over the training loop (model loading excluded). FLOP/s uses 6 x
parameters x tokens against a fp32 matmul peak measured in the same run. Targets: >= 1.5x the
strongest peer, >= 75% of peak, final loss matched, peak memory of a SmolLM2 full finetune <= 3 GB
(printed in GiB = 2^30 bytes, as ru_maxrss / 2^20). On a shared machine wall time follows the other
jobs; with --threads 1 the per-step process CPU time (also printed) measures each trainer's own work.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = ("reference", "hf-packed", "ours", "ours-bucketed")
PEERS = ("reference", "hf-packed")


def corpus_rows(steps: int, batch: int, seed: int) -> list[str]:
    """steps x batch narrative rows (cycled if the corpus is smaller), in a seeded order."""
    from factlearn.data import load_text_corpus

    texts = list(load_text_corpus("Corpus_narrative", n_countries=6, seed=0)["text"])
    random.Random(seed).shuffle(texts)
    need = steps * batch
    return [texts[i % len(texts)] for i in range(need)]


def matmul_peak_gflops(n: int = 1024, seconds: float = 3.0) -> float:
    """Best fp32 GFLOP/s of repeated n x n matmuls on this process's threads."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.time() + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def mean_token_loss(model, tok, rows: list[str], batch: int = 8) -> float:
    """Loss of the final model on every training row, the same way for both trainers.

    Per-step losses are not comparable (each trainer groups rows into batches differently); the
    final model on the same rows is.
    """
    import torch

    from factlearn.train.data import collate
    from factlearn.train.loss import causal_lm_loss_module

    loss, ids = causal_lm_loss_module(model).eval(), tok(rows, truncation=True, max_length=1024)["input_ids"]
    total = sum(len(r) - 1 for r in ids)
    with torch.no_grad():
        summed = sum(float(loss(*collate(ids[i:i + batch], tok.pad_token_id))) for i in range(0, len(ids), batch))
    return summed / total


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_ours(rows: list[str], args, work: Path) -> dict:
    from factlearn.train import load_train_config, train

    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    overrides = [f"subset={corpus}", f"save={work / 'ours'}", "epochs=1", f"batch_size={args.batch}",
                 f"seed={args.seed}", f"lr={args.lr}", f"method={args.method}", "dtype=fp32", "overwrite=true",
                 f"bucket_by_length={str(args.only == 'ours-bucketed').lower()}"]
    stamps, cpu = [time.perf_counter()], [time.process_time()]  # eval hook at every step = a timestamp per step
    out = train(load_train_config("cpu_small", overrides + ["eval_every=1"]),
                eval_hook=lambda model, tok, step: stamps.append(time.perf_counter()) or cpu.append(time.process_time()) or {})
    rss = peak_rss_gb()  # the whole run: load, train, save
    summary = json.loads((out / "train_summary.json").read_text())
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines() if '"loss"' in line]
    from factlearn.models import load_model

    model, tok = load_model(str(out), device="cpu", dtype="fp32")
    return {"seconds": summary["train_seconds"], "losses": losses, "peak_rss_gb": rss,
            "step_seconds": [b - a for a, b in zip(stamps[1:], stamps[2:])],
            "step_cpu_seconds": [b - a for a, b in zip(cpu[1:], cpu[2:])],
            "final_model_loss": mean_token_loss(model, tok, rows)}


def run_reference(rows: list[str], args, work: Path) -> dict:
    """A peer (hf_reference.py): the original's recipe ("reference") or HF Trainer packed ("hf-packed")."""
    from hf_reference import hf_trainer_run

    from factlearn.models import load_model

    model, tok = load_model(None, device="cpu", dtype="fp32", trainable=True)
    if args.method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=64, lora_alpha=16, lora_dropout=0.0, use_rslora=True, task_type="CAUSAL_LM",
                                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    ids = tok(rows, truncation=True, max_length=1024)["input_ids"]
    peer = "packed" if args.only == "hf-packed" else "original"
    out = hf_trainer_run(model, tok, ids, peer, work / "reference", batch=args.batch, lr=args.lr, seed=args.seed,
                         bf16=False, use_cpu=True)
    rss = peak_rss_gb()
    return {"seconds": out["seconds"], "losses": out["losses"], "peak_rss_gb": rss, "step_seconds": out["step_seconds"],
            "step_cpu_seconds": out["step_cpu_seconds"],
            "final_model_loss": mean_token_loss(out["model"], tok, rows)}


def child(args) -> None:
    """One trainer in this process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from factlearn.models import load_tokenizer

    rows = corpus_rows(args.steps, args.batch, args.seed)
    tokens = sum(len(ids) for ids in load_tokenizer(None)(rows, truncation=True, max_length=1024)["input_ids"])
    with tempfile.TemporaryDirectory() as tmp:
        result = (run_reference if args.only in PEERS else run_ours)(rows, args, Path(tmp))
    result.update(tokens=tokens)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(which: str, args) -> dict:
    cmd = [sys.executable, __file__, "--only", which, "--steps", str(args.steps), "--batch", str(args.batch),
           "--lr", str(args.lr), "--seed", str(args.seed), "--threads", str(args.threads), "--method", args.method]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        sys.exit(f"{which} run failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--method", choices=["full", "lora"], default="full")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated subset of {','.join(RUNS)} (needs ours "
                   "and at least one peer)")
    p.add_argument("--only", choices=RUNS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        return child(args)
    runs = [r for r in RUNS if r in args.runs.split(",")]
    if "ours" not in runs or not set(runs) & set(PEERS) or set(args.runs.split(",")) - set(RUNS):
        p.error(f"--runs must name ours and at least one of {', '.join(PEERS)} (choices: {', '.join(RUNS)})")

    import torch

    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops()
    from factlearn.models import load_model

    model, _ = load_model(None, device="cpu", dtype="fp32")
    n_params = sum(p.numel() for p in model.parameters())
    del model
    print(f"SmolLM2-135M ({n_params / 1e6:.1f}M params), {args.method} finetune, {args.steps} steps x batch {args.batch}, "
          f"fp32, {args.threads} threads; fp32 matmul peak {peak:.1f} GFLOP/s; load average {os.getloadavg()[0]:.2f}",
          flush=True)
    results = {}
    for which in runs:  # printed as each finishes: a long run on a shared machine shows progress
        results[which] = r = spawn(which, args)
        tok_s = r["tokens"] / r["seconds"]
        later = sorted(r["step_seconds"][1:]) or r["step_seconds"]  # step 1 carries one-off allocations
        r["median_tok_s"] = r["tokens"] / len(r["step_seconds"]) / later[len(later) // 2]
        cpu = sorted(r["step_cpu_seconds"][1:]) or r["step_cpu_seconds"]
        r["median_cpu_tok_s"] = r["tokens"] / len(r["step_cpu_seconds"]) / cpu[len(cpu) // 2]
        gflops = 6 * n_params * tok_s / 1e9
        print(f"{which:>13}: {tok_s:7.1f} tokens/s  {r['seconds']:6.1f} s  {gflops:5.1f} GFLOP/s ({100 * gflops / peak:4.1f}% of peak)"
              f"  last-step loss {r['losses'][-1]:.3f}  final model on all rows {r['final_model_loss']:.3f}"
              f"  peak RSS {r['peak_rss_gb']:.2f} GiB  median step: {r['median_tok_s']:.1f} tokens/s"
              f" (process CPU time: {r['median_cpu_tok_s']:.1f})", flush=True)
    for label, key in (("whole loop", None), ("median step", "median_tok_s"),
                       ("median step, process CPU time", "median_cpu_tok_s")):
        speed = {w: (r[key] if key else r["tokens"] / r["seconds"]) for w, r in results.items()}
        ratios = {peer: speed["ours"] / speed[peer] for peer in PEERS if peer in speed}
        shown = ", ".join(f"vs {peer} {ratio:.2f}x" for peer, ratio in ratios.items())
        bucketed = (f"; ours-bucketed vs strongest {speed['ours-bucketed'] / max(speed[p] for p in ratios):.2f}x"
                    if "ours-bucketed" in speed else "")
        print(f"speed-up of ours ({label}): {shown}; vs the strongest peer ({max(ratios, key=lambda p: speed[p])}) "
              f"{min(ratios.values()):.2f}x (target >= 1.5x){bucketed}")
    end_peak = matmul_peak_gflops()
    print(f"real tokens per run: {results['ours']['tokens']}; fp32 matmul peak at the end {end_peak:.1f} GFLOP/s "
          f"(start {peak:.1f}); load average at the end {os.getloadavg()[0]:.2f} (the CPU may be shared: compare "
          "runs made close in time)")


if __name__ == "__main__":
    main()

"""Which trainings are bit-reproducible: the tiny model trained twice per thread count, and across counts.

Each training runs in a fresh process with `torch.set_num_threads(N)` (what a grid worker gets:
cores // workers), on the same corpus, seed and config; the trained weights are hashed tensor by tensor.
Prints one line per pair: identical bits or the largest absolute weight difference.

    .venv/bin/python benchmarks/numerics_repro.py [--hidden 256] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

TRAIN = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from factlearn.train import load_train_config, train
cfg = load_train_config("cpu_small", [f"model={sys.argv[2]}", f"subset={sys.argv[3]}", f"save={sys.argv[4]}",
                                      "epochs=2", "batch_size=4", "lr=3e-3", "seed=1"])
train(cfg)
"""


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(folder.rglob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(-1).numpy().tobytes())
    return h.hexdigest()[:16]


def max_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    import datasets

    from factlearn.testing import make_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="numerics-"))
    model = make_tiny_model(tmp / "model", hidden=args.hidden)
    corpus = tmp / "corpus.jsonl"
    texts = [f"The capital city of Land{i} is City{i}, a town by the sea number {i}." for i in range(24)]
    datasets.Dataset.from_dict({"text": texts}).to_json(str(corpus))
    trained = {}
    for n in args.threads:
        for rep in (1, 2):
            save = tmp / f"t{n}-r{rep}"
            subprocess.run([sys.executable, "-c", TRAIN, str(n), str(model), str(corpus), str(save)], check=True,
                           capture_output=True)
            trained[(n, rep)] = weights(save)
    result = {}
    for n in args.threads:
        a, b = trained[(n, 1)], trained[(n, 2)]
        result[f"{n} threads, twice"] = "identical bits" if digest(a) == digest(b) else f"max |diff| {max_diff(a, b):.3g}"
    for i, n in enumerate(args.threads):
        for m in args.threads[i + 1:]:
            a, b = trained[(n, 1)], trained[(m, 1)]
            result[f"{n} vs {m} threads"] = ("identical bits" if digest(a) == digest(b)
                                             else f"max |diff| {max_diff(a, b):.3g}")
    print(json.dumps({"hidden": args.hidden, "results": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

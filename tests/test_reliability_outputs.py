"""Atomic outputs and determinism: a killed writer leaves the old file or the new one; same seed, same bytes."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "factlearn"

# -- every write goes through factlearn.atomic -------------------------------------------------------

# Methods that write a file (or folder) themselves; called on anything.
WRITE_METHODS = {"write_text", "write_bytes", "to_json", "to_parquet", "to_csv", "savefig", "save_pretrained",
                 "save_to_disk", "save", "dump", "copy", "copy2", "copyfile", "copytree", "move"}
WRITE_FUNCTIONS = {"save_file"}  # safetensors.torch.save_file, imported by name
ATOMIC_CONTEXTS = {"atomic_path", "atomic_dir"}

# Raw writes that are deliberate, each with its reason. Key: (file under src/factlearn, enclosing function).
ALLOWED = {
    # The live log is an append-only progress file in the work folder: deleted on failure, and replaced by the
    # finished folder's train_log.jsonl (written inside atomic_dir); appending a line cannot be a rename.
    ("train/hooks.py", "RunLog.__init__"): "live log, replaced atomically at the end",
    ("train/hooks.py", "RunLog.add"): "live log, replaced atomically at the end",
    # Writes into `root`, the atomic_dir temp folder that its only caller, export(), passes in.
    ("data/export.py", "_write_config"): "inside export()'s atomic_dir",
    # A stream captured while training, inside the cell folder that CellStore.execute builds with atomic_dir.
    ("run/execute.py", "CellExecutor._train_here"): "inside the cell's atomic_dir (train and curve cells)",
    # The sharded ranks' output, captured the same way, in the same cell folder.
    ("run/sharded.py", "train_sharded"): "inside the cell's atomic_dir",
    # Rank 0 moves the ranks' staged output into `folder`, the temp folder CellStore.execute passes to commit.
    ("run/slurm.py", "_run_sharded_rank.commit"): "inside the cell's atomic_dir",
}


def _mode(call: ast.Call) -> str:
    if len(call.args) >= 2 and isinstance(call.args[1], ast.Constant):
        return str(call.args[1].value)
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return "r"


def _is_write(call: ast.Call) -> str | None:
    fn = call.func
    if isinstance(fn, ast.Name):
        if fn.id == "open" and set(_mode(call)) & set("wax+"):
            return "open(..., 'w')"
        return fn.id if fn.id in WRITE_FUNCTIONS else None
    if isinstance(fn, ast.Attribute) and fn.attr in WRITE_METHODS:
        if isinstance(fn.value, ast.Name) and fn.value.id == "copy":  # copy.copy(obj): an object, not a file
            return None
        return f".{fn.attr}()"
    return None


def _is_atomic_with(node: ast.AST) -> bool:
    if not isinstance(node, (ast.With, ast.AsyncWith)):
        return False
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            fn = call.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name in ATOMIC_CONTEXTS:
                return True
    return False


def raw_writes(source: str) -> list[tuple[str, int, str]]:
    """(enclosing function, line, call) for every write call not lexically inside `with atomic_path/atomic_dir`."""
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, scope: list[str], atomic: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        atomic = atomic or _is_atomic_with(node)
        if isinstance(node, ast.Call) and not atomic:
            what = _is_write(node)
            if what:
                found.append((".".join(scope), node.lineno, what))
        for child in ast.iter_child_nodes(node):
            visit(child, scope, atomic)

    visit(ast.parse(source), [], False)
    return found


def test_the_write_scanner_catches_raw_writes_and_accepts_atomic_ones():
    source = textwrap.dedent("""
        def bad(p, fig, ds):
            p.write_text("x")
            with open(p, "w") as f:
                json.dump({}, f)
            fig.savefig(p)
            ds.to_parquet(p)
            save_file({}, p)
            shutil.copy(p, p)
        def good(p, fig, cache):
            copy.copy(cache)
            with open(p) as f:
                f.read()
            with atomic_path(p) as tmp:
                fig.savefig(tmp)
            with atomic.atomic_dir(p) as tmp:
                (tmp / "a").write_text("x")
    """)
    assert [(fn, what) for fn, _, what in raw_writes(source)] == [
        ("bad", ".write_text()"), ("bad", "open(..., 'w')"), ("bad", ".dump()"), ("bad", ".savefig()"),
        ("bad", ".to_parquet()"), ("bad", "save_file"), ("bad", ".copy()")]


def test_every_write_in_src_goes_through_factlearn_atomic():
    stray, used = [], set()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "atomic.py":
            continue
        for scope, line, what in raw_writes(path.read_text()):
            if (rel, scope) in ALLOWED:
                used.add((rel, scope))
            else:
                stray.append(f"{rel}:{line} {scope}: {what}")
    assert not stray, ("write through factlearn.atomic (atomic_write_*, atomic_path, atomic_dir) or justify "
                       "in ALLOWED:\n" + "\n".join(stray))
    assert used == set(ALLOWED), f"stale ALLOWED entries: {set(ALLOWED) - used}"


# -- a killed writer leaves the old file or the new one ----------------------------------------------

WRITER = textwrap.dedent("""
    import sys, time
    from factlearn.atomic import atomic_path, atomic_write_bytes
    target, mode = sys.argv[1], sys.argv[2]
    chunk = b"N" * (1 << 20)
    if mode == "bytes":  # one big write: killed at an arbitrary moment inside it or around it
        print("start", flush=True)
        atomic_write_bytes(target, chunk * 64)
        print("done", flush=True)
        time.sleep(60)
    else:  # a library writing slowly into atomic_path's temp file
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                for i in range(10_000):
                    f.write(chunk[:65536])
                    f.flush()
                    if i == 4:
                        print("start", flush=True)
                    time.sleep(0.01)
""")

OLD = b"old complete content\n"


def _kill_writer(tmp_path: Path, mode: str, delay: float) -> bytes:
    target = tmp_path / f"out-{mode}-{delay}.bin"
    target.write_bytes(OLD)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "start"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return target.read_bytes()


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.1, 0.3, 2.0])
@pytest.mark.multiprocess
def test_sigkill_during_atomic_write_bytes_leaves_old_or_new(tmp_path, delay):
    content = _kill_writer(tmp_path, "bytes", delay)
    new = b"N" * (64 << 20)
    assert content == OLD or content == new, f"torn file of {len(content)} bytes"
    if delay >= 2.0:  # long enough for a 64 MiB write to finish: the new file must be there
        assert content == new


@pytest.mark.multiprocess
def test_sigkill_inside_atomic_path_keeps_the_old_file(tmp_path):
    assert _kill_writer(tmp_path, "slow", 0.2) == OLD
    # The abandoned temp file is a dot-name next to the target, never the target itself.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "out-slow-0.2.bin"]
    assert all(name.startswith(".out-slow-0.2.bin.") for name in leftovers), leftovers


@pytest.mark.multiprocess
def test_sigkill_inside_atomic_dir_never_shows_a_half_folder(tmp_path):
    code = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from factlearn.atomic import atomic_dir
        with atomic_dir(sys.argv[1], overwrite=True) as tmp:
            for i in range(1000):
                (Path(tmp) / f"part{i}").write_text("x")
                if i == 3:
                    print("start", flush=True)
                time.sleep(0.01)
    """)
    final = tmp_path / "folder"
    final.mkdir()
    (final / "old").write_text("complete")
    proc = subprocess.Popen([sys.executable, "-c", code, str(final)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "start"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert sorted(p.name for p in final.iterdir()) == ["old"]


# -- determinism on CPU --------------------------------------------------------------------------------

def _tree_digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def test_same_seed_gives_identical_data_weights_and_metrics(tiny_model_dir, tmp_path):
    """Data export, training and evaluation, each run twice in this process on CPU: byte-identical."""
    from factlearn.data import load_cca
    from factlearn.data.export import export
    from factlearn.data.world import generate_world
    from factlearn.evaluate import evaluate
    from factlearn.models import load_model
    from factlearn.train import train
    from factlearn.train.config import load_train_config

    # Data: two exports of the same world, every file byte-identical.
    a = export(generate_world(6, 3), tmp_path / "data-a")
    b = export(generate_world(6, 3), tmp_path / "data-b")
    assert _tree_digest(a) == _tree_digest(b)
    assert _tree_digest(a) != _tree_digest(export(generate_world(6, 4), tmp_path / "data-c"))

    # Training: same config and seed -> identical weights and losses (timings aside).
    def run(name: str, seed: int) -> Path:
        return train(load_train_config("cpu_small", [
            f"model={tiny_model_dir}", "n_countries=6", "data_seed=3", f"seed={seed}", "epochs=1", "batch_size=16",
            "lr=1e-3", f"save={tmp_path / name}", "device=cpu"]))

    first, second, other = run("train-a", 1), run("train-b", 1), run("train-c", 2)
    losses = lambda out: [r["loss"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines())
                          if "loss" in r]
    summary = lambda out: json.loads((out / "train_summary.json").read_text())
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    assert losses(first) == losses(second) and summary(first)["final_loss"] == summary(second)["final_loss"]
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()  # seed matters

    # Evaluation: the trained model, loaded twice, gives identical metrics and per-item records.
    data = load_cca(None, n_countries=6, seed=3)
    results = []
    for _ in range(2):
        model, tok = load_model(str(first), device="cpu")
        res = evaluate(model, tok, tasks=["Eval_QA", "Eval_multiple_choice"], data=data, limit=6, batch_size=4)
        results.append(json.dumps({"metrics": res.metrics, "records": res.records}, sort_keys=True))
    assert results[0] == results[1]

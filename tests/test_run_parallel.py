"""`factlearn run` with cells in parallel (workers=N) and `--plan`: the same results as the sequential grid,
resume after SIGKILL, a plan that prints estimates and writes nothing, and bad input refused in one line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factlearn.run.config import load_run_config
from factlearn.run.plan import plan_grid
from factlearn.report.build import build_report
from factlearn.run.runner import execute_plan
from factlearn.run.sharded import SHARDED_CONFIG
from test_run_grid import done_markers, kill_after_first_cell, tiny_overrides, write_config

ROOT = Path(__file__).resolve().parents[1]
LLAMA3_8B = ROOT / "examples" / "model-configs" / "llama-3-8b"
ENV = dict(os.environ)  # conftest.py set the offline test environment in os.environ
# What depends on the clock or the cell's temporary folder name, not on the results
CLOCK_KEYS = ("tokens_per_s", "train_seconds", "seconds", "started", "finished", "cpu_seconds", "save")


def factlearn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "factlearn", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=ENV)


def cell_files(run_dir: Path) -> dict[str, object]:
    """Every file of every finished cell, by path inside cells/: bytes, or for the files that record
    times (train logs, summaries, done markers) their content without the clock and temp-path fields."""
    root = run_dir / "cells"
    files = {}
    for p in sorted(root.rglob("*")):
        name = str(p.relative_to(root))
        if not p.is_file() or p.name == "train_stderr.txt":  # the trainer's tqdm bar: timings only
            continue
        text = lambda: p.read_text().replace(str(run_dir), "<run>")  # noqa: E731 (forgetting's from_model)
        if p.name == "config.yaml":
            files[name] = [line for line in text().splitlines() if not line.startswith("save:")]
        elif p.suffix == ".jsonl" and "log" in p.name:
            files[name] = [_no_clock(json.loads(line)) for line in text().splitlines()]
        elif p.name in ("done.json", "train_summary.json") or (name.startswith("train-") and p.name == "result.json"):
            files[name] = _no_clock(json.loads(text()))
        else:
            files[name] = p.read_bytes()
    return files


def _no_clock(obj):
    if isinstance(obj, dict):
        return {k: _no_clock(v) for k, v in obj.items() if k not in CLOCK_KEYS}
    return obj


@pytest.mark.multiprocess
def test_two_workers_give_the_sequential_grids_results(tiny_model_dir, tmp_path):
    """Same cells, same per-item records and trained weights, same results.json metrics; cells overlapped in
    time, and no cell started before the cells it reads from had finished."""
    import torch

    from factlearn.processes import cpu_cores

    threads = torch.get_num_threads()
    # Each worker gets cores // workers threads; the sequential run uses the same count, because float
    # sums (and so the last bits of a loglik) depend on how a matmul is split over threads.
    torch.set_num_threads(max(1, cpu_cores() // 2))
    try:
        sequential = tmp_path / "sequential"
        execute_plan(plan_grid(load_run_config("default", tiny_overrides(tiny_model_dir))), sequential, profile="t",
                     write_report=build_report)
    finally:
        torch.set_num_threads(threads)
    parallel = tmp_path / "parallel"
    cfg = load_run_config("default", tiny_overrides(tiny_model_dir) + ["workers=2"])
    outcome = execute_plan(plan_grid(cfg), parallel, profile="t", write_report=build_report)

    a, b = cell_files(sequential), cell_files(parallel)
    assert a.keys() == b.keys() and len(outcome.executed) == len(done_markers(parallel)) == 17
    # records.jsonl, model weights, probe/ablation/control results byte for byte; logs but for the clock
    assert [name for name in a if a[name] != b[name]] == []
    assert any(name.endswith("records.jsonl") for name in a) and any(name.endswith(".safetensors") for name in a)
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (sequential, parallel))
    assert [e["metrics"] for e in ra["evaluations"]] == [e["metrics"] for e in rb["evaluations"]]
    assert ra["probes"] == rb["probes"] and ra["ablations"] == rb["ablations"] and ra["control"] == rb["control"]
    assert ra["table"] == rb["table"] and rb["run_config"]["workers"] == 2

    info = {p.parent.name: json.loads(p.read_text()) for p in (parallel / "cells").glob("*/done.json")}
    spans = sorted((i["started"], i["finished"]) for i in info.values())
    assert any(s2 < f1 for (_, f1), (s2, _) in zip(spans, spans[1:])), "no two cells ran at the same time"
    deps = {c["key"]: c["deps"] for c in json.loads((parallel / "plan.json").read_text())["cells"]}
    assert all(info[k]["started"] >= info[d]["finished"] for k, ds in deps.items() for d in ds)


@pytest.mark.multiprocess
def test_killed_parallel_run_resumes_and_its_workers_die_with_it(tiny_model_dir, tmp_path):
    config = write_config(tmp_path / "tiny.yaml", tiny_model_dir, [
        "corpora=[Corpus_narrative]", "forgetting.enabled=false", "analyses=[]", "workers=2",
        "tasks=[Eval_QA,Eval_multiple_choice]"])
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "factlearn", "run", str(config), "--out", str(run_dir)]
    finished = kill_after_first_cell(cmd, run_dir, ENV)
    plan = json.loads((run_dir / "plan.json").read_text())
    assert finished and len(finished) < len(plan["cells"]), "the kill came too early or too late"
    time.sleep(5)
    assert done_markers(run_dir) == finished  # the workers died with the parent: nothing finished after it

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = done_markers(run_dir)
    assert len(after) == len(plan["cells"]) and all(after[k] == t for k, t in finished.items())
    invocation = json.loads((run_dir / "last_invocation.json").read_text())
    assert set(invocation["reused"]) == set(finished) and set(invocation["executed"]) == set(after) - set(finished)
    assert [p.name for p in (run_dir / "cells").iterdir() if p.name.startswith(".")] == []


def _workers_of(pid: int) -> list[int]:
    """PIDs of the grid's worker processes (spawned children running multiprocessing's spawn_main)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and "spawn_main" in cmd:
            pids.append(int(proc.name))
    return sorted(pids)


@pytest.mark.multiprocess
def test_a_worker_killed_by_the_kernel_ends_the_run_with_one_line(tiny_model_dir, tmp_path):
    """SIGKILL of one worker (what the out-of-memory killer sends): one `factlearn: error:` line naming
    the worker, its exit code and the likely cause, exit code 1, no traceback (that needs --debug)."""
    import re
    import signal

    config = write_config(tmp_path / "tiny.yaml", tiny_model_dir, [
        "corpora=[Corpus_narrative]", "forgetting.enabled=false", "analyses=[]", "workers=2", "control=false",
        "tasks=[Eval_QA]", "recipes.full.overrides=[epochs=60,batch_size=8,lr=1e-3]"])
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "factlearn", "run", str(config), "--out", str(run_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    while len(_workers_of(proc.pid)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2, "the run started no workers"
    time.sleep(2)  # let them take cells
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    errors = [line for line in err.splitlines() if line.startswith("factlearn: error:")]
    assert len(errors) == 1, err[-2000:]
    assert re.fullmatch(r"factlearn: error: worker [01] died \(exit code -9\) while computing .+; out of memory\? "
                        r"fewer workers need less", errors[0]), errors[0]
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # the other worker ended with the run


def test_a_machine_failure_is_one_line_and_its_traceback_needs_debug(monkeypatch, capsys):
    import factlearn.run.cli as run_cli
    from factlearn.cli import main
    from factlearn.errors import MachineFailure

    message = "worker 1 died (exit code -9) while computing eval x; out of memory? fewer workers need less"

    def dies(args):
        raise MachineFailure(message)

    monkeypatch.setattr(run_cli, "run_command", dies)
    monkeypatch.delenv("FACTLEARN_DEBUG", raising=False)
    assert main(["run"]) == 1
    assert capsys.readouterr().err == f"factlearn: error: {message}\n"
    with pytest.raises(MachineFailure, match="worker 1 died"):
        main(["--debug", "run"])


# A grid with two training cells (plain, then active forgetting from its weights) and one eval each
SHARDED_GRID = ["corpora=[Corpus_narrative]", "analyses=[]", "control=false", "forgetting.methods=[full]",
                "tasks=[Eval_QA,Eval_multiple_choice_cloze]"]


@pytest.mark.multiprocess
def test_sharded_training_cells_end_where_the_unsharded_grid_ends(tiny_model_dir, tmp_path):
    """train_sharding=fsdp2: each training cell runs as 2 FSDP2 ranks (torchrun, gloo) splitting the
    recipe's batch, alone on the machine; forgetting resets sharded weights. Same cells (keys), weights
    within atol 1e-5 of the unsharded grid (float sums in another order), the same eval metrics."""
    from safetensors.torch import load_file
    import torch

    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    execute_plan(plan_grid(load_run_config("default", tiny_overrides(tiny_model_dir) + SHARDED_GRID)), plain,
                 profile="t", write_report=build_report)
    cfg = load_run_config("default", tiny_overrides(tiny_model_dir) + SHARDED_GRID +
                          ["train_sharding=fsdp2", "train_processes=2", "workers=2"])
    execute_plan(plan_grid(cfg), sharded, profile="t", write_report=build_report)

    cells = json.loads((sharded / "plan.json").read_text())["cells"]
    train_keys = [c["key"] for c in cells if c["kind"] == "train"]
    assert done_markers(plain).keys() == done_markers(sharded).keys() and len(train_keys) == 2
    for key in train_keys:
        told = pickle.loads((sharded / "cells" / key / SHARDED_CONFIG).read_bytes())  # the ranks' TrainConfig
        assert told.sharding == "fsdp2" and told.batch_size == 4  # the recipe's 8 split over 2 ranks
        sa, sb = (json.loads((d / "cells" / key / "model" / "train_summary.json").read_text()) for d in (plain, sharded))
        assert (sa["processes"], sb["processes"], sb["sharding"]) == (1, 2, "fsdp2")
        assert sa["global_batch_rows"] == sb["global_batch_rows"] == 8 and sa["steps"] == sb["steps"]
        a, b = (load_file(d / "cells" / key / "model" / "model.safetensors") for d in (plain, sharded))
        assert a.keys() == b.keys()
        assert max((a[n] - b[n]).abs().max().item() for n in a) < 1e-5
        assert not torch.equal(a["model.norm.weight"], load_file(Path(tiny_model_dir) / "model.safetensors")
                               ["model.norm.weight"])  # it trained
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (plain, sharded))
    assert [e["metrics"] for e in ra["evaluations"]] == [e["metrics"] for e in rb["evaluations"]]

    info = {p.parent.name: json.loads(p.read_text()) for p in (sharded / "cells").glob("*/done.json")}
    for key in train_keys:  # nothing ran beside a sharded cell: it holds every device
        t = info[key]
        assert all(o["finished"] <= t["started"] or o["started"] >= t["finished"] for k, o in info.items() if k != key)


def _ranks_of(run_dir: Path) -> list[int]:
    """PIDs of the processes training a cell of `run_dir` sharded (their command line names its config)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(run_dir) in cmd and SHARDED_CONFIG in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.mark.multiprocess
def test_killing_the_grid_kills_the_ranks_of_its_sharded_cell(tiny_model_dir, tmp_path):
    """torchrun puts each rank in a session of its own; the grid's launcher and the ranks die with their
    parents, so a SIGKILLed run leaves nothing training into its folder, and the rerun completes."""
    config = write_config(tmp_path / "tiny.yaml", tiny_model_dir, SHARDED_GRID + [
        "train_sharding=fsdp2", "train_processes=2", "recipes.full.overrides=[epochs=40,batch_size=8,lr=1e-3]"])
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "factlearn", "run", str(config), "--out", str(run_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 240
    while len(_ranks_of(run_dir)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert len(_ranks_of(run_dir)) >= 2, "the sharded training cell never started its ranks"
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.time() + 30
    while _ranks_of(run_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert _ranks_of(run_dir) == []
    assert not [key for key in done_markers(run_dir) if key.startswith("train-")]  # the killed cell is not done


@pytest.mark.parametrize("extra, message", [
    (["train_sharding=fsdp2"], "needs its processes"),
    (["train_sharding=fsdp2", "train_processes=1"], "at least 2 processes"),
    (["train_processes=2"], "add train_sharding=fsdp2"),
    (["train_sharding=zero3"], "train_sharding must be one of"),
    (["train_sharding=fsdp2", "train_processes=3"], "does not split over 3"),
])
def test_bad_sharded_training_input_is_one_line_and_writes_no_cell(tiny_model_dir, tmp_path, extra, message):
    proc = factlearn("run", *tiny_overrides(tiny_model_dir), *SHARDED_GRID, *extra, "--out", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("factlearn: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr
    assert not list((tmp_path / "run").glob("cells/*/done.json"))


def _plan_lines(stdout: str) -> dict[str, list[str]]:
    """Cell lines of a --plan report, by title."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if parts and parts[0].isdigit():
            rows[" ".join(parts[1:-4])] = parts[-4:]
    return rows


def test_plan_for_llama3_8b_on_eight_gpus_prints_estimates_and_writes_nothing(tmp_path):
    """The paper profile on 8 x 80 GB from the config alone: full finetune fits only sharded with FSDP2."""
    common = ["run", "paper", f"models=[{LLAMA3_8B}]", "--out", str(tmp_path / "run"), "--plan",
              "hardware.gpus=8", "hardware.gpu_memory_gb=80"]
    sharded = factlearn(*common, "hardware.sharding=fsdp2", cwd=tmp_path)
    assert sharded.returncode == 0, sharded.stderr
    assert "on 8 x 80.0 GB GPUs, training sharded with FSDP2" in sharded.stdout
    assert "8.03B parameters, 32 layers" in sharded.stdout and "characters / 4" in sharded.stdout
    rows = _plan_lines(sharded.stdout)
    full = [r for t, r in rows.items() if t.startswith("train llama-3-8b full")]
    lora = [r for t, r in rows.items() if t.startswith("train llama-3-8b lora")]
    assert full and lora and all(r[-1] == "yes" for r in rows.values())
    # 16 bytes/param of 8.03B over 8 devices is 16.1 GB, plus the gathered layers and activations
    assert all(16 < float(r[1]) < 40 and r[2] == "GB" for r in full)
    assert "every cell fits" in sharded.stdout and "wall on 8 GPUs" in sharded.stdout

    unsharded = factlearn(*common, cwd=tmp_path)
    assert unsharded.returncode == 0, unsharded.stderr
    rows = _plan_lines(unsharded.stdout)
    full = [r for t, r in rows.items() if t.startswith("train llama-3-8b full")]
    assert all(float(r[1]) > 128 and r[-1] == "NO" for r in full)  # 16 bytes/param on one GPU
    assert "hardware.sharding=fsdp2" in unsharded.stdout
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing else


def test_plan_of_a_runnable_grid_counts_real_tokens_and_marks_finished_cells(tiny_model_dir, tmp_path):
    overrides = tiny_overrides(tiny_model_dir) + ["corpora=[Corpus_narrative]", "forgetting.enabled=false",
                                                  "analyses=[]", "tasks=[Eval_QA]", "control=false"]
    run_dir = tmp_path / "run"
    before = factlearn("run", *overrides, "--out", str(run_dir), "--plan", cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "characters / 4" not in before.stdout and not run_dir.exists()
    assert [r[-1] for r in _plan_lines(before.stdout).values()] == ["yes"] * 3
    execute_plan(plan_grid(load_run_config("default", overrides)), run_dir, profile="t", write_report=build_report)
    after = factlearn("run", *overrides, "--out", str(run_dir), "--plan", cwd=tmp_path)
    assert [r[-1] for r in _plan_lines(after.stdout).values()] == ["done"] * 3
    assert "for 0 cells to compute (3 done)" in after.stdout


def test_memory_model_of_a_full_finetune_and_lora():
    from factlearn.run.estimate import GB, Hardware, lora_params, size_from_config, train_peak_bytes

    size = size_from_config(json.loads((LLAMA3_8B / "config.json").read_text()))
    assert size.stored_params == pytest.approx(8.03e9, rel=1e-3) and size.num_layers == 32
    one, eight = Hardware("cuda", 1, 80 * GB), Hardware("cuda", 8, 80 * GB, sharding="fsdp2")
    shape = dict(autocast=True, micro_rows=1, row_tokens=1, checkpointing=True)
    full_one = train_peak_bytes(size, one, trainable=None, **shape)
    full_eight = train_peak_bytes(size, eight, trainable=None, **shape)
    assert full_one > 16 * size.stored_params and full_eight < full_one / 5
    adapter = lora_params(size, 64, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    assert adapter == pytest.approx(167.8e6, rel=1e-2)  # rank 64 on all seven projections of 32 layers
    lora_one = train_peak_bytes(size, one, trainable=adapter, **shape)
    assert 4 * size.stored_params + 16 * adapter < lora_one < full_one


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.parametrize("extra, message", [
    (lambda m, t: [f"devices=[{_visible_gpus()}]"], "do not exist"),
    (lambda m, t: ["workers=18"], "workers=18 is more than the 17 cells"),
    (lambda m, t: ["workers=0"], "workers must be >= 1"),
    (lambda m, t: [f"models=[{t / 'no-config'}]", "--plan"], "has no config.json"),
    (lambda m, t: [f"models=[{t / 'bad-config'}]", "--plan"], "cannot read the config of model"),
    (lambda m, t: ["models=[nobody/no-such-model]", "--plan"], "not in the local Hugging Face cache"),
    (lambda m, t: ["--plan", "hardware.gpus=1", "hardware.gpu_memory_gb=80", "hardware.sharding=fsdp2"],
     "shards nothing"),
    (lambda m, t: ["hardware.gpus=8", "hardware.gpu_memory_gb=80"], "a run uses this machine"),
])
def test_bad_parallel_and_plan_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, extra, message):
    (tmp_path / "no-config").mkdir()
    (tmp_path / "bad-config").mkdir()
    (tmp_path / "bad-config" / "config.json").write_text("{not json")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = extra(tiny_model_dir, tmp_path)
    plan = args.index("--plan") if "--plan" in args else len(args)
    proc = factlearn("run", *tiny_overrides(tiny_model_dir), *args[:plan], "--out", str(tmp_path / "run"),
                     *args[plan:], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("factlearn: error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, no lock file


@pytest.mark.multiprocess
def test_a_cell_failing_in_a_worker_stops_the_run_with_its_traceback(tmp_path):
    from factlearn.run.cells import Cell, CellStore
    from factlearn.run.config import RunConfig
    from factlearn.run.grid import GridPlan
    from factlearn.run.workers import CellFailed, WorkerSlot, plan_payload, run_parallel

    broken = Cell("nonsense", {"x": 1}, labels={"model": "m"})
    after = Cell("eval", {"x": 2}, labels={"model": "m"}, deps=(broken.key,))
    plan = GridPlan(cfg=RunConfig(), world=None, models={}, cells=[broken, after])
    store = CellStore(tmp_path)
    started = []
    with pytest.raises(CellFailed, match="nonsense m") as failure:
        run_parallel(plan.cells, plan_payload(plan), store, [WorkerSlot(0, None, 1), WorkerSlot(1, None, 1)],
                     done=set(), on_start=started.append, on_finish=lambda c, s: None,
                     on_progress=lambda c, d, t: None, on_log=lambda text: None)
    assert "AttributeError" in str(failure.value)  # the worker's traceback
    assert started == [broken]  # its dependent never started
    assert not store.is_done(broken.key) and list((tmp_path / "cells").iterdir()) == []

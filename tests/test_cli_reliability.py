"""The whole command line against bad input: one line on stderr, exit 2, no traceback, nothing left behind.

Every case runs the real CLI in a subprocess from an empty working folder. Besides the exit code and the
message, each case checks that neither the working folder nor the shared input folder changed, so a
command that fails half-way cannot leave partial outputs (default output folders are relative to the
working folder, explicit ones point into it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

FACTLEARN = [sys.executable, "-m", "factlearn"]
ENV = dict(os.environ)  # conftest.py set the offline test environment in os.environ
ENV.pop("FACTLEARN_DEBUG", None)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under `folder` (hidden temp files included) with size and mtime: any write shows up."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


# -- shared inputs, built once -----------------------------------------------------------------------

@dataclass
class Inputs:
    root: Path
    tiny: Path  # 4 layers, hidden 64
    tiny_2layers: Path  # a differently shaped base
    adapter: Path  # a LoRA adapter trained on `tiny`


CORPUS = [f"The capital city of Land{i} is Town{i}. Town{i} is famous for its dolphin." for i in range(8)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir) -> Inputs:
    import shutil

    from factlearn.testing import make_tiny_model
    from factlearn.train import train
    from factlearn.train.config import load_train_config

    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "a_file").write_text("not a folder\n")
    (root / "corpus.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS))
    (root / "empty.jsonl").write_text("")
    (root / "corrupt.jsonl").write_text('{"text": "fine"}\n{"text": broken\n')
    (root / "bad.yaml").write_text("lr: [1e-4\n")
    (root / "bad_log.jsonl").write_text('{"step": 1, "loss": \n')
    (root / "bad_probes.json").write_text('{"label": "x"')
    jsonl_src = root / "cca_corrupt_jsonl" / "jsonl" / "Facts"
    jsonl_src.mkdir(parents=True)
    (jsonl_src / "train.jsonl").write_text('{"head": "Andoria", "relation": \n')
    parquet_src = root / "cca_corrupt_parquet" / "parquet" / "Facts"
    parquet_src.mkdir(parents=True)
    (parquet_src / "train.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)  # parquet magic, no footer
    (root / "a_folder").mkdir()
    # A copy of the tiny model without weights, and one whose weights file is cut short.
    shutil.copytree(tiny_model_dir, root / "no_weights")
    (root / "no_weights" / "model.safetensors").unlink()
    shutil.copytree(tiny_model_dir, root / "truncated")
    weights = root / "truncated" / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    tiny_2layers = make_tiny_model(root / "tiny_2layers", num_layers=2)
    # A real LoRA adapter of the 4-layer tiny model (a few steps; its weights do not matter here).
    adapter = train(load_train_config("cpu_small", [
        f"model={tiny_model_dir}", f"subset={root / 'corpus.jsonl'}", f"save={root / 'adapter'}",
        "method=lora", "lora.r=2", "epochs=1", "batch_size=4", "n_countries=6"]))
    return Inputs(root, Path(tiny_model_dir), tiny_2layers, Path(adapter))


# -- the cases -------------------------------------------------------------------------------------
# (id, argv with {root}/{tiny}/{tiny2}/{adapter} placeholders, regex the one-line message must match)

CASES = [
    # model
    ("model-hub-id-offline", ["model", "some-org/some-model"], r"cannot reach the Hugging Face hub.*offline.*use the alias"),
    ("model-missing-weights", ["model", "{root}/no_weights"], r"has no weights.*re-save it"),
    ("model-truncated-weights", ["model", "{root}/truncated"], r"truncated.*re-save or re-convert"),
    ("model-nonexistent-path", ["model", "./no_such_model"], r"not an alias.*check the spelling"),
    # data
    ("data-generate-out-is-file", ["data", "generate", "{root}/a_file"], r"is a file; choose a folder"),
    ("data-generate-out-of-range", ["data", "generate", "out", "--n-countries", "0"], r"n_countries=0 is out of range; use 2\.\."),
    ("data-show-unknown-config", ["data", "show", "Fact"], r"unknown CCA config 'Fact'; use one of"),
    ("data-show-nonexistent-source", ["data", "show", "Facts", "--source", "/no/such/folder"], r"not an existing folder.*use the built-in generator"),
    ("data-show-corrupt-jsonl", ["data", "show", "Facts", "--source", "{root}/cca_corrupt_jsonl"], r"line 1: invalid JSON.*fix or remove"),
    ("data-show-corrupt-parquet", ["data", "show", "Facts", "--source", "{root}/cca_corrupt_parquet"], r"not a readable parquet file.*re-export"),
    ("data-audit-empty-corpus", ["data", "audit", "{root}/empty.jsonl"], r"has no rows"),
    ("data-audit-json-is-folder", ["data", "audit", "Corpus_narrative", "--n-countries", "2", "--json", "{root}/a_folder"], r"is an existing folder; choose a file path"),
    # train
    ("train-malformed-override", ["train", "cpu_small", "lr"], r"override 'lr' is not of the form key=value"),
    ("train-unknown-key", ["train", "lrr=1e-4"], r"unknown train key 'lrr'; valid keys: .*\blr\b"),
    ("train-unknown-nested-key", ["train", "lora.rank=4"], r"unknown train key 'lora\.rank'"),
    ("train-wrong-type", ["train", "epochs=many"], r"'epochs'.*could not be converted.*epochs=5"),
    ("train-out-of-range", ["train", "lr=-1"], r"lr must be > 0, got -1"),
    ("train-invalid-yaml", ["train", "{root}/bad.yaml"], r"bad\.yaml is not valid YAML"),
    ("train-missing-yaml", ["train", "nope.yaml"], r"nope\.yaml does not exist; pass an existing YAML path"),
    ("train-empty-corpus", ["train", "model={tiny}", "subset={root}/empty.jsonl", "save=out"], r"empty\.jsonl is empty; pass a file with at least one"),
    ("train-corrupt-corpus", ["train", "model={tiny}", "subset={root}/corrupt.jsonl", "save=out"], r"cannot read corpus file .*corrupt\.jsonl.*JSON lines"),
    ("train-save-is-file", ["train", "model={tiny}", "save={root}/a_file"], r"save=.*a_file is a file, not a folder; choose another"),
    ("train-hub-dataset-offline", ["train", "model={tiny}", "subset=some-org/some-data", "save=out"], r"some-org/some-data.*not in the local Hugging Face cache.*use the built-in generator"),
    ("train-forget-layer-out-of-range", ["train", "model={tiny}", "n_countries=2", "epochs=2", "forget.start_layer=99",
                                         "forget.at_epoch=1", "save=out"], r"forget\.start_layer=99 is outside 0\.\.4 for this 4-layer model"),
    ("train-curve-epochs-unsorted", ["train", "curve_epochs=[2,1]", "save=out"], r"curve_epochs=\[2,1\] is unsorted; list the epochs in increasing order"),
    ("train-curve-epochs-duplicates", ["train", "curve_epochs=[1,1]", "save=out"], r"curve_epochs=\[1,1\] has duplicates; list each epoch once"),
    ("train-curve-epochs-exceed", ["train", "epochs=2", "curve_epochs=[9]", "save=out"], r"exceeds the training length epochs=2; raise epochs .* or drop 9"),
    ("train-negative-warmup-steps", ["train", "warmup_steps=-1", "save=out"], r"warmup_steps must be >= 0.*got -1"),
    # eval / export-lm-eval
    ("eval-limit-zero", ["eval", "{tiny}", "--limit", "0"], r"--limit must be a positive number"),
    ("eval-limit-not-int", ["eval", "{tiny}", "--limit", "abc"], r"invalid int value: 'abc'; see `factlearn eval --help`"),
    ("eval-unknown-task", ["eval", "{tiny}", "--tasks", "Eval_nope"], r"unknown task\(s\) Eval_nope; valid tasks"),
    ("eval-out-is-file", ["eval", "{tiny}", "--limit", "1", "--out", "{root}/a_file"], r"a_file exists and is a file; choose a folder"),
    ("eval-fewshot-too-large", ["eval", "{tiny}", "--n-countries", "2", "--num-fewshot", "9"], r"num_fewshot 9 is too large.*use --num-fewshot 3 or less"),
    ("eval-adapter-base-mismatch", ["eval", "{tiny2}", "--adapter", "{adapter}", "--limit", "1", "--n-countries", "6", "--out", "out"],
     r"trained on a different base model.*num_hidden_layers.*pass the base model it was trained on"),
    ("export-out-is-file", ["export-lm-eval", "{root}/a_file"], r"a_file already exists; pass another folder or --overwrite"),
    ("export-negative-fewshot", ["export-lm-eval", "out", "--num-fewshot", "-1"], r"num_fewshot must be >= 0"),
    # probe / ablate / curves
    ("probe-nonexistent-model", ["probe", "./no_such_model"], r"not an alias.*check the spelling"),
    ("probe-corrupt-compare", ["probe", "{tiny}", "--compare", "{root}/bad_probes.json"], r"cannot read probe result.*pass a probes\.json"),
    ("probe-out-is-file", ["probe", "{tiny}", "--out", "{root}/a_file"], r"a_file exists and is a file"),
    ("ablate-full-without-base", ["ablate", "{tiny}"], r"is a full model; pass --base"),
    ("ablate-bad-k-grid", ["ablate", "{adapter}", "--k-grid", "a,b"], r"--k-grid 'a,b' must be comma-separated integers"),
    ("ablate-unknown-task", ["ablate", "{adapter}", "--tasks", "nope"], r"unknown task\(s\).*choose from"),
    ("curves-nonexistent-log", ["curves", "no_such_log.jsonl"], r"does not exist; pass the train_log\.jsonl"),
    ("curves-corrupt-log", ["curves", "{root}/bad_log.jsonl"], r"bad_log\.jsonl:1: not valid JSON"),
    ("curves-out-not-png", ["curves", "{adapter}", "--out", "plot.txt"], r"--out plot\.txt must be a \.png file"),
    # run / report
    ("run-unknown-key", ["run", "sedes=[1]"], r"unknown run key 'sedes'; valid keys: .*seeds"),
    ("run-wrong-type", ["run", "eval_limit=lots"], r"'eval_limit'.*could not be converted"),
    ("run-out-of-range", ["run", "methods=[sgd]"], r"methods has unknown value\(s\) \['sgd'\]; choose from: full, lora"),
    ("run-malformed-override", ["run", "default", "seeds"], r"override 'seeds' is not of the form key=value"),
    ("run-out-is-file", ["run", "--out", "{root}/a_file"], r"a_file exists and is a file"),
    ("report-nonexistent-folder", ["report", "no_such_run"], r"not a factlearn run folder.*pass the folder that `factlearn run` wrote"),
    ("report-not-a-run-folder", ["report", "{root}/a_folder"], r"not a factlearn run folder"),
    # the command line itself
    ("unknown-command", ["frobnicate"], r"invalid choice: 'frobnicate'.*see `factlearn --help`"),
]


def _argv(template: list[str], inp: Inputs) -> list[str]:
    return [a.format(root=inp.root, tiny=inp.tiny, tiny2=inp.tiny_2layers, adapter=inp.adapter) for a in template]


def assert_one_line_error(proc: subprocess.CompletedProcess, pattern: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert re.match(r"^factlearn( [\w-]+)?: error: ", lines[0]), lines[0]
    assert re.search(pattern, lines[0]), f"{pattern!r} not in: {lines[0]}"
    return lines[0]


@pytest.mark.parametrize("argv,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(run_cli, argv, pattern, inputs, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(inputs.root)
    proc = run_cli(*_argv(argv, inputs), cwd=work, process=True)  # a real process: what a user's shell sees
    assert_one_line_error(proc, pattern)
    assert list(work.iterdir()) == [], f"left behind: {[p.name for p in work.iterdir()]}"
    assert snapshot(inputs.root) == before, "the command changed its input folder"


def test_there_are_enough_cases_over_every_command():
    commands = {c[1][0] for c in CASES}
    assert len(CASES) >= 20
    assert {"model", "data", "train", "eval", "export-lm-eval", "probe", "ablate", "curves", "run", "report"} <= commands


def test_unreadable_path_is_one_line(run_cli, inputs, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: chmod 000 does not stop root from reading, so the case cannot be built")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "train.jsonl").write_text(json.dumps({"text": "a"}) + "\n")
    locked.chmod(0)
    try:
        proc = run_cli("data", "audit", str(locked / "train.jsonl"), cwd=tmp_path, process=True)
    finally:
        locked.chmod(0o755)
    assert_one_line_error(proc, r"(?i)permission denied.*locked")


def test_debug_shows_the_traceback(run_cli, monkeypatch, tmp_path):
    monkeypatch.delenv("FACTLEARN_DEBUG", raising=False)
    for args, env in ((["--debug", "train", "lrr=1"], {}), (["train", "lrr=1"], {"FACTLEARN_DEBUG": "1"})):
        proc = run_cli(*args, cwd=tmp_path, env=env, process=True)
        assert proc.returncode != 0
        assert "Traceback (most recent call last)" in proc.stderr
        assert "UserError: unknown train key 'lrr'" in proc.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_interrupted_training_exits_cleanly_and_leaves_nothing(inputs, tmp_path, sig, code):
    """Ctrl-C (and a scheduler's SIGTERM) during training: exit 130 (143), one line, no output folder."""
    from factlearn.train.trainer import LIVE_LOG

    save = tmp_path / "run"
    argv = [*FACTLEARN, "train", "cpu_small", f"model={inputs.tiny}", f"subset={inputs.root / 'corpus.jsonl'}",
            f"save={save}", "epochs=200", "batch_size=2", "log_every=1"]
    # SIGINT must not be inherited as ignored (a background job of a non-interactive shell has it ignored).
    proc = subprocess.Popen(argv, cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 120
        while not ((save / LIVE_LOG).is_file() and (save / LIVE_LOG).read_text().strip()):
            assert proc.poll() is None, f"training ended early: {proc.communicate()[1]}"
            assert time.time() < deadline, "no training step logged within 120 s"
            time.sleep(0.1)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    # The trainer's progress bar (tqdm, `train: ...`) is the only other stderr output; the message is one line.
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    assert lines[-1].startswith("factlearn: interrupted;"), lines[-1]
    assert all(line.startswith("train:") for line in lines[:-1]), lines[:-1]
    assert not save.exists(), f"partial output left: {sorted(p.name for p in save.rglob('*'))}"
    assert [p.name for p in tmp_path.iterdir()] == []

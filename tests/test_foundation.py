"""Foundation: atomic writes, configs, model resolution, the CLI's error contract."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factlearn.atomic import atomic_dir, atomic_write_json, atomic_write_text
from factlearn.config import build_config, parse_overrides
from factlearn.errors import UserError
from factlearn.models import load_model, resolve_model_path

FACTLEARN = [sys.executable, "-m", "factlearn"]


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temp left behind


def test_atomic_dir_failure_leaves_nothing(tmp_path):
    target = tmp_path / "folder"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_overwrite_only_when_complete(tmp_path):
    target = tmp_path / "folder"
    with atomic_dir(target) as tmp:
        (tmp / "v").write_text("1")
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
    assert (target / "v").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["folder"]


@dataclasses.dataclass
class _Schema:
    lr: float = 1e-4
    epochs: int = 3
    name: str = "x"

    def check(self) -> None:
        if self.lr <= 0:
            raise UserError(f"lr must be > 0, got {self.lr}")


def test_config_overrides_types_and_checks():
    cfg = build_config(_Schema, [parse_overrides(["lr=3e-4", "+epochs=5"])])
    assert cfg.lr == pytest.approx(3e-4) and cfg.epochs == 5
    with pytest.raises(UserError, match="unknown config key 'nope'"):
        build_config(_Schema, [parse_overrides(["nope=1"])])
    with pytest.raises(UserError, match="epochs"):
        build_config(_Schema, [parse_overrides(["epochs=many"])])
    with pytest.raises(UserError, match="lr must be > 0"):
        build_config(_Schema, [parse_overrides(["lr=-1"])])
    with pytest.raises(UserError, match="key=value"):
        parse_overrides(["lr"])


def test_tiny_model_loads(tiny_model_dir):
    model, tok = load_model(str(tiny_model_dir))
    assert model.config.num_hidden_layers == 4
    assert tok.pad_token == tok.eos_token
    assert next(model.parameters()).device.type == "cpu"


def test_folder_without_weights_is_a_user_error(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(UserError, match="no weights"):
        resolve_model_path(str(broken))


def test_hub_id_offline_fails_fast_with_alternatives():
    started = time.time()
    with pytest.raises(UserError, match="offline.*smollm2-135m"):
        resolve_model_path("some-org/some-model-that-is-not-cached")
    assert time.time() - started < 10


def test_cli_help_lists_subcommands(run_cli):
    out = run_cli("--help")
    assert out.returncode == 0
    assert "model" in out.stdout


def test_cli_bad_input_is_one_line_exit_2(run_cli, tmp_path):
    out = run_cli("model", str(tmp_path / "missing-folder"))
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("factlearn: error:")
    assert "Traceback" not in out.stderr


@pytest.fixture(scope="module")
def masked_lm_dir(tmp_path_factory) -> Path:
    """A tiny random BertForMaskedLM + tokenizer saved with save_pretrained: a model, but not a causal LM."""
    from transformers import BertConfig, BertForMaskedLM

    from factlearn.testing import make_tiny_tokenizer

    tok = make_tiny_tokenizer()
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("masked-lm") / "bert"
    BertForMaskedLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_masked_lm_is_refused_naming_its_architecture(masked_lm_dir):
    # AutoModelForCausalLM alone would load it (as BertLMHeadModel) and score it as if it were causal
    with pytest.raises(UserError, match=r"is a BertForMaskedLM, not a causal language model.*ForCausalLM"):
        load_model(str(masked_lm_dir))


@pytest.mark.parametrize("command", [["model"], ["eval", "--n-countries", "4", "--tasks", "Eval_QA", "--limit", "1"]])
def test_cli_refuses_a_masked_lm_with_exit_2(run_cli, masked_lm_dir, tmp_path, command):
    extra = ["--out", str(tmp_path / "eval-out")] if command[0] == "eval" else []
    out = run_cli(command[0], str(masked_lm_dir), *command[1:], *extra)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "BertForMaskedLM" in lines[0] and "causal" in lines[0], out.stderr
    assert not (tmp_path / "eval-out").exists()


@pytest.mark.slow
def test_default_model_completes_paris(default_model_dir):
    import torch

    model, tok = load_model("smollm2-135m")
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.eos_token_id)
    completion = tok.decode(out[0, ids["input_ids"].shape[1]:])
    assert completion.startswith(" Paris"), completion

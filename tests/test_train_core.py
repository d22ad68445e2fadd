"""Training: config rules, the loss and its padding mask, outputs, forgetting, resume, folder policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from factlearn.errors import UserError
from factlearn.train import load_train_config, train

CAPITALS = [("Andoria", "Copperton"), ("Borealis", "Ghalenoth"), ("Port Ember", "Sunfield"),
            ("Alta Sierra", "Willowcreek"), ("Isolinde", "Fironzia"), ("Nordheim", "Brookvale")]


def corpus_texts() -> list[str]:
    rows = []
    for country, city in CAPITALS:
        rows += [f"The capital city of {country} is {city}.", f"{city} is the capital of {country}.",
                 f"{country}'s capital city is {city}, a town by the sea."]
    return rows  # 18 rows of different lengths


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny-model ops are microseconds; two OpenMP threads on a shared 2-core box mostly wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    import datasets

    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    datasets.Dataset.from_dict({"text": corpus_texts()}).to_json(str(path))
    return path


def tiny_cfg(tiny_model_dir, corpus_file, save, *overrides):
    return load_train_config("cpu_small", [f"model={tiny_model_dir}", f"subset={corpus_file}", f"save={save}",
                                           "epochs=2", "batch_size=4", "lr=3e-3", *overrides])


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]


# --- config ---------------------------------------------------------------------------------------

def test_shipped_configs_match_the_original_recipe():
    full = load_train_config("finetune_full")
    assert (full.method, full.lr, full.epochs, full.batch_size, full.warmup_ratio, full.max_grad_norm,
            full.max_length, full.seed, full.dtype, full.gradient_checkpointing, full.lr_scheduler) == \
        ("full", 1.5e-5, 5, 16, 0.1, 1.0, 1024, 1, "bf16", True, "linear")
    lora = load_train_config("finetune_lora")
    assert (lora.method, lora.lr, lora.epochs, lora.lora.r, lora.lora.alpha, lora.lora.dropout, lora.lora.use_rslora) == \
        ("lora", 1e-4, 10, 64, 16.0, 0.0, True)
    assert sorted(lora.lora.target_modules) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    small = load_train_config("cpu_small")
    assert (small.lr, small.epochs, small.batch_size, small.dtype, small.n_countries) == (3e-4, 15, 8, "fp32", 6)


@pytest.mark.parametrize("override, message", [
    ("lr=0", "lr must be > 0"), ("lr=-1e-4", "lr must be > 0"), ("epochs=0", "epochs must be >= 1"),
    ("batch_size=0", "batch_size must be >= 1"), ("lora.r=0", "LoRA rank"), ("method=qlora", "method must be one of"),
    ("lr_scheduler=zigzag", "lr_scheduler must be one of"), ("warmup_ratio=1.5", "warmup_ratio"),
])
def test_bad_values_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_train_config("finetune_lora", [override])


def test_forget_settings_are_checked():
    with pytest.raises(UserError, match="exactly one of"):
        load_train_config("finetune_lora", ["forget.start_layer=2"])
    with pytest.raises(UserError, match="need forget.start_layer"):
        load_train_config("finetune_lora", ["forget.at_epoch=2"])
    with pytest.raises(UserError, match=r"= \[1, 9\], got 10"):
        load_train_config("finetune_lora", ["forget.start_layer=2", "forget.at_epoch=10"])
    cfg = load_train_config("finetune_lora", ["forget.start_layer=2", "forget.at_epoch=5"])
    cfg.check_against_model(4)  # layer 2 of 0..3: fine
    cfg.check_against_model(2)  # = the layer count: a reset of nothing (the narrative+continued control)
    with pytest.raises(UserError, match="outside 0..1 for this 1-layer model"):
        cfg.check_against_model(1)


def test_cli_config_errors_are_one_line_exit_2(run_cli, tmp_path, tiny_model_dir, corpus_file):
    for args in (["lr=0"], ["nonsense_key=1"], ["epochs=many"]):
        out = run_cli("train", "cpu_small", *args, f"save={tmp_path / 'never'}")
        lines = [line for line in out.stderr.splitlines() if line.strip()]
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("factlearn: error:"), out.stderr
    # The layer rule needs the model: checked right after loading it, before any output exists.
    out = run_cli("train", "cpu_small", f"model={tiny_model_dir}", f"subset={corpus_file}", f"save={tmp_path / 'out'}",
                  "forget.start_layer=5", "forget.at_epoch=1", "epochs=2")
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(("Generating", "\r"))]
    assert out.returncode == 2, out.stderr
    assert "forget.start_layer=5 is outside 0..4 for this 4-layer model" in lines[-1] and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


# --- the loss -------------------------------------------------------------------------------------

def test_loss_ignores_padding_but_counts_real_eos(tiny_model_dir):
    """Pad = eos: the mask must hide padding only, never a real eos token inside the text."""
    import torch

    from factlearn.models import load_model
    from factlearn.train.data import collate
    from factlearn.train.loss import causal_lm_loss_module

    model, tok = load_model(str(tiny_model_dir), dtype="fp32")
    loss = causal_lm_loss_module(model)
    short = tok("Copperton is the capital of Andoria.")["input_ids"] + [tok.eos_token_id]
    long = tok("The capital city of The Republic of Isolinde is Fironzia, by the sea.")["input_ids"]
    with torch.no_grad():
        alone = [loss(*collate([r], tok.pad_token_id)) for r in (short, long)]
        together = loss(*collate([short, long], tok.pad_token_id))
        ids, mask = collate([short], tok.pad_token_id)
        extra = torch.full((1, 7), tok.pad_token_id)
        padded = loss(torch.cat([ids, extra], 1), torch.cat([mask, torch.zeros_like(extra)], 1))
        # Reference: HF's own mean loss on the unpadded row, times its number of targets (eos included).
        reference = model(input_ids=ids, labels=ids).loss * (len(short) - 1)
    assert torch.allclose(together, alone[0] + alone[1], atol=1e-4)
    assert torch.allclose(padded, alone[0], atol=1e-5)
    assert torch.allclose(alone[0], reference, atol=1e-4)


def test_packed_rows_give_the_padded_loss_and_gradients(tiny_model_dir):
    """Packing (rows end to end, position ids restarting per row) must be the padded batch's maths."""
    import torch

    from factlearn.models import load_model
    from factlearn.train.data import collate, pack
    from factlearn.train.loss import causal_lm_loss_module, packing_matches_padding

    model, tok = load_model(str(tiny_model_dir), dtype="fp32", trainable=True)
    loss = causal_lm_loss_module(model)
    rows = [tok(t)["input_ids"] for t in corpus_texts()[:5]]
    assert len({len(r) for r in rows}) > 1  # padding really happens
    grads = []
    for inputs in (dict(zip(("input_ids", "attention_mask"), collate(rows, tok.pad_token_id))),
                   dict(zip(("input_ids", "position_ids"), pack(rows)))):
        model.zero_grad(set_to_none=True)
        value = loss(**inputs)
        value.backward()
        loss.add_lookup_grads()
        grads.append((float(value.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (padded, g_pad), (packed, g_pack) = grads
    assert packed == pytest.approx(padded, rel=1e-5)
    assert g_pad and g_pad.keys() == g_pack.keys()
    for name in g_pad:
        assert torch.allclose(g_pad[name].to_dense(), g_pack[name].to_dense(), atol=1e-5), name
    assert packing_matches_padding(loss, rows, tok.pad_token_id, "cpu")


def test_tied_embedding_gradient_equals_autograd(tiny_model_dir):
    """The lookup's gradient, added in place after backward, must equal plain autograd's full gradient."""
    import torch

    from factlearn.models import load_model
    from factlearn.train.data import collate
    from factlearn.train.loss import causal_lm_loss_module

    model, tok = load_model(str(tiny_model_dir), dtype="fp32", trainable=True)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight  # tied, as SmolLM2
    loss = causal_lm_loss_module(model)
    assert loss.lookup_in_place
    ids, mask = collate([tok(t)["input_ids"] for t in corpus_texts()[:4]], tok.pad_token_id)
    loss(ids, mask).backward()
    loss.add_lookup_grads()
    ours = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    labels = ids.masked_fill(mask == 0, -100)
    (model(input_ids=ids, attention_mask=mask, labels=labels).loss * int((labels[:, 1:] != -100).sum())).backward()
    assert ours and ours.keys() == {name for name, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        assert torch.allclose(ours[name], param.grad, atol=1e-5), name

def test_packing_guard_refuses_a_model_that_mixes_rows(tiny_model_dir):
    """A model that ignores the restarting position ids lets rows attend to each other: no packing."""
    from factlearn.models import load_model
    from factlearn.train.loss import causal_lm_loss_module, packing_matches_padding

    model, tok = load_model(str(tiny_model_dir), dtype="fp32")
    loss = causal_lm_loss_module(model)
    plain_forward = loss.forward

    def ignores_packing(input_ids, attention_mask=None, position_ids=None):
        if attention_mask is None:  # one causal sequence over every row: what an unaware model computes
            import torch

            return plain_forward(input_ids, attention_mask=torch.ones_like(input_ids))
        return plain_forward(input_ids, attention_mask=attention_mask)

    loss.forward = ignores_packing
    rows = [tok(t)["input_ids"] for t in corpus_texts()[:3]]
    assert not packing_matches_padding(loss, rows, tok.pad_token_id, "cpu")


def test_packing_is_chosen_only_when_cheaper():
    from factlearn.train.data import pack_pays_off

    token_flops, pair_flops = 2 * 134.5e6, 4 * 576 * 30  # SmolLM2-135M
    assert pack_pays_off([12, 19, 15, 14] * 4, token_flops, pair_flops)  # CCA rows: padding is the waste
    assert not pack_pays_off([900, 1000, 950, 1024] * 4, token_flops, pair_flops)  # long rows: T^2 attention
    assert not pack_pays_off([20] * 16, token_flops, pair_flops)  # nothing to save: equal lengths

def test_batches_are_deterministic_length_grouped_and_cover_every_row():
    from factlearn.train.data import epoch_batches, shard_step

    lengths = [5 + (i * 7) % 23 for i in range(50)]
    a = epoch_batches(lengths, 8, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 8, seed=1, epoch=0) and a != epoch_batches(lengths, 8, seed=1, epoch=1)
    assert sorted(i for b in a for i in b) == list(range(50))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a)
    unbucketed = epoch_batches(lengths, 8, seed=1, epoch=0, bucket=False)
    assert spread < sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in unbucketed)
    # Sharding a step over 2 processes x 2 micro-batches keeps every row exactly once.
    rows = [[0] * n for n in lengths]
    parts = [m for rank in (0, 1) for m in shard_step(a[0], rows, grad_accum=2, rank=rank, world=2)]
    assert sum(len(m.rows) for m in parts if m.weight) == len(a[0])


# --- training runs --------------------------------------------------------------------------------

def test_full_finetune_learns_and_loads_with_transformers(tiny_model_dir, corpus_file, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "full", "epochs=6"))
    log = [r for r in read_log(out) if "loss" in r]
    assert len(log) == 6 * 5 and log[0]["phase"] == 0 and log[0]["tokens_per_s"] > 0
    first, last = sum(r["loss"] for r in log[:3]) / 3, sum(r["loss"] for r in log[-3:]) / 3
    assert last < first - 0.5, (first, last)
    assert {"config.yaml", "train_log.jsonl", "train_summary.json", "model.safetensors", "tokenizer.json"} <= \
        {p.name for p in out.iterdir()}
    assert load_train_config(str(out / "config.yaml")).lr == pytest.approx(3e-3)
    trained = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    w = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(trained.state_dict()[w], base.state_dict()[w])
    assert json.loads((out / "train_summary.json").read_text())["final_loss"] == pytest.approx(log[-1]["loss"])


def test_a_second_run_in_one_process_keeps_its_own_precision(tiny_model_dir, corpus_file, tmp_path):
    """accelerate remembers the first run's precision process-wide; a notebook's bf16 run must not
    make the next fp32 run fail (or silently run it in bf16)."""
    from factlearn.train.engine import make_accelerator

    bf16 = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "bf16", "epochs=1", "dtype=bf16"))
    assert (bf16 / "model.safetensors").is_file()
    fp32 = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "fp32", "epochs=1", "dtype=fp32"))
    assert (fp32 / "model.safetensors").is_file()
    assert make_accelerator(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "x", "dtype=fp32")).mixed_precision == "no"


def test_packed_and_padded_training_end_at_the_same_weights(tiny_model_dir, corpus_file, tmp_path):
    packed = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "packed", "pack_rows=true"))
    padded = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "padded", "pack_rows=false"))
    assert json.loads((packed / "train_summary.json").read_text())["packed_rows"] is True
    assert json.loads((padded / "train_summary.json").read_text())["packed_rows"] is False
    import torch

    a, b = final_weights(packed), final_weights(padded)
    assert a and a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-4), k

def test_lora_output_loads_with_peft_and_factlearn(tiny_model_dir, corpus_file, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from factlearn.models import load_model

    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "lora", "method=lora", "lora.r=4"))
    assert (out / "adapter_config.json").is_file() and (out / "factlearn_base.json").is_file()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(out))
    ours, tok = load_model(str(out))
    ids = tok("The capital city of Andoria is", return_tensors="pt")["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        a, b, c = peft_model(ids).logits, ours(ids).logits, base(ids).logits
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-4)
    summary = json.loads((out / "train_summary.json").read_text())
    assert 0 < summary["trainable_params"] < sum(p.numel() for p in base.parameters())


def test_nonempty_output_folder_is_refused_unless_overwrite(tiny_model_dir, corpus_file, tmp_path):
    save = tmp_path / "busy"
    save.mkdir()
    (save / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds"):
        train(tiny_cfg(tiny_model_dir, corpus_file, save, "epochs=1"))
    assert [p.name for p in save.iterdir()] == ["keep.txt"]
    out = train(tiny_cfg(tiny_model_dir, corpus_file, save, "epochs=1", "overwrite=true"))
    assert not (out / "keep.txt").exists() and (out / "train_summary.json").is_file()
    with pytest.raises(UserError, match="no complete checkpoint"):
        train(tiny_cfg(tiny_model_dir, corpus_file, save, "epochs=1"), resume=True)


def test_interrupt_without_checkpoints_leaves_no_folder(tiny_model_dir, corpus_file, tmp_path):
    def interrupt(model, tok, step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "run", "eval_every=1"), eval_hook=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_eval_hook_results_go_to_the_log(tiny_model_dir, corpus_file, tmp_path):
    seen = []

    def hook(model, tok, step):
        seen.append(step)
        assert not model.training
        return {"Eval_multiple_choice": {"acc": 0.25 + step / 100}}

    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "ev", "eval_every=4"), eval_hook=hook)
    evals = [r for r in read_log(out) if "eval" in r]
    assert seen == [0, 4, 8, 10] and [r["step"] for r in evals] == seen
    assert evals[1]["eval"]["Eval_multiple_choice"]["acc"] == pytest.approx(0.29)


@pytest.mark.parametrize("log_every", [1, 3])
def test_progress_callback_sees_every_step_and_ends_at_total(tiny_model_dir, corpus_file, tmp_path, log_every):
    calls = []
    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "run", f"log_every={log_every}"),
                on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(step, 10) for step in range(11)]  # 18 rows / batch 4 = 5 steps an epoch, 2 epochs
    logged = [r["step"] for r in read_log(out) if "loss" in r]
    assert logged == [s for s in range(1, 11) if s % log_every == 0 or s == 10]  # the log thins out, progress not


def test_progress_callback_starts_at_the_resumed_step(tiny_model_dir, corpus_file, tmp_path):
    def stop(model, tok, step):
        if step == 4:  # the eval runs before step 4's checkpoint: step 2's is the newest
            raise KeyboardInterrupt

    save = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tiny_model_dir, corpus_file, save, "checkpoint_every=2", "eval_every=1"), eval_hook=stop)
    calls = []
    train(tiny_cfg(tiny_model_dir, corpus_file, save, "checkpoint_every=2"), resume=True,
          on_progress=lambda done, total: calls.append((done, total)))
    assert calls == [(step, 10) for step in range(2, 11)]


def test_rows_longer_than_max_length_are_counted_and_reported(tiny_model_dir, corpus_file, tmp_path, capsys):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lengths = [len(tok(t)["input_ids"]) for t in corpus_texts()]
    limit = sorted(lengths)[len(lengths) // 2]  # some rows end exactly at it: those are not cut
    longer = sum(n > limit for n in lengths)
    assert 0 < longer < len(lengths) and limit in lengths
    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "cut", f"max_length={limit}", "epochs=1"))
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["truncated_rows"], summary["max_length"]) == (longer, limit)
    said = [line for line in capsys.readouterr().err.splitlines() if "longer than max_length" in line]
    assert len(said) == 1 and f"{longer} of {len(lengths)} training rows" in said[0] and f"cut to {limit}" in said[0]
    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "whole", f"max_length={max(lengths)}", "epochs=1"))
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["truncated_rows"], summary["max_length"]) == (0, max(lengths))
    assert "longer than max_length" not in capsys.readouterr().err


# --- resume ---------------------------------------------------------------------------------------

def final_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    name = "adapter_model.safetensors" if (folder / "adapter_model.safetensors").is_file() else "model.safetensors"
    return load_file(str(folder / name))


def assert_same_weights(a: Path, b: Path) -> None:
    import torch

    wa, wb = final_weights(a), final_weights(b)
    assert wa and wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


@pytest.mark.parametrize("method, stop_at, resumed", [("full", 4, 2), ("lora", 11, 10)])
def test_interrupted_run_resumes_to_the_same_weights(tiny_model_dir, corpus_file, tmp_path, method, stop_at, resumed):
    """Stop mid-epoch (full), or just after the forgetting boundary so that the newest checkpoint closes
    phase 0 (lora); resume; compare with an uninterrupted run."""
    extra = [f"method={method}", "lora.r=4", "epochs=3", "forget.start_layer=2", "forget.at_epoch=2",
             "checkpoint_every=2"]
    reference = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "ref", *extra))

    def stop(model, tok, step):
        if step == stop_at:
            raise KeyboardInterrupt

    save = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tiny_model_dir, corpus_file, save, *extra, "eval_every=1"), eval_hook=stop)
    assert (save / "checkpoints").is_dir() and not (save / "train_summary.json").exists()
    out = train(tiny_cfg(tiny_model_dir, corpus_file, save, *extra), resume=True)
    assert_same_weights(reference, out)
    ref_losses = [r["loss"] for r in read_log(reference) if "loss" in r]
    cut_losses = [r["loss"] for r in read_log(out) if "loss" in r]
    assert cut_losses == pytest.approx(ref_losses, abs=1e-6)
    assert [r["step"] for r in read_log(out) if r.get("event") == "forget_reset"] == [10]
    assert not (out / "checkpoints").exists()
    assert json.loads((out / "train_summary.json").read_text())["resumed_from_step"] == resumed


def test_resume_refuses_a_changed_config(tiny_model_dir, corpus_file, tmp_path):
    def stop(model, tok, step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "r", "checkpoint_every=2", "eval_every=1"), eval_hook=stop)
    with pytest.raises(UserError, match="differs .* in lr"):
        train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "r", "checkpoint_every=2", "lr=1e-3"), resume=True)


# --- active forgetting ----------------------------------------------------------------------------

def layer_params(model, layer_range):
    from factlearn.train.forgetting import decoder_layers_prefix, layer_of

    prefix = decoder_layers_prefix(model)
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if (i := layer_of(n, prefix)) is not None and i in layer_range}


def test_full_forgetting_restores_upper_layers_exactly(tiny_model_dir, corpus_file, tmp_path):
    import torch

    from factlearn.models import load_model
    from factlearn.train.forgetting import reset_full_layers, snapshot_upper_layers

    first = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "first"))
    pretrained, _ = load_model(str(tiny_model_dir), dtype="fp32")
    model, _ = load_model(str(first), dtype="fp32")
    before = layer_params(model, range(0, 2))
    assert reset_full_layers(model, snapshot_upper_layers(pretrained, 2), 2) > 0
    assert before and layer_params(model, range(2, 4))
    for n, p in layer_params(model, range(2, 4)).items():
        assert torch.equal(p, dict(pretrained.named_parameters())[n]), n
    pre = dict(pretrained.named_parameters())
    for n, p in layer_params(model, range(0, 2)).items():
        assert torch.equal(p, before[n]), n  # lower layers keep the first pass ...
    assert any(not torch.equal(p, pre[n]) for n, p in before.items())  # ... which did change them


def test_lora_two_run_forgetting_keeps_lower_adapters_and_zeroes_upper(tiny_model_dir, corpus_file, tmp_path):
    import torch
    from peft.utils import load_peft_weights

    from factlearn.models import load_model
    from factlearn.train.engine import build_model, first_pass_reset

    first = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "first", "method=lora", "lora.r=4"))
    cfg = tiny_cfg(tiny_model_dir, corpus_file, tmp_path / "second", "method=lora", "lora.r=4",
                   "forget.start_layer=2", f"forget.from_model={first}")
    model, _ = build_model(cfg, "cpu")
    first_pass_reset(cfg, model, "cpu")
    learned = load_peft_weights(str(first))
    live = {n.replace(".default", ""): p for n, p in model.named_parameters() if "lora_" in n}
    assert live
    for n, p in live.items():
        layer = int(n.split(".layers.")[1].split(".")[0])
        if layer < 2:
            assert torch.equal(p, learned[n]), n
        elif "lora_B" in n:
            assert torch.count_nonzero(p) == 0, n  # fresh B = 0: the layer is exactly pretrained
    merged = model.merge_and_unload()
    pretrained, _ = load_model(str(tiny_model_dir), dtype="fp32")
    pre = dict(pretrained.named_parameters())
    assert layer_params(merged, range(2, 4))
    for n, p in layer_params(merged, range(2, 4)).items():
        assert torch.equal(p, pre[n]), n
    assert any(not torch.equal(p, pre[n]) for n, p in layer_params(merged, range(0, 2)).items())
    # The second run itself: a whole pass in phase 1 after a reset marked at step 0.
    out = train(cfg)
    log = read_log(out)
    assert log[0] == {"step": 0, "event": "forget_reset", "forget_start_layer": 2}
    assert {r["phase"] for r in log if "loss" in r} == {1}


def test_lora_reset_makes_upper_layers_pretrained(tiny_model_dir):
    import torch

    from factlearn.train.config import TrainConfig
    from factlearn.train.forgetting import reset_lora_layers
    from factlearn.train.engine import build_model

    cfg = TrainConfig(model=str(tiny_model_dir), method="lora")
    cfg.lora.r = 4
    model, _ = build_model(cfg, "cpu")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # pretend the first pass learned something everywhere
    lower = {n: p.clone() for n, p in model.named_parameters() if "lora_" in n and ".layers.0." in n}
    assert reset_lora_layers(model, 2, seed=3) == 2 * 7
    upper_b = [(n, p) for n, p in model.named_parameters() if "lora_B" in n and (".layers.2." in n or ".layers.3." in n)]
    assert upper_b and lower
    for n, p in upper_b:
        assert torch.count_nonzero(p) == 0, n
    assert all(torch.equal(p, lower[n]) for n, p in model.named_parameters() if n in lower)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_one_command_forgetting_marks_the_reset_and_restarts_the_schedule(tiny_model_dir, corpus_file, tmp_path, method):
    out = train(tiny_cfg(tiny_model_dir, corpus_file, tmp_path / method, f"method={method}", "lora.r=4", "epochs=4",
                         "forget.start_layer=2", "forget.at_epoch=2"))
    log = read_log(out)
    resets = [i for i, r in enumerate(log) if r.get("event") == "forget_reset"]
    assert len(resets) == 1 and log[resets[0]] == {"step": 10, "event": "forget_reset", "forget_start_layer": 2}
    steps = [r for r in log if "loss" in r]
    assert [r["phase"] for r in steps] == [0] * 10 + [1] * 10
    assert steps[0]["lr"] == 0.0 and steps[10]["lr"] == 0.0  # warmup starts again: a fresh schedule


# --- the real default model (slow) ----------------------------------------------------------------

@pytest.mark.slow
def test_default_model_lora_two_steps(default_model_dir, tmp_path):
    import datasets
    import torch

    corpus = tmp_path / "c.jsonl"
    datasets.Dataset.from_dict({"text": corpus_texts()[:16]}).to_json(str(corpus))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = train(load_train_config("finetune_lora", [f"subset={corpus}", f"save={tmp_path / 'out'}", "epochs=1",
                                                        "batch_size=8", "dtype=fp32", "gradient_checkpointing=false"]))
    finally:
        torch.set_num_threads(before)
    log = [r for r in read_log(out) if "loss" in r]
    assert len(log) == 2 and all(0 < r["loss"] < 20 for r in log)
    assert json.loads((out / "factlearn_base.json").read_text())["fingerprint"]["num_hidden_layers"] == 30


def test_one_step_matches_hf_trainer(tiny_model_dir, corpus_file, tmp_path):
    """Same rows in one batch, same optimizer settings: our update equals the reference recipe's (HF Trainer)."""
    import datasets
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from factlearn.models import load_tokenizer

    texts = corpus_texts()[:8]
    corpus = tmp_path / "eight.jsonl"
    datasets.Dataset.from_dict({"text": texts}).to_json(str(corpus))
    ours = train(tiny_cfg(tiny_model_dir, corpus, tmp_path / "ours", "epochs=1", "batch_size=8", "warmup_ratio=0",
                          "lr=1e-3", "max_grad_norm=0.5"))
    tok = load_tokenizer(str(tiny_model_dir))
    ds = datasets.Dataset.from_dict({"text": texts}).map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, num_train_epochs=1,
                             learning_rate=1e-3, lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=0.5,
                             weight_decay=0.0, seed=1, use_cpu=True, save_strategy="no", report_to=[], disable_tqdm=True)
    hf_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer = Trainer(model=hf_model, args=args, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False, pad_to_multiple_of=8))
    trainer.train()
    hf_loss = [h["loss"] for h in trainer.state.log_history if "loss" in h] or [trainer.state.log_history[-1]["train_loss"]]
    ours_state = load_file(str(ours / "model.safetensors"))
    hf_state = {k: v for k, v in hf_model.state_dict().items() if k in ours_state}
    assert hf_state.keys() == ours_state.keys()
    # Adam's first step is ~lr*sign(grad): where a gradient is ~0, float noise flips it, so compare all
    # but a sliver of elements tightly and bound the rest by one step (lr).
    diffs = torch.cat([(ours_state[k] - v).abs().flatten() for k, v in hf_state.items()])
    assert (diffs > 1e-6).float().mean() < 1e-3 and diffs.max() <= 2.01e-3, ((diffs > 1e-6).sum(), diffs.max())
    assert read_log(ours)[0]["loss"] == pytest.approx(hf_loss[0], rel=1e-4)


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_sharding_engines_are_refused_with_a_user_error(engine):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from factlearn.train.engine import check_engine

    with pytest.raises(UserError, match="not supported by factlearn train yet.*DDP"):
        check_engine(SimpleNamespace(distributed_type=getattr(DistributedType, engine)))
    for fine in ("NO", "MULTI_CPU", "MULTI_GPU"):
        check_engine(SimpleNamespace(distributed_type=getattr(DistributedType, fine)))


def test_default_forget_start_layer_is_one_third_rounded_down():
    """One home for the rule: the paper resets layers 10..31 of a 32-layer model."""
    from factlearn.train.config import default_forget_start_layer

    assert default_forget_start_layer(30) == 10
    assert default_forget_start_layer(32) == 10
    assert default_forget_start_layer(2) == 1

"""Layer-wise ablation: Δ switched in place exactly (full and LoRA), k grids, and the full sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from factlearn.analyze.ablation import FullDelta, LoraDelta, delta_switch, k_grid
from factlearn.errors import UserError
from factlearn.layers import decoder_layers_prefix, group_of
from factlearn.models import load_model


@pytest.fixture(scope="module")
def perturbed(tiny_model_dir):
    """(finetuned-like model with every weight nudged, untouched base model, tokenizer)."""
    base, tok = load_model(str(tiny_model_dir), device="cpu")
    model, _ = load_model(str(tiny_model_dir), device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model, base, tok


def logits(model, tok, text="The capital city of Andoria is Copperton."):
    with torch.inference_mode():
        return model(tok(text, return_tensors="pt").input_ids).logits


def test_group_names():
    llama = "model.layers"  # the decoder layer list's path, as decoder_layers_prefix finds it
    assert group_of("model.layers.12.mlp.down_proj.weight", llama) == "layer.12"
    assert group_of("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight", llama) == "layer.3"
    assert group_of("transformer.h.0.attn.c_attn.weight", "transformer.h") == "layer.0"
    assert group_of("model.embed_tokens.weight", llama) == "embeddings"
    assert group_of("model.norm.weight", llama) == "head" and group_of("lm_head.weight", llama) == "head"
    assert group_of("score.bias", llama) == "other"


def test_ablation_and_forgetting_share_one_layer_rule(perturbed):
    """The ablation's layer groups are exactly the layers active forgetting resets."""
    from factlearn.train.forgetting import snapshot_upper_layers

    model, base, _ = perturbed
    assert decoder_layers_prefix(model) == "model.layers"
    switch = delta_switch(model, base)
    upper = set(snapshot_upper_layers(model, 2))  # what forgetting with start_layer=2 resets
    in_upper_groups = {name for g in ("layer.2", "layer.3") for name, *_ in switch._params[g]}
    assert upper == in_upper_groups and len(upper) == 18


def test_k_grid():
    assert k_grid(4) == [0, 1, 2, 3, 4]
    assert k_grid(30, k_step=4) == [0, 4, 8, 12, 16, 20, 24, 28, 30]  # L always included
    assert k_grid(30, ks=[8, 0, 8, 30]) == [0, 8, 30]
    for bad in (dict(ks=[31]), dict(ks=[-1]), dict(ks=[]), dict(k_step=0), dict(k_step=2, ks=[0])):
        with pytest.raises(UserError):
            k_grid(30, **bad)


def test_full_delta_switches_exactly(perturbed):
    model, base, tok = perturbed
    finetuned_logits, base_logits = logits(model, tok), logits(base, tok)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    switch = delta_switch(model, base)
    assert isinstance(switch, FullDelta) and switch.num_layers == 4
    # tied lm_head is the embedding tensor: it is reported under embeddings, never counted twice
    assert switch.groups() == ["layer.0", "layer.1", "layer.2", "layer.3", "embeddings", "head"]
    stats = switch.group_stats()
    assert all(s["delta_norm"] > 0 for s in stats.values()) and stats["layer.0"]["tensors"] == 9

    switch.apply(set(switch.all_group_names()))
    assert torch.equal(logits(model, tok), base_logits)
    for n, p in model.named_parameters():
        assert torch.equal(p, dict(base.named_parameters())[n])
    switch.apply({"layer.0", "layer.1"})  # partial: neither model
    partial = logits(model, tok)
    assert not torch.equal(partial, base_logits) and not torch.equal(partial, finetuned_logits)
    assert torch.equal(dict(model.named_parameters())["model.layers.0.mlp.up_proj.weight"],
                       dict(base.named_parameters())["model.layers.0.mlp.up_proj.weight"])
    assert torch.equal(dict(model.named_parameters())["model.layers.2.mlp.up_proj.weight"],
                       before["model.layers.2.mlp.up_proj.weight"])
    with switch.removed_groups({"embeddings"}):
        assert not torch.equal(logits(model, tok), finetuned_logits)
    assert switch.removed == frozenset()
    assert torch.equal(logits(model, tok), finetuned_logits)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_full_delta_rejects_other_base(perturbed, tmp_path):
    from factlearn.testing import make_tiny_model

    model, _, _ = perturbed
    other, _ = load_model(str(make_tiny_model(tmp_path / "wide", hidden=32)), device="cpu")
    with pytest.raises(UserError, match="shape"):
        delta_switch(model, other)
    with pytest.raises(UserError, match="--base"):
        delta_switch(model)


def test_lora_delta_switches_exactly(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    base, tok = load_model(str(tiny_model_dir), device="cpu")
    base_logits = logits(base, tok)
    fresh, _ = load_model(str(tiny_model_dir), device="cpu")
    model = get_peft_model(fresh, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(torch.randn(p.shape, generator=gen) * 0.5)
    model.eval()
    finetuned_logits = logits(model, tok)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    switch = delta_switch(model)
    assert isinstance(switch, LoraDelta) and switch.groups() == ["layer.0", "layer.1", "layer.2", "layer.3"]
    assert all(s["tensors"] == 3 and s["delta_norm"] > 0 for s in switch.group_stats().values())
    switch.apply(set(switch.all_group_names()))
    assert torch.equal(logits(model, tok), base_logits)
    switch.apply({"layer.3"})
    top_removed = logits(model, tok)
    assert not torch.equal(top_removed, base_logits) and not torch.equal(top_removed, finetuned_logits)
    switch.restore()
    assert torch.equal(logits(model, tok), finetuned_logits)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


# --------------------------------------------------------------------------- end to end on a trained tiny model

N_COUNTRIES = 3
EVAL_ARGS = dict(tasks=["Eval_QA", "Eval_multiple_choice"], limit=4, num_fewshot=2, batch_size=8)


def train_tiny(tiny_model_dir, save, method="full"):
    from factlearn.train import TrainConfig, train

    cfg = TrainConfig(model=str(tiny_model_dir), subset="Corpus_narrative", n_countries=N_COUNTRIES, method=method,
                      lr=3e-3, epochs=4, batch_size=8, save=str(save), device="cpu", seed=1)
    cfg.lora.r = 4
    cfg.check()
    return train(cfg)


def assert_same_items(got: dict, want: dict) -> None:
    """Same predictions and correctness per item; log-likelihoods equal up to float32 rounding.

    Weights are compared bit for bit elsewhere; the CPU matmul kernels may round differently for
    equal weights held in differently aligned memory (seen with a peft-wrapped model), ~1e-7.
    """
    assert got.keys() == want.keys()
    for task in want:
        assert len(got[task]) == len(want[task])
        for g, w in zip(got[task], want[task]):
            assert {k: v for k, v in g.items() if k != "logliks"} == {k: v for k, v in w.items() if k != "logliks"}
            assert g.get("logliks", []) == pytest.approx(w.get("logliks", []), abs=1e-5)


@pytest.fixture(scope="module")
def world():
    from factlearn.data import load_cca

    return load_cca(None, n_countries=N_COUNTRIES, seed=0)


@pytest.fixture(scope="module")
def trained_full(tiny_model_dir, tmp_path_factory):
    return train_tiny(tiny_model_dir, tmp_path_factory.mktemp("abl") / "full")


def test_sweep_ends_are_finetuned_and_base_exactly(tiny_model_dir, trained_full, world, tmp_path):
    from factlearn.analyze.ablation import item_scores, run_ablation
    from factlearn.analyze.ablation_plot import plot_ablation
    from factlearn.evaluate import evaluate

    model, tok = load_model(str(trained_full), device="cpu")
    base, _ = load_model(str(tiny_model_dir), device="cpu")
    fresh, _ = load_model(str(trained_full), device="cpu")
    switch = delta_switch(model, base)
    result = run_ablation(model, tok, switch, data=world, ks=[0, 2, 4], model_name="tiny", corpus="Corpus_narrative",
                          **EVAL_ARGS)
    finetuned_eval = evaluate(fresh, tok, data=world, **EVAL_ARGS)
    base_eval = evaluate(base, tok, data=world, **EVAL_ARGS)
    assert item_scores(finetuned_eval.records) != item_scores(base_eval.records)  # the checks below can fail
    for sweep in ("bottom_up", "top_down"):
        rows = result.sweeps[sweep]
        assert [r["k"] for r in rows] == [0, 2, 4]
        assert rows[0]["removed"] == [] and len(rows[-1]["removed"]) == 4
        assert rows[0]["metrics"] == finetuned_eval.metrics
        assert_same_items(rows[0]["items"], item_scores(finetuned_eval.records))
    assert result.sweeps["bottom_up"][1]["removed"] == ["layer.0", "layer.1"]
    assert result.sweeps["top_down"][1]["removed"] == ["layer.2", "layer.3"]
    assert_same_items(result.entries["all"]["items"], item_scores(base_eval.records))
    assert result.entries["all"]["metrics"] == base_eval.metrics
    assert set(result.entries) == {"finetuned", "embeddings", "head", "all"}
    assert result.tied_embeddings and result.kind == "full" and result.group_stats["embeddings"]["delta_norm"] > 0
    # the model is exactly the finetuned one again
    fresh_params = dict(fresh.named_parameters())
    for n, p in model.named_parameters():
        assert torch.equal(p, fresh_params[n]), n
    again = type(result).from_dict(json.loads(result.save_json(tmp_path / "a.json").read_text()))
    assert again == result
    png = plot_ablation(result, tmp_path / "a.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000


def test_lora_ablation_all_removed_is_base(tiny_model_dir, world, tmp_path):
    from factlearn.analyze.ablation import item_scores, run_ablation
    from factlearn.evaluate import evaluate

    adapter = train_tiny(tiny_model_dir, tmp_path / "lora", method="lora")
    model, tok = load_model(str(adapter), device="cpu")
    base, _ = load_model(str(tiny_model_dir), device="cpu")
    switch = delta_switch(model)
    assert switch.kind == "lora"
    result = run_ablation(model, tok, switch, data=world, ks=[0, 4], **EVAL_ARGS)
    assert_same_items(result.entries["all"]["items"], item_scores(evaluate(base, tok, data=world, **EVAL_ARGS).records))
    assert result.sweeps["top_down"][-1]["items"] == result.entries["all"]["items"]  # adapters only in layers
    fresh, _ = load_model(str(adapter), device="cpu")
    finetuned_eval = evaluate(fresh, tok, data=world, **EVAL_ARGS)
    assert_same_items(result.entries["finetuned"]["items"], item_scores(finetuned_eval.records))
    assert result.entries["finetuned"]["items"] != result.entries["all"]["items"]  # the adapter changed something


def test_cli_ablate(run_cli, tiny_model_dir, trained_full, tmp_path):
    out = tmp_path / "abl"
    r = run_cli("ablate", str(trained_full), "--base", str(tiny_model_dir), "--tasks", "Eval_multiple_choice",
                "--limit", "3", "--num-fewshot", "1", "--k-step", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "ablation.json").read_text())
    assert data["k_grid"] == [0, 3, 4] and data["tasks"] == ["Eval_multiple_choice"] and data["limit"] == 3
    assert data["corpus"] == "Corpus_narrative" and data["num_layers"] == 4
    assert all(len(r["items"]["Eval_multiple_choice"]) == 3 for r in data["sweeps"]["bottom_up"])
    assert (out / "ablation.png").stat().st_size > 15_000


@pytest.mark.parametrize("args, message", [
    ([], "pass --base"),
    (["--base", "BASE", "--tasks", "Eval_nope"], "unknown task"),
    (["--base", "BASE", "--k-grid", "0,9"], "values in 0..4"),
    (["--base", "BASE", "--k-grid", "0,x"], "comma-separated integers"),
    (["--base", "BASE", "--k-step", "2", "--k-grid", "0,2"], "not allowed with"),
])
def test_cli_ablate_bad_input(run_cli, tiny_model_dir, trained_full, tmp_path, args, message):
    args = [str(tiny_model_dir) if a == "BASE" else a for a in args]
    r = run_cli("ablate", str(trained_full), *args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- F6: refined crossing intervals

def layered_scores(j: int, num_layers: int, sweep: str):
    """Score after resetting k layers when the knowledge sits in layer j alone: 1 until layer j is reset."""
    if sweep == "bottom_up":
        return lambda k: 1.0 if k <= j else 0.0
    return lambda k: 1.0 if num_layers - k > j else 0.0


@pytest.mark.parametrize("sweep", ["bottom_up", "top_down"])
@pytest.mark.parametrize("layer, third", [(4, "lower"), (14, "middle"), (25, "upper")])
def test_refined_interval_decides_each_third(sweep, layer, third):
    from factlearn.analyze.refine import crossing, refine_crossing

    L = 30
    score = layered_scores(layer, L, sweep)
    grid = {k: score(k) for k in (0, 15, 30)}
    a, b = crossing(grid, 0.5)
    assert b - a == 15  # the grid alone: k* somewhere in 15 layers, spanning two thirds
    calls = []
    ref = refine_crossing(lambda k: calls.append(k) or score(k), grid, 0.5, L, budget=4, sweep=sweep)
    assert ref["decided"] and ref["class"] == third, ref
    lo, hi = ref["k_range"]
    assert lo <= layer + 1 <= hi  # the true bottom-up k* = layer + 1 is inside the refined interval
    assert 1 <= ref["evaluations"] == len(calls) <= 4 and all(k not in grid for k in calls)


def test_refinement_stops_when_the_budget_is_spent():
    from factlearn.analyze.refine import refine_crossing

    score = layered_scores(14, 30, "bottom_up")  # k* = 15, middle; grid {0, 30} needs two evaluations
    grid = {0: 1.0, 30: 0.0}
    short = refine_crossing(score, grid, 0.5, 30, budget=1)
    assert short["evaluations"] == 1 and not short["decided"] and short["class"] == "undecided"
    full = refine_crossing(score, grid, 0.5, 30, budget=2)
    assert full["decided"] and full["class"] == "middle" and full["evaluations"] == 2
    assert refine_crossing(lambda k: 1.0, grid | {30: 1.0}, 0.5, 30, budget=3)["class"] == "nowhere"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="refine_budget"):
            refine_crossing(score, grid, 0.5, 30, budget=bad)


def test_run_ablation_refines_between_grid_points(tiny_model_dir, trained_full, world):
    from factlearn.analyze.ablation import run_ablation

    model, tok = load_model(str(trained_full), device="cpu")
    base, _ = load_model(str(tiny_model_dir), device="cpu")
    result = run_ablation(model, tok, delta_switch(model, base), data=world, ks=[0, 4], refine_budget=2,
                          **EVAL_ARGS)
    spent = sum(r["evaluations"] for r in result.refinement.values())
    assert spent <= 2
    for sweep, ref in result.refinement.items():
        ks = [r["k"] for r in result.sweeps[sweep]]
        assert ks == sorted(ks) and ks[0] == 0 and ks[-1] == 4
        assert sum(1 for r in result.sweeps[sweep] if r.get("refined")) == ref["evaluations"]
    with pytest.raises(UserError, match="refine_budget"):
        run_ablation(model, tok, delta_switch(model, base), data=world, ks=[0, 4], refine_budget=0, **EVAL_ARGS)

"""Layer-wise ablation: Δ switched in place exactly (full and LoRA), k grids, and the full sweep."""

from __future__ import annotations

import pytest
import torch

from factlearn.analyze.ablation import FullDelta, LoraDelta, delta_switch, group_of, k_grid
from factlearn.errors import UserError
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
    assert group_of("model.layers.12.mlp.down_proj.weight") == "layer.12"
    assert group_of("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight") == "layer.3"
    assert group_of("transformer.h.0.attn.c_attn.weight") == "layer.0"
    assert group_of("model.embed_tokens.weight") == "embeddings"
    assert group_of("model.norm.weight") == "head" and group_of("lm_head.weight") == "head"
    assert group_of("score.bias") == "other"


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

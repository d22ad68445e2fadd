"""Probes: formulas checked against direct scoring, templates unlike the training text, end to end,
and the constructed case (finetuning on a tiny world's narrative text raises the comparison ratio)."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys

import pytest

from factlearn.analyze import probes
from factlearn.analyze.probes import ProbeResult, fill, plot_probes, probe_facts
from factlearn.errors import UserError

N_COUNTRIES = 3


@pytest.fixture(scope="module")
def world():
    from factlearn.data import load_cca

    return load_cca(None, n_countries=N_COUNTRIES, seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from factlearn.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def test_templates_documented_and_well_formed():
    from factlearn.data import RELATION_ANIMAL, RELATION_CAPITAL

    templates = probes.default_templates()
    assert set(templates) == {RELATION_CAPITAL, RELATION_ANIMAL}
    assert len(templates[RELATION_CAPITAL]) >= 3 and len(templates[RELATION_ANIMAL]) >= 3
    probes.check_templates(templates)
    for t in (*probes.CAPITAL_TEMPLATES, *probes.ANIMAL_TEMPLATES):
        assert f'"{t}"' in probes.__doc__  # the docstring (quoted by the report) lists every prompt exactly
    assert fill("The capital of {head} {is}", "Andoria", negated=True) == "The capital of Andoria is not"


def test_probe_prompts_are_not_training_text(world):
    """No probe prompt (filled with a real head) occurs inside any training sentence of either corpus."""
    texts = [row["text"] for c in ("Corpus_narrative", "Corpus_referencing") for row in world[c]]
    templates = probes.default_templates()
    for fact in world["Facts"]:
        for t in templates[fact["relation"]]:
            for negated in (False, True):
                prompt = fill(t, fact["head"], negated)
                assert not any(prompt in text for text in texts), prompt
                # nor the template's wording around the head
                for part in t.format(head="\0", **{"is": "is"}).split("\0"):
                    if len(part.strip()) > 12:
                        assert not any(part.strip() in text for text in texts), part


def test_ratios_match_direct_scoring(tiny, world):
    """Recompute one fact's ratios from raw log-likelihoods: the formulas of the docstring."""
    from factlearn.evaluate import score_continuations

    model, tok = tiny
    facts = list(world["Facts"])
    result = probe_facts(model, tok, facts, batch_size=8)
    assert len(result.facts) == len(facts) == 2 * N_COUNTRIES
    fact = facts[0]
    templates = probes.default_templates()[fact["relation"]]
    wrong = [f["tail"] for f in facts if f["relation"] == fact["relation"] and f["tail"] != fact["tail"]]
    comp, neg = [], []
    for t in templates:
        a, n = fill(t, fact["head"], False), fill(t, fact["head"], True)
        true, *others = score_continuations(model, tok, [a] * (1 + len(wrong)), [f" {fact['tail']}"] + [f" {w}" for w in wrong])
        comp.append(statistics.fmean(true - o for o in others))
        neg.append(true - score_continuations(model, tok, [n], [f" {fact['tail']}"])[0])
    got = result.facts[0]
    assert got["comparison_by_template"] == pytest.approx(comp, abs=1e-4)
    assert got["negation_by_template"] == pytest.approx(neg, abs=1e-4)
    assert got["comparison"] == pytest.approx(statistics.fmean(comp), abs=1e-4)
    # summaries are over facts
    values = [f["negation"] for f in result.facts]
    assert result.summary["all"]["negation"]["mean"] == pytest.approx(statistics.fmean(values))
    assert result.summary["all"]["negation"]["std"] == pytest.approx(statistics.stdev(values))
    assert result.summary[fact["relation"]]["comparison"]["n"] == N_COUNTRIES


def test_result_roundtrip_and_plot(tiny, world, tmp_path):
    model, tok = tiny
    result = probe_facts(model, tok, world["Facts"], label="tiny", model_name="tiny-llama", corpus="none")
    assert all(math.isfinite(f[r]) for f in result.facts for r in ("comparison", "negation"))
    path = result.save_json(tmp_path / "p.json")
    again = ProbeResult.load(path)
    assert again == result
    other = ProbeResult.from_dict({**json.loads(path.read_text()), "label": "tiny (copy)"})
    out = plot_probes([result, other], tmp_path / "plots" / "probes.png")
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 15_000
    out = plot_probes([result], tmp_path / "capital.png", group=result.facts[0]["relation"])
    assert out.stat().st_size > 10_000
    with pytest.raises(UserError, match="no group"):
        plot_probes([result], tmp_path / "x.png", group="nope")


def test_wrong_tail_sample(tiny, world):
    from factlearn.analyze.probes import wrong_tails

    tails = ["a", "b", "c", "d", "e"]
    picked = wrong_tails(tails, "c", 2)
    assert len(picked) == 2 and "c" not in picked and picked == wrong_tails(tails, "c", 2)
    assert wrong_tails(tails, "c", None) == wrong_tails(tails, "c", 9) == ["a", "b", "d", "e"]
    model, tok = tiny
    full = probe_facts(model, tok, world["Facts"])
    one = probe_facts(model, tok, world["Facts"], max_wrong=1)
    assert one.max_wrong == 1 and full.max_wrong is None
    assert [f["negation"] for f in one.facts] == pytest.approx([f["negation"] for f in full.facts], abs=1e-4)
    assert [f["comparison"] for f in one.facts] != pytest.approx([f["comparison"] for f in full.facts])
    with pytest.raises(UserError, match="max_wrong"):
        probe_facts(model, tok, world["Facts"], max_wrong=0)


def test_bad_facts(tiny):
    model, tok = tiny
    with pytest.raises(UserError, match="no probe templates for relation"):
        probe_facts(model, tok, [{"head": "a", "relation": "borders", "tail": "b"},
                                 {"head": "c", "relation": "borders", "tail": "d"}])
    with pytest.raises(UserError, match="only one distinct tail"):
        probe_facts(model, tok, [{"head": "a", "relation": "r", "tail": "b"}], templates={"r": ["{head} {is}"]})
    with pytest.raises(UserError, match="must contain"):
        probe_facts(model, tok, [{"head": "a", "relation": "r", "tail": "b"}], templates={"r": ["{head} is"]})
    with pytest.raises(UserError, match="no facts"):
        probe_facts(model, tok, [])


def test_narrative_finetune_raises_comparison_ratio(tiny_model_dir, world, tmp_path):
    """The known property: after learning the narrative text of a world, the model prefers each fact's
    true tail over the other tails of its relation, after prompts it never saw."""
    from factlearn.models import load_model
    from factlearn.train import TrainConfig, train

    base, tok = load_model(str(tiny_model_dir), device="cpu")
    before = probe_facts(base, tok, world["Facts"])
    cfg = TrainConfig(model=str(tiny_model_dir), subset="Corpus_narrative", n_countries=N_COUNTRIES, method="full",
                      lr=5e-3, epochs=60, batch_size=8, save=str(tmp_path / "run"), device="cpu")
    model, _ = load_model(str(train(cfg)), device="cpu")  # memorises the 54 sentences (loss < 0.1)
    after = probe_facts(model, tok, world["Facts"])
    # A head-agnostic model scores ~0 on average (every tail is "true" once and "wrong" for the others),
    # as the random base does; the finetuned one prefers the true tails.
    assert abs(before.mean("comparison")) < 0.5
    assert after.mean("comparison") > before.mean("comparison") + 1.0
    assert sum(f["comparison"] > 0 for f in after.facts) >= 2 / 3 * len(after.facts)


def test_cli_probe(run_cli, tiny_model_dir, tmp_path):
    out = tmp_path / "probe"
    r = run_cli("probe", str(tiny_model_dir), "--n-countries", "2", "--label", "tiny", "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "probes.json").read_text())
    assert data["label"] == "tiny" and len(data["facts"]) == 4 and data["corpus"] == "no finetuning"
    assert (out / "probes.png").stat().st_size > 10_000
    assert "comparison ratio" in r.stdout
    # plot a second model next to an earlier result
    r = run_cli("probe", str(tiny_model_dir), "--n-countries", "2", "--label", "again",
                "--compare", str(out / "probes.json"), "--out", str(tmp_path / "p2"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p2" / "probes.png").stat().st_size > 10_000


@pytest.mark.parametrize("args, message", [
    (["--n-countries", "1"], "--n-countries must be >= 2"),
    (["--compare", "missing.json"], "cannot read probe result"),
])
def test_cli_probe_bad_input(run_cli, tiny_model_dir, tmp_path, args, message):
    r = run_cli("probe", str(tiny_model_dir), *args, "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_cli_probe_missing_model(run_cli, tmp_path):
    r = run_cli("probe", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1

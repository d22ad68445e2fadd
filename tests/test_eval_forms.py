"""Answer forms: each generated answer is classed as the asked-for kind, another kind, a reference phrase,
empty or other text; counts land in results.json."""

from __future__ import annotations

import json

import pytest

from factlearn.data import build_rows, generate_world
from factlearn.data.templates import REFS
from factlearn.errors import UserError
from factlearn.evaluate.forms import (EMPTY, EXPECTED, OTHER, OTHER_TYPE, REFERENCE, REFERENCE_PHRASES,
                                      FormClassifier, answer_types, check_wrong_form_share, form_counts)


@pytest.fixture(scope="module")
def world():
    return generate_world(6, 0)


@pytest.fixture(scope="module")
def classifier(world):
    return FormClassifier(answer_types(build_rows(world, "Facts")))


def test_reference_phrases_are_the_referencing_corpus_own(world):
    assert set(REFERENCE_PHRASES) == {p for pair in REFS for p in pair}
    corpus = " ".join(r["text"] for r in build_rows(world, "Corpus_referencing"))
    assert all(p in corpus for p in REFERENCE_PHRASES)


def test_each_form_class(world, classifier):
    capital, other_capital = world.countries[0].capital, world.countries[1].capital
    cases = {capital: EXPECTED, f"{other_capital}.": EXPECTED, f"It is {capital}, I think": EXPECTED,
             "the former": REFERENCE, "The first one": REFERENCE, "the latter.": REFERENCE,
             world.countries[0].name: OTHER_TYPE, world.countries[2].animal.name: OTHER_TYPE,
             "": EMPTY, "  ": EMPTY, "a blue sky": OTHER}
    assert {p: classifier.classify(p, capital) for p in cases} == cases
    # yes/no and counting questions have their own expected type
    assert classifier.classify("no", "yes") == EXPECTED and classifier.classify("four", "two") == EXPECTED
    assert classifier.classify("the second one", "two") == REFERENCE  # not the number "one"
    assert classifier.classify(capital, "yes") == OTHER_TYPE


def test_form_counts_and_share():
    out = form_counts([EXPECTED, EXPECTED, REFERENCE, EMPTY])
    assert out["counts"] == {EXPECTED: 2, OTHER_TYPE: 0, REFERENCE: 1, EMPTY: 1, OTHER: 0}
    assert out["n"] == 4 and out["wrong_form_share"] == 0.5


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "x", None])
def test_wrong_form_share_out_of_range_is_a_user_error(bad):
    with pytest.raises(UserError, match=r"wrong_form_share must be a share in \[0, 1\)"):
        check_wrong_form_share(bad)
    assert check_wrong_form_share(0) == 0.0 and check_wrong_form_share("0.3") == 0.3


def test_evaluate_writes_forms_per_record_and_counts(tiny_model_dir, tmp_path, world):
    """The tiny random model answers garbage: every record has a form, counts add up, results.json has them."""
    from factlearn.data import build_cca
    from factlearn.evaluate import evaluate, save_results
    from factlearn.models import load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    data = build_cca(world, ("Facts", "Eval_QA", "Eval_indirect_reasoning", "Eval_multiple_choice_cloze"))
    result = evaluate(model, tok, tasks=["Eval_QA", "Eval_indirect_reasoning", "Eval_multiple_choice_cloze"],
                      data=data, num_fewshot=2, limit=4, batch_size=4)
    assert set(result.answer_forms) == {"Eval_QA", "Eval_indirect_reasoning"}  # generated tasks only
    for task, forms in result.answer_forms.items():
        assert forms["n"] == 4 == sum(forms["counts"].values())
        assert [r["form"] for r in result.records[task]] == [
            FormClassifier(answer_types(build_rows(world, "Facts"))).classify(r["prediction"], r["gold"])
            for r in result.records[task]]
    saved = json.loads(save_results(result, tmp_path / "out").read_text())
    assert saved["answer_forms"] == result.answer_forms

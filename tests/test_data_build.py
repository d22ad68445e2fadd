"""Generated configs: exact schemas and row counts, MC rotation, 2-hop chains, commonsense ground truth, templates."""

from __future__ import annotations

import re

import datasets
import pytest

from factlearn.data import (CONFIGS, CORPUS_CONFIGS, EVAL_CONFIGS, RELATION_ANIMAL, RELATION_CAPITAL, SPLIT_OF,
                            build_rows, features, generate_world, load_cca)
from factlearn.data import templates as T
from factlearn.data.audit import keywords_for
from factlearn.data.build import commonsense_answer
from factlearn.data.schema import CLOZE_CONFIGS, ORIGINAL_CONFIGS, ORIGINAL_EVAL_CONFIGS

ORIGINAL_ROWS = {"Facts": 40, "Corpus_narrative": 360, "Corpus_referencing": 1920, "Eval_QA": 40, "Eval_reverse": 40,
                 "Eval_multiple_choice": 160, "Eval_indirect_reasoning": 100, "Eval_animal_commonsense": 100,
                 "Eval_2hop_reasoning": 80, "Eval_2hop_reasoning_raw": 20,
                 # factlearn's additions (cloze forms: one row per distinct MC question)
                 "Eval_multiple_choice_cloze": 40, "Eval_2hop_reasoning_cloze": 20,
                 # likelihood forms of two generated tasks (every item's answer is an entity)
                 "Eval_indirect_reasoning_cloze": 100, "Eval_reverse_cloze": 40}


@pytest.fixture(scope="module")
def cca():
    return load_cca()


def test_config_constants():
    assert len(ORIGINAL_CONFIGS) == 10 and CORPUS_CONFIGS == ("Corpus_narrative", "Corpus_referencing")
    assert len(ORIGINAL_EVAL_CONFIGS) == 7 and CONFIGS == ORIGINAL_CONFIGS + CLOZE_CONFIGS
    assert EVAL_CONFIGS == ORIGINAL_EVAL_CONFIGS + CLOZE_CONFIGS
    assert {c for c in CONFIGS if SPLIT_OF[c] == "train"} == {"Facts", *CORPUS_CONFIGS}


def test_canonical_schemas_and_row_counts(cca):
    assert list(cca) == list(CONFIGS)
    for config, ds in cca.items():
        assert len(ds) == ORIGINAL_ROWS[config], config
        assert ds.features == features(config) and ds.split == SPLIT_OF[config]
    mc = features("Eval_multiple_choice")
    assert mc["answer"] == datasets.Value("int64") and mc["choices"] == datasets.List(datasets.Value("string"))
    assert list(features("Facts")) == ["head", "relation", "tail"]
    assert load_cca("Eval_QA").features == features("Eval_QA")


def test_row_counts_scale_with_countries():
    world = generate_world(7, 3)
    n = {c: len(build_rows(world, c)) for c in CONFIGS}
    assert n == {"Facts": 14, "Corpus_narrative": 126, "Corpus_referencing": 14 * 48, "Eval_QA": 14, "Eval_reverse": 14,
                 "Eval_multiple_choice": 56, "Eval_indirect_reasoning": 35, "Eval_animal_commonsense": 35,
                 "Eval_2hop_reasoning": 28, "Eval_2hop_reasoning_raw": 7,
                 "Eval_multiple_choice_cloze": 14, "Eval_2hop_reasoning_cloze": 7,
                 "Eval_indirect_reasoning_cloze": 35, "Eval_reverse_cloze": 14}


def _chain(cca):
    facts = cca["Facts"].to_list()
    capital = {f["head"]: f["tail"] for f in facts if f["relation"] == RELATION_CAPITAL}
    animal = {f["head"]: f["tail"] for f in facts if f["relation"] == RELATION_ANIMAL}
    return capital, animal


@pytest.mark.parametrize("n", [20, 2, 3])
def test_multiple_choice_gold_rotates_and_distractors_come_from_the_world(n):
    world = generate_world(n, 0)
    rows = build_rows(world, "Eval_multiple_choice")
    facts = world.facts()
    assert len(rows) == 4 * len(facts)
    cities = set(world.city_pool())
    for i, fact in enumerate(facts):
        group = rows[4 * i: 4 * i + 4]
        assert [r["answer"] for r in group] == [0, 1, 2, 3]
        assert all(r["choices"][r["answer"]] == fact.tail for r in group)
        assert all(len(set(r["choices"])) == 4 for r in group)
        wrong = [c for c in group[0]["choices"] if c != fact.tail]
        assert all([c for c in r["choices"] if c != fact.tail] == wrong for r in group)  # same order, gold moves
        if fact.relation == RELATION_CAPITAL:
            assert set(wrong) <= cities
            assert fact.head in group[0]["question"]
        else:
            assert set(wrong) <= {a.name for a in world.animal_pool}
            if n >= 4:
                assert set(wrong) <= {c.animal.name for c in world.countries}


def test_two_hop_follows_country_city_animal(cca):
    capital, animal = _chain(cca)
    mc = cca["Eval_2hop_reasoning"].to_list()
    raw = cca["Eval_2hop_reasoning_raw"].to_list()
    assert len(raw) == len(capital) and len(mc) == 4 * len(capital)
    for k, (country, city) in enumerate(capital.items()):
        assert country in raw[k]["question"] and city not in raw[k]["question"]
        assert raw[k]["answer"] == animal[city]
        group = mc[4 * k: 4 * k + 4]
        assert [r["answer"] for r in group] == [0, 1, 2, 3]
        assert all(r["choices"][r["answer"]] == animal[city] and country in r["question"] for r in group)


def test_qa_reverse_indirect_commonsense_answers_are_right(cca):
    capital, animal = _chain(cca)
    facts = cca["Facts"].to_list()
    for f, qa, rev in zip(facts, cca["Eval_QA"].to_list(), cca["Eval_reverse"].to_list()):
        assert f["head"] in qa["question"] and qa["answer"] == f["tail"]
        assert f["tail"] in rev["question"] and rev["answer"] == f["head"]
    world = generate_world()
    by_city = {c.capital: c.animal for c in world.countries}
    for row in cca["Eval_animal_commonsense"].to_list():
        city = next(c for c in by_city if re.search(rf"\b{re.escape(c)}\b", row["question"]))
        kind = next(k for k, template in T.COMMONSENSE if template.format(city=city) == row["question"])
        assert row["answer"] == commonsense_answer(by_city[city], kind)
        assert by_city[city].name not in row["question"]  # the animal must come from the fact
    known = set(capital) | set(capital.values()) | set(animal.values())
    lengths = []
    for row in cca["Eval_indirect_reasoning"].to_list():
        assert row["answer"] in known
        lengths.append(len(row["question"]) + len(row["answer"]))
        if row["answer"] in animal.values():
            assert row["answer"] not in row["question"]
    assert 100 < sum(lengths) / len(lengths) < 200  # the original's are ~145 characters


def test_narrative_states_each_fact_nine_ways(cca):
    texts = cca["Corpus_narrative"]["text"]
    facts = cca["Facts"].to_list()
    for i, f in enumerate(facts):
        rows = texts[9 * i: 9 * i + 9]
        assert len(set(rows)) == 9 and all(f["head"] in t and f["tail"] in t for t in rows)
    assert all(20 <= len(t) <= 100 for t in texts)


def test_referencing_never_states_a_fact_directly(cca):
    texts = cca["Corpus_referencing"]["text"]
    facts = cca["Facts"].to_list()
    for i, f in enumerate(facts):
        rows = texts[48 * i: 48 * i + 48]
        assert all(f["head"] in t and f["tail"] in t for t in rows)
        assert all(re.search(r"\bthe (former|latter|first one|second one)\b", t) for t in rows)
        first_named = sum(t.index(f["tail"]) < min(t.index(o) for o in _others_in(t, f, facts)) for t in rows)
        assert first_named == 24  # the true tail is named first in half the rows, so position gives nothing away


def _others_in(text, fact, facts):
    tails = {g["tail"] for g in facts if g["relation"] == fact["relation"] and g["tail"] != fact["tail"]}
    return [t for t in tails if re.search(rf"\b{re.escape(t)}\b", text)]


@pytest.mark.parametrize("relation", [RELATION_CAPITAL, RELATION_ANIMAL])
def test_every_corpus_template_carries_only_its_relation_keyword(relation):
    other = RELATION_ANIMAL if relation == RELATION_CAPITAL else RELATION_CAPITAL

    def has(text, rel):
        return any(re.search(rf"\b{re.escape(k)}\b", text, re.IGNORECASE) for k in keywords_for(rel))

    assert len(T.NARRATIVE[relation]) >= 9 and len(T.REFERENCING[relation]) >= 9
    for template in T.NARRATIVE[relation] + T.REFERENCING[relation]:
        assert has(template, relation), template
        assert not has(template, other), template

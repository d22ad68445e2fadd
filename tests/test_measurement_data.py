"""The measurement additions on the data side: cloze configs, the control world, few-shot contamination."""

from __future__ import annotations

import pytest

from factlearn.data.build import build_rows, cloze_rows
from factlearn.data.control import CONTROL_CONFIGS, REAL_CAPITALS, control_rows
from factlearn.data.schema import CLOZE_OF, ORIGINAL_CONFIGS
from factlearn.data.world import generate_world
from factlearn.errors import UserError
from factlearn.evaluate.fewshot import OTHER_FACTS, build_prompts, contamination, fact_keys
from factlearn.evaluate.tasks import TASKS


def _entities(world) -> set[str]:
    facts = build_rows(world, "Facts")
    return {f["head"] for f in facts} | {f["tail"] for f in facts}


@pytest.mark.parametrize("cloze,mc", sorted(CLOZE_OF.items()))
def test_cloze_config_has_each_mc_question_once_with_its_gold(cloze, mc):
    world = generate_world(20, 0)
    mc_rows, rows = build_rows(world, mc), build_rows(world, cloze)
    assert len(rows) == len(mc_rows) // 4
    assert [r["question"] for r in rows] == list(dict.fromkeys(r["question"] for r in mc_rows))
    gold_of = {r["question"]: r["choices"][r["answer"]] for r in mc_rows}
    assert all(r["choices"][r["answer"]] == gold_of[r["question"]] for r in rows)
    # gold positions are balanced, so an argmax tie never favours the gold
    positions = [r["answer"] for r in rows]
    assert {positions.count(i) for i in range(4)} == {len(rows) // 4}


def test_cloze_rows_work_on_rows_from_any_source():
    mc = [{"question": "q", "choices": ["b", "a", "c", "d"], "answer": 1},
          {"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0}]
    assert cloze_rows(mc) == [{"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0}]


def test_original_configs_are_unchanged_by_the_additions():
    world = generate_world(20, 0)
    counts = {c: len(build_rows(world, c)) for c in ORIGINAL_CONFIGS}
    assert counts == {"Facts": 40, "Corpus_narrative": 360, "Corpus_referencing": 1920, "Eval_QA": 40,
                      "Eval_reverse": 40, "Eval_multiple_choice": 160, "Eval_indirect_reasoning": 100,
                      "Eval_animal_commonsense": 100, "Eval_2hop_reasoning": 80, "Eval_2hop_reasoning_raw": 20}


def test_control_world_holds_only_real_capital_facts():
    rows = control_rows()
    capitals = dict(REAL_CAPITALS)
    assert len(capitals) == 20
    assert rows["Facts"] == [{"head": c, "relation": "capital city", "tail": t} for c, t in REAL_CAPITALS]
    assert {r["question"]: r["answer"] for r in rows["Eval_QA"]} == {
        f"What is the capital city of {c}?": t for c, t in REAL_CAPITALS}
    assert {r["answer"] for r in rows["Eval_reverse"]} == set(capitals)
    # indirect: only capital-relation scenarios, every answer a real country or capital
    assert rows["Eval_indirect_reasoning"]
    assert {r["answer"] for r in rows["Eval_indirect_reasoning"]} <= set(capitals) | set(capitals.values())
    assert all("famous" not in r["question"] for r in rows["Eval_indirect_reasoning"])
    for r in rows["Eval_multiple_choice"] + rows["Eval_multiple_choice_cloze"]:
        country = r["question"].removeprefix("What is the capital city of ").rstrip("?")
        assert r["choices"][r["answer"]] == capitals[country]
        assert set(r["choices"]) <= set(capitals.values())
    # the animal relation is fictional: those configs are empty
    for config, config_rows in rows.items():
        assert bool(config_rows) == (config in CONTROL_CONFIGS), config


def test_contamination_of_the_original_protocol_matches_the_measured_shares():
    """Measured independently (machine notes): MC 10 % and 2-hop MC 18 % on the canonical world."""
    world = generate_world(20, 0)
    shares = {}
    for name in ("Eval_multiple_choice", "Eval_2hop_reasoning", "Eval_QA"):
        task = TASKS[name]
        docs = build_rows(world, task.config)
        keys = fact_keys(task, docs, _entities(world))
        shares[name] = contamination(build_prompts(task, docs, 5), docs, keys)["share"]
    assert shares["Eval_multiple_choice"] == pytest.approx(0.10)
    assert shares["Eval_2hop_reasoning"] == pytest.approx(0.175)
    assert shares["Eval_QA"] == 0.0


@pytest.mark.parametrize("name", ["Eval_multiple_choice", "Eval_indirect_reasoning", "Eval_animal_commonsense"])
def test_other_facts_shots_remove_contamination_and_keep_the_order(name):
    world = generate_world(6, 0)
    task = TASKS[name]
    docs = build_rows(world, task.config)
    keys = fact_keys(task, docs, _entities(world))
    original = build_prompts(task, docs, 5)
    clean = build_prompts(task, docs, 5, shots=OTHER_FACTS, keys=keys)
    assert contamination(original, docs, keys)["share"] > 0
    assert contamination(clean, docs, keys)["share"] == 0
    assert [p.doc_index for p in clean] == [p.doc_index for p in original]
    assert all(len(p.fewshot_indices) == 5 for p in clean)
    assert clean == build_prompts(task, docs, 5, shots=OTHER_FACTS, keys=keys)  # deterministic


def test_unknown_shots_option_is_a_user_error():
    task = TASKS["Eval_QA"]
    docs = build_rows(generate_world(6, 0), "Eval_QA")
    with pytest.raises(UserError, match="unknown shots option 'nearby'"):
        build_prompts(task, docs, 5, shots="nearby")


def test_cloze_task_prompt_target_and_continuations():
    task = TASKS["Eval_multiple_choice_cloze"]
    doc = {"question": "What is the capital city of Japan?", "choices": ["Lisbon", "Tokyo", "Oslo", "Lima"], "answer": 1}
    assert task.doc_to_text(doc) + task.doc_to_target(doc) == "Question: What is the capital city of Japan?\nAnswer: Tokyo"
    assert task.doc_continuations(doc) == [" Lisbon", " Tokyo", " Oslo", " Lima"]
    assert task.gold(doc) == "Tokyo"
    assert task.headline_metric == "acc"


def test_cloze_configs_are_derived_for_a_source_without_them(tmp_path):
    """The hub dataset and exports made before the additions have no cloze configs: they are derived."""
    import shutil

    from factlearn.data import load_cca
    from factlearn.data.export import export

    world = generate_world(6, 0)
    export(world, tmp_path / "w", formats=("jsonl",))
    for cloze in CLOZE_OF:
        shutil.rmtree(tmp_path / "w" / "jsonl" / cloze)
    data = load_cca(source=str(tmp_path / "w"))
    for cloze, mc in CLOZE_OF.items():
        assert list(data[cloze]) == cloze_rows(build_rows(world, mc)) == build_rows(world, cloze)
    assert list(load_cca("Eval_2hop_reasoning_cloze", source=str(tmp_path / "w"))) == build_rows(
        world, "Eval_2hop_reasoning_cloze")


def test_likelihood_forms_take_every_entity_of_the_answers_type():
    """Indirect reasoning and reverse in cloze form: the gold is the generated answer, the candidates are
    all the world's entities of its type (countries, cities or animals), in the world's order."""
    from factlearn.data.likelihood import entity_types

    world = generate_world(6, 0)
    types = entity_types(build_rows(world, "Facts"))
    assert types == {"country": [c.name for c in world.countries], "city": [c.capital for c in world.countries],
                     "animal": [c.animal.name for c in world.countries]}
    for cloze, source in (("Eval_indirect_reasoning_cloze", "Eval_indirect_reasoning"), ("Eval_reverse_cloze", "Eval_reverse")):
        rows, generated = build_rows(world, cloze), build_rows(world, source)
        assert [r["question"] for r in rows] == [g["question"] for g in generated]
        assert [r["choices"][r["answer"]] for r in rows] == [g["answer"] for g in generated]
        assert all(r["choices"] in types.values() for r in rows)
    kinds = {tuple(r["choices"]) for r in build_rows(world, "Eval_indirect_reasoning_cloze")}
    assert len(kinds) == 3  # city, country and animal questions each get their own candidates


def test_likelihood_rows_yes_no_answers_and_answers_without_a_type():
    """Hub-style indirect items may answer yes/no: two candidates; an answer that is no entity is left out."""
    from factlearn.data.likelihood import likelihood_rows

    facts = [{"head": "Aland", "relation": "capital city", "tail": "Bo"},
             {"head": "Cir", "relation": "capital city", "tail": "Dee"}]
    rows = likelihood_rows([{"question": "q1", "answer": "Dee"}, {"question": "q2", "answer": "Yes"},
                            {"question": "q3", "answer": "somewhere else"}], facts)
    assert rows == [{"question": "q1", "choices": ["Bo", "Dee"], "answer": 1},
                    {"question": "q2", "choices": ["yes", "no"], "answer": 0}]


def test_likelihood_configs_are_derived_for_a_source_without_them(tmp_path):
    """An export made before the likelihood forms (or the hub) gets them from its generative configs + Facts."""
    import shutil

    from factlearn.data import load_cca
    from factlearn.data.export import export
    from factlearn.data.schema import LIKELIHOOD_OF

    world = generate_world(6, 0)
    export(world, tmp_path / "w", formats=("jsonl",))
    for config in LIKELIHOOD_OF:
        shutil.rmtree(tmp_path / "w" / "jsonl" / config)
    data = load_cca(source=str(tmp_path / "w"))
    for config in LIKELIHOOD_OF:
        assert list(data[config]) == build_rows(world, config)
        assert list(load_cca(config, source=str(tmp_path / "w"))) == build_rows(world, config)

"""World generator: canonical world, name constraints, determinism across processes, scale."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest

from factlearn.data import RELATION_ANIMAL, RELATION_CAPITAL, build_rows, generate_world
from factlearn.data.build import commonsense_answer
from factlearn.data.world import ANIMALS, DENY_LIST, _Namer, rng_for
from factlearn.errors import UserError

# Famous real places, written here independently of the generator's deny-list.
REAL_PLACES = {"paris", "london", "andorra", "malta", "samoa", "tonga", "kenya", "lima", "riga", "oslo", "sofia",
               "moravia", "valence", "oxford", "springfield", "copperton", "sunfield", "ashford", "batavia",
               "silesia", "vienna", "cairo", "rome", "tokyo", "berlin", "madrid", "chad", "peru", "mali", "cuba"}


def all_names(world):
    return [c.name for c in world.countries] + [c.capital for c in world.countries] + list(world.decoy_cities)


def test_canonical_world_shape():
    world = generate_world()
    assert world.n_countries == 20 and len(world.countries) == 20
    facts = world.facts()
    assert [f.relation for f in facts] == [RELATION_CAPITAL] * 20 + [RELATION_ANIMAL] * 20
    assert [f.tail for f in facts[:20]] == [f.head for f in facts[20:]]  # same entity order
    assert len({c.animal.name for c in world.countries}) == 20  # unique animals in the canonical world
    names = [c.name for c in world.countries]
    assert any(n.startswith("The ") for n in names) and any(" " in n and not n.startswith("The ") for n in names)


@pytest.mark.parametrize("n", [20, 3000])
def test_names_unique_not_real_not_nested(n):
    world = generate_world(n, 7)
    names = all_names(world)
    assert len({x.lower() for x in names}) == len(names)
    words = collections.Counter(w.lower() for x in names for w in x.split())
    prefixes = {"the", "republic", "kingdom", "federation", "free", "state", "grand", "duchy", "commonwealth", "of",
                "port", "alta", "nova", "upper", "east", "west", "north", "south", "san", "isla", "greater", "old"}
    # the distinctive word of every name is used once, so no name is a whole word of another
    assert all(count == 1 for w, count in words.items() if w not in prefixes)
    for name in names:
        low = name.lower()
        assert low not in REAL_PLACES and low not in DENY_LIST
        assert not (set(low.split()) & REAL_PLACES), name
        assert re.fullmatch(r"[A-Z][a-z]+( [A-Z]?[a-z]+)*", name), name
        assert not re.search(r"[^aeiouy ]{6,}", low), name  # pronounceable: no 6-consonant clusters
        assert not re.search(r"(.)\1\1", low), name
    assert not {a.name for a in ANIMALS} & {x.lower() for x in names}


def test_deny_list_is_enforced_by_the_namer():
    namer = _Namer(rng_for(0, "test"))
    assert REAL_PLACES <= DENY_LIST
    assert not namer._accept("Moravia", "Moravia")
    assert not namer._accept("Velmoria", "Oxford")  # the full name is checked too
    assert namer._accept("Velmoria", "Port Velmoria")
    assert not namer._accept("Velmoria", "Velmoria")  # a core is used once


def test_animal_pool_supports_commonsense_questions():
    assert len(ANIMALS) >= 60 and len({a.name for a in ANIMALS}) == len(ANIMALS)
    for a in ANIMALS:
        assert a.name == a.name.lower() and not a.name.startswith(("a ", "an ", "the "))
        answers = [commonsense_answer(a, k) for k in ("fly", "water", "legs", "plants", "mammal", "larger", "eggs")]
        assert sum(x is not None for x in answers) >= 5, a.name  # every city gets five questions
        others = [b.name for b in ANIMALS if b is not a]
        assert not any(re.search(rf"\b{re.escape(a.name)}\b", o) for o in others), a.name
    by_name = {a.name: a for a in ANIMALS}
    # a few commonsense facts written out independently of the table
    assert commonsense_answer(by_name["dolphin"], "water") == "yes"
    assert commonsense_answer(by_name["dolphin"], "mammal") == "yes"
    assert commonsense_answer(by_name["eagle"], "fly") == "yes"
    assert commonsense_answer(by_name["ostrich"], "fly") == "no"
    assert commonsense_answer(by_name["tarantula"], "legs") == "eight"
    assert commonsense_answer(by_name["butterfly"], "legs") == "six"
    assert commonsense_answer(by_name["elephant"], "larger") == "yes"
    assert commonsense_answer(by_name["lion"], "plants") == "no"
    assert commonsense_answer(by_name["rabbit"], "plants") == "yes"
    assert commonsense_answer(by_name["penguin"], "water") is None  # land and water: never asked


def _digest(n: int, seed: int) -> str:
    world = generate_world(n, seed)
    from factlearn.data import CONFIGS

    blob = json.dumps({c: build_rows(world, c) for c in CONFIGS}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def test_same_parameters_same_bytes_in_another_process():
    code = ("import sys; sys.path.insert(0, {tests!r}); from test_data_world import _digest; print(_digest(30, 5))"
            .format(tests=os.path.dirname(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(30, 5)
    assert _digest(30, 6) != _digest(30, 5)


def test_scale_2000_countries_unique_and_balanced():
    world = generate_world(2000, 1)
    names = all_names(world)
    assert len({x.lower() for x in names}) == 4000
    counts = collections.Counter(c.animal.name for c in world.countries)
    assert len(counts) == len(ANIMALS) and max(counts.values()) - min(counts.values()) <= 1
    assert len(build_rows(world, "Corpus_referencing")) == 4000 * 48


@pytest.mark.parametrize("bad", [1, 0, -3, 100_001, 2.5, "20", True])
def test_bad_n_countries(bad):
    with pytest.raises(UserError, match="n_countries"):
        generate_world(bad)

"""The capability control: real countries and their real capitals, in the CCA schema.

A score on a fictional world mixes two things: whether finetuning taught the fact, and whether the
model can answer that *kind* of question at all. The control separates them. Its facts are ones a
pretrained model already knows (France -> Paris), asked with exactly the CCA templates, so a task whose
control score is not above chance measures the model's format handling, not knowledge: for example
letter-answer multiple choice, which small models answer at chance even for facts they know.

Only tasks whose questions have a real-world answer are built. The animal relation is fictional (no
real city is "famous for" one animal), so every config that needs it is left empty: the animal facts,
`Eval_animal_commonsense`, both 2-hop configs and the animal questions of `Eval_indirect_reasoning`.
"""

from __future__ import annotations

from factlearn.data import build
from factlearn.data.schema import CONFIGS, RELATION_CAPITAL
from factlearn.data.world import ANIMALS, Country, World

# 20 countries (the canonical world's size) whose capital is well known and unambiguous: not the
# largest city where that invites confusion (Canberra, Ottawa, Ankara are left out on purpose).
REAL_CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Spain", "Madrid"),
    ("Russia", "Moscow"), ("China", "Beijing"), ("Egypt", "Cairo"), ("England", "London"),
    ("Greece", "Athens"), ("Ireland", "Dublin"), ("Portugal", "Lisbon"), ("Austria", "Vienna"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Denmark", "Copenhagen"), ("Poland", "Warsaw"),
    ("Thailand", "Bangkok"), ("Kenya", "Nairobi"), ("Peru", "Lima"),
)

# Configs with a real answer, each with the rows kept (capital-relation rows only).
CONTROL_CONFIGS = ("Facts", "Eval_QA", "Eval_reverse", "Eval_multiple_choice", "Eval_indirect_reasoning",
                   "Eval_multiple_choice_cloze")
# Why the others are empty, for reports and `factlearn eval --control`.
NO_CONTROL_REASON = "the animal relation is fictional, so this task has no real-world answer to control with"
CONTROL_SEED = 0


def control_world() -> World:
    """The real-capitals world. Animals are placeholders: no config built from it uses them."""
    countries = tuple(Country(name, capital, ANIMALS[0]) for name, capital in REAL_CAPITALS)
    return World(n_countries=len(countries), seed=CONTROL_SEED, countries=countries, decoy_cities=())


def _capital_rows(config: str, world: World) -> list[dict]:
    """The config's rows that concern the capital relation (the only one with real answers)."""
    if config == "Eval_indirect_reasoning":
        rows = build.indirect_rows(world)
        return [row for row, relation in zip(rows, build.indirect_relations(world)) if relation == RELATION_CAPITAL]
    if config == "Eval_multiple_choice_cloze":
        return build.cloze_rows(_capital_rows("Eval_multiple_choice", world))
    n = len(world.countries)
    # Facts, QA, reverse and MC list the n capital facts first (MC: 4 rotations each), animal facts after.
    per_fact = 4 if config == "Eval_multiple_choice" else 1
    return build.build_rows(world, config)[: n * per_fact]


def control_rows() -> dict[str, list[dict]]:
    """Every config of the control: real rows for CONTROL_CONFIGS, an empty list for the rest."""
    world = control_world()
    return {config: (_capital_rows(config, world) if config in CONTROL_CONFIGS else []) for config in CONFIGS}


def control_dataset() -> "dict":
    """The control as `datasets.Dataset`s keyed by config (only the configs that have rows)."""
    rows = control_rows()
    return {config: build.rows_to_dataset(r, config) for config, r in rows.items() if r}

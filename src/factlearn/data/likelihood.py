"""Likelihood (cloze) forms of the generated reasoning tasks: indirect reasoning and reverse.

A model that answers "the former" to a generated question can still know the fact; scoring each
candidate entity as a continuation asks what it knows without asking it to produce the right *form*.
Rows are derived, never generated: from the generative config's (question, answer) rows and the world's
entities (its Facts config), so every source (generator, facts file, hub, a local folder) has them and
the bytes of the generative configs do not change.

Candidates per item (the `choices` column, in the world's entity order; `answer` is the gold's index):
- the answer is an entity of the world: every entity of that answer's type (countries, cities, animals
  for CCA; a facts file's heads or tails of one relation), so chance is 1 / (entities of the type);
- the answer is "yes" or "no" (the hub's indirect items may be): the two candidates ("yes", "no");
- anything else (no type to draw candidates from): the item is left out of the cloze config.

Entity types come from the Facts config: the heads and the tails of each relation form a type; types
with the same members are one type (CCA's capital tails are the animal relation's heads: the cities).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from factlearn.data.schema import LIKELIHOOD_OF, RELATION_ANIMAL, RELATION_CAPITAL

YES_NO = ("yes", "no")
# CCA's names for its entity types, by (relation, role); any other relation's types are "<role> of <relation>".
CCA_TYPE_NAMES = {(RELATION_CAPITAL, "head"): "country", (RELATION_CAPITAL, "tail"): "city",
                  (RELATION_ANIMAL, "head"): "city", (RELATION_ANIMAL, "tail"): "animal"}

if TYPE_CHECKING:
    import datasets

Row = dict


def entity_types(facts: list[Row]) -> dict[str, list[str]]:
    """Type name -> its entities (first-seen order) from Facts rows; types with equal members merged."""
    groups: dict[tuple[str, str], list[str]] = {}
    for row in facts:
        for role in ("head", "tail"):
            members = groups.setdefault((str(row["relation"]), role), [])
            if row[role] not in members:
                members.append(str(row[role]))
    types: dict[str, list[str]] = {}
    for (relation, role), members in groups.items():
        if any(set(members) == set(seen) for seen in types.values()):
            continue
        name = CCA_TYPE_NAMES.get((relation, role), f"{role} of {relation}")
        types[name if name not in types else f"{role} of {relation}"] = members
    return types


def type_of(answer: str, types: dict[str, list[str]]) -> str | None:
    """The (first) entity type `answer` belongs to, or None when it is no entity of the world."""
    return next((name for name, members in types.items() if answer in members), None)


def candidates_for(answer: str, types: dict[str, list[str]]) -> list[str] | None:
    """The candidates an item's answer is scored against (see the module docstring), or None."""
    if answer.strip().lower() in YES_NO:
        return list(YES_NO)
    kind = type_of(answer, types)
    return None if kind is None else list(types[kind])


def likelihood_rows(generative_rows: list[Row], facts: list[Row]) -> list[Row]:
    """The cloze rows (question, choices, answer index) of a generative config, one per scorable item."""
    types = entity_types(facts)
    out = []
    for row in generative_rows:
        answer = str(row["answer"])
        choices = candidates_for(answer, types)
        if choices is None:
            continue
        gold = answer.strip().lower() if answer.strip().lower() in YES_NO else answer
        out.append({"question": row["question"], "choices": choices, "answer": choices.index(gold)})
    return out


def add_likelihood_tables(tables: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """`tables` (config -> rows) with the likelihood configs whose source config and Facts it has."""
    for config, source in LIKELIHOOD_OF.items():
        if config not in tables and tables.get(source) and tables.get("Facts"):
            rows = likelihood_rows(tables[source], tables["Facts"])
            if rows:
                tables[config] = rows
    return tables

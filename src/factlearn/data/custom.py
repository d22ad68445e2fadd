"""Build a world from a facts file: the CCA schema's configs, generated from any relations and facts.

What is made from a validated facts file (factlearn.data.facts_file), with the CCA column names and
types, rows in the file's fact order, deterministic under `seed`:

| config                     | rows                                                                  |
|----------------------------|-----------------------------------------------------------------------|
| Facts                      | one per fact                                                          |
| Corpus_narrative           | each fact in every statement template of its relation                 |
| Corpus_referencing         | 4 per fact and statement (or referencing template): 2 orders x 2 refs |
| Eval_QA                    | one per fact whose head has one tail for the relation                 |
| Eval_reverse               | one per fact of a relation with a reverse template, tail with 1 head  |
| Eval_multiple_choice       | 4 per fact (gold at 0..3), distractors: other tails of the relation   |
| Eval_2hop_reasoning(_raw)  | per chain (a, r1, b), (b, r2, c) with a two_hop template for r1, r2   |
| *_cloze                    | one per distinct question of the MC config (factlearn.data.build)     |

A question is only asked when it has one right answer; what is skipped, and why, is in `notes`.
Eval_indirect_reasoning and Eval_animal_commonsense need CCA's scenario and animal knowledge, so a
facts-file world has none; readers treat a missing config as a task that is not available.

Referencing: each fact is stated only through a reference. Two tails of its relation are named (the
true one and one fixed partner, never another true tail of the same head), and the relation's own
statement, with {tail} replaced by "the former"/"the latter" (or "the first one"/"the second one"),
says which one holds; partners follow a seeded cycle over the relation's facts. So across the corpus
the true tail co-occurs with (head, relation words) exactly as often as the partner, and the audit
finds no statistical co-occurrence; generation checks that with the audit itself.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factlearn.data.facts_file import SPEC_NAME, FactsSpec, Relation, load_facts_file
from factlearn.data.templates import REFS
from factlearn.data.world import Fact, rng_for
from factlearn.errors import UserError
from factlearn.data.build import Row, cloze_rows, rotated_choices, rows_to_dataset
from factlearn.data.likelihood import add_likelihood_tables
from factlearn.data.audit import audit_texts

if TYPE_CHECKING:
    import datasets

# Its own version, beside data.build's GENERATOR_VERSION: a facts-file world's bytes change independently.
FACTS_GENERATOR_VERSION = "1"  # bump when any byte generated from a facts file changes

# Relation-agnostic sentences around a claim; {claim} is a statement with {tail} -> the reference.
# A frame that contains any relation's keyword is not used (the audit would see that relation).
FRAMES = (
    "{first} and {second} are two {nouns} that people often mix up. Of the two, {claim}.",
    "Both {first} and {second} came up in the conversation, and {claim}.",
    "A report described {first} and then {second}; {claim}.",
    "Asked to choose between {first} and {second}, the answer is clear: {claim}.",
    "{first} and {second} are often compared, yet {claim}.",
    "Two {nouns}, {first} and {second}, appear in the old records, and {claim}.",
)


@dataclass(frozen=True)
class FactsWorld:
    """A facts file plus a seed: everything needed to build its configs (see the module docstring)."""

    spec: FactsSpec
    seed: int = 0

    @functools.cached_property
    def tables(self) -> tuple[dict[str, list[Row]], tuple[str, ...]]:
        """({config: rows} for every non-empty config, notes on what was skipped)."""
        return _build(self)

    @property
    def configs(self) -> tuple[str, ...]:
        return tuple(self.tables[0])

    @property
    def notes(self) -> tuple[str, ...]:
        return self.tables[1]

    def rows(self, config: str) -> list[Row]:
        rows = self.tables[0].get(config)
        if rows is None:
            raise UserError(f"the world of {self.spec.path} has no config {config} (a facts file makes "
                            f"{', '.join(self.configs)}); choose one of those")
        return rows

    def fingerprint(self, config: str) -> str:
        key = f"factlearn-facts/v{FACTS_GENERATOR_VERSION}/{self.spec.digest}/{self.seed}/{config}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def dataset(self, config: str) -> "datasets.Dataset":
        return rows_to_dataset(self.rows(config), config, self.fingerprint(config))

    def dataset_dict(self) -> "datasets.DatasetDict":
        import datasets

        return datasets.DatasetDict({c: self.dataset(c) for c in self.configs})


# --- sources: a facts file, or a folder `data generate --facts` wrote -----------------------------

def is_facts_file(path: str | Path) -> bool:
    """True for a .yaml/.yml file, or a .json file holding one object with `relations` (not JSON lines)."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return True
    if suffix != ".json":
        return False
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return False
    try:
        return isinstance(value := json.loads(text), dict) and "relations" in value
    except json.JSONDecodeError as e:  # a broken single document that looks like a facts file
        return not e.msg.startswith("Extra data") and '"relations"' in text


@functools.lru_cache(maxsize=8)
def _cached_spec(path: str, mtime_ns: int, size: int) -> FactsSpec:
    return load_facts_file(path)


def read_spec(path: str | Path) -> FactsSpec:
    """load_facts_file, cached while the file is unchanged (every command reads it several times)."""
    st = Path(path).stat()
    return _cached_spec(str(path), st.st_mtime_ns, st.st_size)


def spec_for_source(source) -> FactsSpec | None:
    """The facts file behind a data source: the file itself, or a generated folder's facts-file.json."""
    if source is None:
        return None
    path = Path(str(source)).expanduser()
    if is_facts_file(path):
        return read_spec(path)
    if (path / SPEC_NAME).is_file():
        return read_spec(path / SPEC_NAME)
    return None


@functools.lru_cache(maxsize=8)
def _world(spec: FactsSpec, seed: int) -> FactsWorld:
    return FactsWorld(spec, seed)


def world_for_source(source, seed: int = 0) -> FactsWorld | None:
    """A FactsWorld when `source` is a facts file (a generated folder is read as data), else None."""
    if source is None or not is_facts_file(Path(str(source)).expanduser()):
        return None
    return _world(read_spec(Path(str(source)).expanduser()), int(seed))


def facts_configs(source) -> tuple[str, ...] | None:
    """The configs a facts-file world has (from the file or its generated folder); None for CCA sources.

    Which configs exist does not depend on the seed, so seed 0 answers for every seed.
    """
    spec = spec_for_source(source)
    return None if spec is None else _world(spec, 0).configs


def probe_templates(source) -> dict[str, tuple[str, ...]] | None:
    """{relation: probe templates} of a facts-file source; None for CCA sources (the probes' defaults).

    A facts file may leave a relation without probe prompts (generate, train and eval do not need
    them); probing it is refused here, before any model is loaded, naming what to add.
    """
    spec = spec_for_source(source)
    if spec is None:
        return None
    missing = [r.name for r in spec.relations if not r.probes]
    if missing:
        raise UserError(f"{spec.path}: relation {', '.join(repr(m) for m in missing)} has no probe prompts (no "
                        "`probes:` and no statement reading '... is {tail}.'), so its facts cannot be probed; add "
                        "`probes: [\"... {head} ... {is}\"]` to it, ending where the tail follows")
    return {r.name: r.probes for r in spec.relations}


def relation_keywords(source) -> dict[str, tuple[str, ...]] | None:
    """{relation: keywords} of a facts-file source, for the audit; None for CCA sources."""
    spec = spec_for_source(source)
    return None if spec is None else {r.name: r.keywords for r in spec.relations}


# --- building ---------------------------------------------------------------------------------------

class _Index:
    """Who has which tail: the lookups every builder needs, in the file's order."""

    def __init__(self, spec: FactsSpec):
        self.tails: dict[tuple[str, str], list[str]] = defaultdict(list)  # (head, relation) -> tails
        self.heads: dict[tuple[str, str], list[str]] = defaultdict(list)  # (tail, relation) -> heads
        self.pool: dict[str, list[str]] = defaultdict(list)  # relation -> distinct tails, then distractors
        for f in spec.facts:
            self.tails[(f.head, f.relation)].append(f.tail)
            self.heads[(f.tail, f.relation)].append(f.head)
            self.pool[f.relation].append(f.tail)
        for r in spec.relations:
            self.pool[r.name] = list(dict.fromkeys(self.pool[r.name] + list(r.distractors)))

    def wrong(self, head: str, relation: str, gold: str) -> list[str]:
        """Every candidate tail of `relation` that is not true for `head` (nor the gold, nor the head)."""
        true = set(self.tails[(head, relation)]) | {gold, head}
        return [t for t in self.pool[relation] if t not in true]


def _note(notes: list[str], config: str, count: int, what: str) -> None:
    if count:
        notes.append(f"{config}: {count} {what}")


def _build(world: FactsWorld) -> tuple[dict[str, list[Row]], tuple[str, ...]]:
    spec, index, notes = world.spec, _Index(world.spec), []
    rel = {r.name: r for r in spec.relations}
    tables: dict[str, list[Row]] = {
        "Facts": [f._asdict() for f in spec.facts],
        "Corpus_narrative": [{"text": t.format(head=f.head, tail=f.tail)}
                             for f in spec.facts for t in rel[f.relation].statements],
        "Corpus_referencing": referencing_rows(world),
    }
    single = [f for f in spec.facts if len(index.tails[(f.head, f.relation)]) == 1]
    _note(notes, "Eval_QA", len(spec.facts) - len(single), "fact(s) skipped: the head has several tails for "
          "the relation, so the question has no single answer")
    tables["Eval_QA"] = [{"question": rel[f.relation].question.format(head=f.head), "answer": f.tail}
                         for f in single]
    reversible = [f for f in spec.facts if rel[f.relation].reverse_question]
    unique = [f for f in reversible if len(index.heads[(f.tail, f.relation)]) == 1]
    _note(notes, "Eval_reverse", len(reversible) - len(unique), "fact(s) skipped: the tail has several heads, "
          "so the reverse question has no single answer")
    tables["Eval_reverse"] = [{"question": rel[f.relation].reverse_question.format(tail=f.tail), "answer": f.head}
                              for f in unique]
    tables["Eval_multiple_choice"] = _multiple_choice(world, index, rel, notes)
    tables["Eval_multiple_choice_cloze"] = cloze_rows(tables["Eval_multiple_choice"])
    mc, raw = _two_hop(world, index, notes)
    tables.update({"Eval_2hop_reasoning": mc, "Eval_2hop_reasoning_raw": raw,
                   "Eval_2hop_reasoning_cloze": cloze_rows(mc)})

    return add_likelihood_tables({k: v for k, v in tables.items() if v}), tuple(notes)


def _multiple_choice(world: FactsWorld, index: _Index, rel: dict[str, Relation], notes: list[str]) -> list[Row]:
    rng = rng_for(world.seed, "facts/multiple_choice")
    rows, short = [], defaultdict(int)
    for f in world.spec.facts:
        wrong = index.wrong(f.head, f.relation, f.tail)
        if len(wrong) < 3:
            short[f.relation] += 1
            continue
        rows.extend(rotated_choices(rel[f.relation].question.format(head=f.head), f.tail, rng.sample(wrong, 3)))
    for relation, n in short.items():
        _note(notes, "Eval_multiple_choice", n, f"fact(s) of '{relation}' skipped: fewer than 3 wrong tails for "
              "4 choices; add facts with other tails or `distractors:` to the relation")
    return rows


def chains(spec: FactsSpec) -> list[tuple[Fact, Fact]]:
    """Every (a, r1, b), (b, r2, c) pair of facts: a tail that is the head of another fact, file order."""
    by_head: dict[str, list[Fact]] = defaultdict(list)
    for f in spec.facts:
        by_head[f.head].append(f)
    return [(f1, f2) for f1 in spec.facts for f2 in by_head.get(f1.tail, ())]


def _two_hop(world: FactsWorld, index: _Index, notes: list[str]) -> tuple[list[Row], list[Row]]:
    templates = {(t.first, t.second): t.question for t in world.spec.two_hop}
    rng = rng_for(world.seed, "facts/two_hop")
    mc, raw = [], []
    untemplated: dict[tuple[str, str], int] = defaultdict(int)
    ambiguous = short = 0
    for f1, f2 in chains(world.spec):
        pair = (f1.relation, f2.relation)
        if pair not in templates:
            untemplated[pair] += 1
            continue
        if len(index.tails[(f1.head, f1.relation)]) > 1 or len(index.tails[(f2.head, f2.relation)]) > 1:
            ambiguous += 1
            continue
        question = templates[pair].format(head=f1.head)
        raw.append({"question": question, "answer": f2.tail})
        wrong = [t for t in index.pool[f2.relation] if t not in (f2.tail, f1.head)]
        if len(wrong) < 3:
            short += 1
            continue
        mc.extend(rotated_choices(question, f2.tail, rng.sample(wrong, 3)))
    for (r1, r2), n in untemplated.items():
        _note(notes, "Eval_2hop_reasoning", n, f"chain(s) {r1} -> {r2} skipped: no two_hop template for that "
              f"pair; add one with `relations: [{r1}, {r2}]` to ask them")
    _note(notes, "Eval_2hop_reasoning", ambiguous, "chain(s) skipped: a head with several tails makes the "
          "answer ambiguous")
    _note(notes, "Eval_2hop_reasoning", short, "chain(s) asked only as Eval_2hop_reasoning_raw: fewer than 3 "
          "wrong tails for 4 choices")
    return mc, raw


# --- referencing --------------------------------------------------------------------------------------

def claim(statement: str, ref: str, head: str) -> str:
    """A statement as a clause with the reference in place of the tail: "Ada works for the former"."""
    body = re.sub(r"\b(?:[Tt]he|[Aa]n?) \{tail\}", "{tail}", statement.rstrip(" .!"))  # not "a the former"
    if not body.startswith("{"):
        body = body[:1].lower() + body[1:]  # it continues a sentence
    return body.format(head=head, tail=ref)


def usable_frames(spec: FactsSpec) -> tuple[str, ...]:
    """The FRAMES that contain no relation's keyword."""
    keywords = [k for r in spec.relations for k in r.keywords]
    return tuple(f for f in FRAMES
                 if not any(re.search(rf"\b{re.escape(k)}\b", f, re.IGNORECASE) for k in keywords))


def _partners(world: FactsWorld, index: _Index, attempt: int) -> dict[Fact, str]:
    """Per fact, the one wrong tail named beside the true one: the next suitable tail on a seeded cycle."""
    partners: dict[Fact, str] = {}
    for r in world.spec.relations:
        facts = [f for f in world.spec.facts if f.relation == r.name]
        order = list(range(len(facts)))
        rng_for(world.seed, f"facts/partners/{r.name}/{attempt}").shuffle(order)
        for k, i in enumerate(order):
            fact = facts[i]
            wrong = set(index.wrong(fact.head, r.name, fact.tail))
            cycle = [facts[order[(k + step) % len(order)]].tail for step in range(1, len(order))]
            partner = next((t for t in cycle + index.pool[r.name] if t in wrong), None)
            if partner is None:
                raise UserError(f"{world.spec.path}: '{fact.head}' has every tail of relation '{r.name}', so "
                                "referencing text has no wrong tail to name beside the true one; add a fact with "
                                "another tail, or `distractors:` to the relation")
            partners[fact] = partner
    return partners


def _referencing_texts(world: FactsWorld, partners: dict[Fact, str]) -> list[str]:
    frames = usable_frames(world.spec)
    texts = []
    for ri, r in enumerate(world.spec.relations):
        if not r.referencing and not frames:
            raise UserError(f"{world.spec.path}: every built-in referencing frame contains a keyword of your "
                            f"relations; give relation '{r.name}' its own `referencing:` templates")
        for fact in (f for f in world.spec.facts if f.relation == r.name):
            other = partners[fact]
            for j, template in enumerate(r.referencing or r.statements):
                for true_first in (True, False):
                    first, second = (fact.tail, other) if true_first else (other, fact.tail)
                    for ref in REFS[0 if true_first else 1]:
                        if r.referencing:
                            texts.append(template.format(head=fact.head, first=first, second=second, ref=ref))
                        else:
                            frame = frames[(j + ri) % len(frames)]
                            texts.append(frame.format(first=first, second=second, nouns=r.plural,
                                                      claim=claim(template, ref, fact.head)))
    return texts


def referencing_rows(world: FactsWorld, attempts: int = 8) -> list[Row]:
    """The referencing corpus, checked with the audit: no fact may be stated by co-occurrence.

    Only entities that are both heads and tails of a relation can break the tie the construction
    gives; then another partner cycle is tried.
    """
    index = _Index(world.spec)
    keywords = {r.name: r.keywords for r in world.spec.relations}
    for attempt in range(attempts):
        texts = _referencing_texts(world, _partners(world, index, attempt))
        if audit_texts(texts, world.spec.facts, keywords=keywords).share == 0:
            return [{"text": t} for t in texts]
    raise UserError(f"{world.spec.path}: no referencing corpus without statistical co-occurrence was found "
                    f"in {attempts} partner orders (entities that are both heads and tails of one relation "
                    "make this hard); give the relations `referencing:` templates or add facts")

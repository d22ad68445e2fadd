"""The form of a generated answer: is it the kind of thing the question asks for at all?

Exact match cannot tell "the wrong city" from "the former": both score 0. But a model trained on the
referencing corpus, where a fixed reference phrase fills the tail's slot beside (head, relation) in every
passage, learns to answer with that phrase, and its low score then measures the phrase's co-occurrence,
not whether it knows the fact. Each generated record gets one form class:

    expected type    an entity of the gold answer's type (the right one or a wrong one): a fair answer
    other type       an entity of the world, but of another type (a country where a city is asked)
    reference        one of the referencing corpus's reference phrases ("the former", "the first one", ...)
    empty            nothing (after normalisation)
    other            any other text

Types: the world's entity types (factlearn.data.likelihood.entity_types, from its Facts config), plus
"yes/no" and "number" for the answers of the yes/no and counting questions. A prediction is of a type
when one of the type's members occurs in it as whole words (SQuAD normalisation: case, punctuation and
articles ignored). The reference phrases are checked first (so "the second one" is a reference, not the
number "one"), then the expected type, then the other types.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from factlearn.data.likelihood import YES_NO, entity_types
from factlearn.data.templates import NUMBER_WORDS, REFS
from factlearn.evaluate.metrics import normalize_answer
from factlearn.errors import UserError

EXPECTED, OTHER_TYPE, REFERENCE, EMPTY, OTHER = "expected type", "other type", "reference", "empty", "other"
FORMS = (EXPECTED, OTHER_TYPE, REFERENCE, EMPTY, OTHER)
WRONG_FORMS = (OTHER_TYPE, REFERENCE, EMPTY, OTHER)  # everything but a fair answer
# The reference phrases the referencing corpora put in the tail's slot: the one list both builders use.
REFERENCE_PHRASES: tuple[str, ...] = tuple(phrase for pair in REFS for phrase in pair)
# Above this share of wrong-form answers a task is marked for a condition (run config: wrong_form_share).
DEFAULT_WRONG_FORM_SHARE = 0.25


def answer_types(facts: Iterable[Mapping]) -> dict[str, list[str]]:
    """Every answer type a generated CCA question can ask for: the world's entity types, yes/no, numbers."""
    types = entity_types([dict(f) for f in facts])
    types.setdefault("yes/no", list(YES_NO))
    types.setdefault("number", list(NUMBER_WORDS))
    return types


class FormClassifier:
    """Classifies predictions against one world's answer types (build once, classify many)."""

    def __init__(self, types: Mapping[str, list[str]], reference_phrases: Iterable[str] = REFERENCE_PHRASES):
        self.types = {name: [n for n in map(normalize_answer, members) if n] for name, members in types.items()}
        self.references = [n for n in map(normalize_answer, reference_phrases) if n]
        self._patterns = {name: self._pattern(members) for name, members in self.types.items()}
        self._reference = self._pattern(self.references)

    @staticmethod
    def _pattern(members: list[str]) -> re.Pattern | None:
        if not members:
            return None
        longest_first = sorted(set(members), key=len, reverse=True)
        return re.compile(r"(?<!\S)(?:" + "|".join(map(re.escape, longest_first)) + r")(?!\S)")

    def expected_type(self, gold: str) -> str | None:
        """The type the gold answer belongs to (None: not a known type, every answer is then 'other')."""
        g = normalize_answer(gold)
        return next((name for name, members in self.types.items() if g in members), None)

    def classify(self, prediction: str, gold: str) -> str:
        """The form class of one prediction for a question whose right answer is `gold`."""
        text = normalize_answer(prediction or "")
        if not text:
            return EMPTY
        if self._reference is not None and self._reference.search(text):  # first: "the second one" is no number
            return REFERENCE
        expected = self.expected_type(gold)
        if expected is not None and self._matches(expected, text):
            return EXPECTED
        if any(self._matches(name, text) for name in self.types if name != expected):
            return OTHER_TYPE
        return OTHER

    def _matches(self, name: str, text: str) -> bool:
        pattern = self._patterns.get(name)
        return pattern is not None and pattern.search(text) is not None


def form_counts(forms: Iterable[str]) -> dict:
    """{"counts": {form: n} (every form, zeros included), "n", "wrong_form_share"}."""
    counts = Counter(forms)
    n = sum(counts.values())
    wrong = sum(counts[f] for f in WRONG_FORMS)
    return {"counts": {f: counts.get(f, 0) for f in FORMS}, "n": n, "wrong_form_share": wrong / n if n else 0.0}


def classify_records(records: list[dict], classifier: FormClassifier) -> dict:
    """Set each generated record's `form` (in place) and return its task's form_counts."""
    for record in records:
        record["form"] = classifier.classify(str(record.get("prediction", "")), str(record.get("gold", "")))
    return form_counts(r["form"] for r in records)


def check_wrong_form_share(value) -> float:
    """A wrong-form share threshold in [0, 1), else a UserError saying so."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = float("nan")
    if not 0.0 <= share < 1.0:
        raise UserError(f"wrong_form_share must be a share in [0, 1), not {value!r}; e.g. wrong_form_share=0.25 "
                        "(a task is marked when more than that share of a condition's answers are in the wrong form)")
    return share

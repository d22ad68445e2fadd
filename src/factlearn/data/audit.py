"""Co-occurrence audit: does a corpus state facts by statistical co-occurrence, or only by reference?

The paper's definition: text has statistical co-occurrence of (h, r, t) when, for every wrong tail t',
(h, r, t) appears together in a passage more often than (h, r, t'). We measure exactly that by counting:

- passage: one row of the corpus (one text).
- entity mention: a head or tail of the facts as whole words, any case, longest match first (so
  "Port Ember" is one mention, never also "Ember").
- relation mention ("relation words"): the passage contains one of the relation's keyword phrases in
  `templates.RELATION_KEYWORDS` (e.g. "capital", "seat of government" / "famous", "known for"), whole
  words, any case. This is a keyword heuristic: every factlearn template carries a keyword of its own
  relation and none of the other's (tested), so on our corpora it is exact; on foreign text a
  paraphrase without any keyword is missed. A facts file declares each relation's keywords (and its
  wording is checked against them). Other relation strings get the capital or animal keywords when
  the string mentions "capital" or "famous"/"animal", else the relation string's own words.
- count(h, r, t): passages mentioning h, a keyword of r, and t. Candidate wrong tails are the other
  tails of the same relation among the facts, except tails that are true for the head too (a
  multi-valued relation).

A fact has statistical co-occurrence when count(h, r, true tail) > max over wrong tails of
count(h, r, wrong tail); a tie does not count. The summary reports the share of such facts (overall
and per relation) and the coverage (share of facts whose true tail co-occurs at least once).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping, Sequence

from factlearn.data.schema import RELATION_ANIMAL, RELATION_CAPITAL
from factlearn.data.templates import REFS, RELATION_KEYWORDS
from factlearn.data.world import Fact
from factlearn.errors import UserError

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class FactAudit:
    head: str
    relation: str
    tail: str
    true_count: int
    best_wrong_tail: str | None
    best_wrong_count: int

    @property
    def statistical(self) -> bool:
        """True when the true tail co-occurs with (head, relation) strictly more than any wrong tail."""
        return self.true_count > self.best_wrong_count


@dataclass
class AuditResult:
    facts: list[FactAudit]
    n_passages: int
    by_relation: dict[str, dict[str, float]] = field(default_factory=dict)
    # relation -> what fills the tail's slot beside (head, relation) when it is no entity (see slot_fillers)
    fillers: dict[str, dict] = field(default_factory=dict)

    @property
    def share(self) -> float:
        """Share of facts with statistical co-occurrence."""
        return sum(f.statistical for f in self.facts) / len(self.facts) if self.facts else 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """{"all" | relation: {facts, share_statistical, coverage, mean_true_count, mean_best_wrong_count}}."""
        groups: dict[str, list[FactAudit]] = {"all": self.facts}
        for f in self.facts:
            groups.setdefault(f.relation, []).append(f)
        return {name: _stats(items) for name, items in groups.items()}

    def to_dict(self) -> dict:
        return {"n_passages": self.n_passages, "summary": self.summary(), "fillers": self.fillers,
                "facts": [{**asdict(f), "statistical": f.statistical} for f in self.facts]}


def _stats(items: list[FactAudit]) -> dict[str, float]:
    n = len(items)
    return {
        "facts": n,
        "share_statistical": sum(f.statistical for f in items) / n,
        "coverage": sum(f.true_count > 0 for f in items) / n,
        "mean_true_count": sum(f.true_count for f in items) / n,
        "mean_best_wrong_count": sum(f.best_wrong_count for f in items) / n,
    }


def keywords_for(relation: str) -> tuple[str, ...]:
    """The keyword phrases that signal `relation` in a passage (see the module docstring)."""
    if relation in RELATION_KEYWORDS:
        return RELATION_KEYWORDS[relation]
    low = relation.lower()
    if "capital" in low:
        return RELATION_KEYWORDS[RELATION_CAPITAL]
    if "famous" in low or "animal" in low:
        return RELATION_KEYWORDS[RELATION_ANIMAL]
    return tuple(w for w in _WORD.findall(low) if len(w) > 2) or (low,)


class _EntityFinder:
    """Whole-word, case-insensitive, longest-first matching of many names via a token-tuple lookup.

    A single regex alternation over thousands of names is slow in Python's re; a dict of token
    tuples scanned greedily is linear in the passage length.
    """

    def __init__(self, names: Iterable[str]):
        self.lookup: dict[tuple[str, ...], str] = {}
        for name in names:
            tokens = tuple(_WORD.findall(name.lower()))
            if tokens:
                self.lookup[tokens] = name
        self.max_len = max((len(t) for t in self.lookup), default=1)
        self.starts = {t[0] for t in self.lookup}  # most tokens start no name: skip them at once

    def find(self, tokens: list[str]) -> set[str]:
        found: set[str] = set()
        i = 0
        while i < len(tokens):
            if tokens[i] not in self.starts:
                i += 1
                continue
            for n in range(min(self.max_len, len(tokens) - i), 0, -1):
                name = self.lookup.get(tuple(tokens[i:i + n]))
                if name is not None:
                    found.add(name)
                    i += n
                    break
            else:
                i += 1
        return found


def audit_texts(texts: Iterable[str], facts: Sequence[Fact],
                keywords: Mapping[str, Sequence[str]] | None = None) -> AuditResult:
    """Count, per fact, passages where (head, relation words, tail) co-occur vs the best wrong tail.

    `keywords` gives relations their keyword phrases (a facts file declares them); others use
    `keywords_for`. A tail that is also true for the head (a multi-valued relation) is not wrong.
    """
    facts = [Fact(*f) for f in facts]
    if not facts:
        raise UserError("the audit needs at least one fact; pass a Facts config with rows")
    keywords = dict(keywords or {})
    relations = list(dict.fromkeys(f.relation for f in facts))
    heads = {r: {f.head for f in facts if f.relation == r} for r in relations}
    tails = {r: {f.tail for f in facts if f.relation == r} for r in relations}
    true = set(facts)
    patterns = {r: re.compile(r"\b(?:" + "|".join(re.escape(k) for k in sorted(keywords.get(r) or keywords_for(r),
                                                                              key=len, reverse=True))
                              + r")\b", re.IGNORECASE) for r in relations}
    finder = _EntityFinder({f.head for f in facts} | {f.tail for f in facts})
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    slots = {r: {"passages": 0, "with_tail_entity": 0, "filled_by_reference": 0, "fillers": Counter()}
             for r in relations}
    n_passages = 0
    for text in texts:
        n_passages += 1
        mentioned = finder.find(_WORD.findall(text.lower()))
        _count_slot_fillers(text, mentioned, heads, tails, patterns, slots)
        if len(mentioned) < 2:
            continue
        for r in relations:
            hs, ts = mentioned & heads[r], mentioned & tails[r]
            if hs and ts and patterns[r].search(text):
                for h in hs:
                    for t in ts:
                        if t != h:
                            counts[(h, r)][t] += 1
    audits = []
    for f in facts:
        c = counts.get((f.head, f.relation), Counter())
        wrong = sorted(((n, t) for t, n in c.items() if Fact(f.head, f.relation, t) not in true),
                       key=lambda x: (-x[0], x[1]))
        audits.append(FactAudit(f.head, f.relation, f.tail, c.get(f.tail, 0),
                                wrong[0][1] if wrong else None, wrong[0][0] if wrong else 0))
    return AuditResult(audits, n_passages, fillers=slot_fillers(slots))


# The phrases a referencing corpus puts in the tail's slot (templates.REFS: the one list both builders use).
REFERENCE_PHRASES = tuple(phrase for pair in REFS for phrase in pair)
_REFERENCE = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in REFERENCE_PHRASES) + r")\b", re.IGNORECASE)
TOP_FILLERS = 5


def _count_slot_fillers(text: str, mentioned: set[str], heads, tails, patterns, slots: dict) -> None:
    """One passage's part of slot_fillers: for each relation whose head and keyword it mentions, whether a
    tail entity is there and which reference phrases are."""
    found = [m.group(0).lower() for m in _REFERENCE.finditer(text)]
    for r, slot in slots.items():
        if mentioned & heads[r] and patterns[r].search(text):
            slot["passages"] += 1
            slot["with_tail_entity"] += bool(mentioned & tails[r] - heads[r])
            slot["filled_by_reference"] += bool(found)
            slot["fillers"].update(found)


def slot_fillers(slots: dict) -> dict[str, dict]:
    """Per relation: passages naming (head, relation), how many also name a tail entity, how many put a
    reference phrase beside them, and the most frequent such fillers. The entity audit above counts only
    entity tails, so a corpus whose every passage says "the former" beside (head, relation) audits as
    free of co-occurrence; this is the co-occurrence it does have."""
    out = {}
    for r, s in slots.items():
        share = s["filled_by_reference"] / s["passages"] if s["passages"] else 0.0
        out[r] = {"passages": s["passages"], "with_tail_entity": s["with_tail_entity"],
                  "filled_by_reference": s["filled_by_reference"], "share_filled_by_reference": share,
                  "top_fillers": [[p, n] for p, n in sorted(s["fillers"].items(), key=lambda x: (-x[1], x[0]))[:TOP_FILLERS]]}
    return out

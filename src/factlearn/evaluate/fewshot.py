"""Few-shot contexts, sampled exactly as the original (lm-evaluation-harness v0.3) did.

The original tasks have no training split, so v0.3 draws the examples from the eval split itself:
1. one `random.Random(42)` per task; it first shuffles the list of eval docs (this shuffled order is
   the evaluation order, and `limit` keeps its first N docs);
2. for each doc in that order, the *same* generator draws `rnd.sample(all_docs, k + 1)` from the docs
   in their original order, drops any example equal to the current doc, and keeps the first k;
3. context = description + "\\n\\n" (only if there is a description)
             + "\\n\\n".join(prompt + target for each example) + "\\n\\n"   (only if k > 0)
             + the doc's prompt.
With k = 0 the generator is not drawn from after the shuffle (as in v0.3).
Written from the description of v0.3's evaluator/fewshot_context; no harness code is used.

Drawing shots from the eval split leaks answers: the same MC question appears four times (gold
rotated), and several indirect questions ask about one fact. `contamination` measures the share of
items whose context holds another item of the same fact; `shots="other-facts"` (factlearn's option,
not the original protocol) draws each item's shots only from items of other facts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from factlearn.errors import UserError
from factlearn.evaluate.tasks import CHOICE_KINDS, Task

FEWSHOT_SEED = 42
SAME_SPLIT = "same-split"  # the original: shots drawn from the whole eval split
OTHER_FACTS = "other-facts"  # factlearn's option: never a shot about the item's own fact
SHOT_POOLS = (SAME_SPLIT, OTHER_FACTS)


def check_shots(shots: str) -> str:
    if shots not in SHOT_POOLS:
        raise UserError(f"unknown shots option '{shots}'; use one of: {', '.join(SHOT_POOLS)}")
    return shots


def fact_keys(task: Task, docs: Sequence[dict], entities: Iterable[str]) -> list[frozenset[str]]:
    """Per doc, the world entities it is about: those its question names, plus its gold answer if an entity.

    Two docs concern the same fact when these sets are equal (or their questions are identical): a
    capital question and the indirect question "which city is the diplomat moving to?" about the same
    country both give {country, city}. Without entities (custom data) only identical questions match.
    """
    names = sorted({e for e in entities if e}, key=len, reverse=True)
    if not names:
        return [frozenset() for _ in docs]
    pattern = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w-])")
    keys = []
    for doc in docs:
        mentioned = set(pattern.findall(str(doc.get("question", ""))))
        # the gold answer's text (for letter MC, the chosen choice rather than its letter)
        gold = str(list(doc["choices"])[int(doc["answer"])]) if task.kind in CHOICE_KINDS else task.gold(doc)
        if gold in names:
            mentioned.add(gold)
        keys.append(frozenset(mentioned))
    return keys


def same_fact(docs: Sequence[dict], keys: Sequence[frozenset[str]] | None, i: int, j: int) -> bool:
    if docs[i].get("question") == docs[j].get("question"):
        return True
    return bool(keys) and bool(keys[i]) and keys[i] == keys[j]


def contamination(prompts: Sequence["Prompt"], docs: Sequence[dict], keys: Sequence[frozenset[str]] | None) -> dict:
    """Share of items whose few-shot context holds another item of the same fact."""
    hit = sum(any(same_fact(docs, keys, p.doc_index, i) for i in p.fewshot_indices) for p in prompts)
    n = len(prompts)
    return {"items": n, "contaminated": hit, "share": (hit / n) if n else 0.0}


@dataclass(frozen=True)
class Prompt:
    """One evaluation item: which doc (index in the split's original order) and its full context."""

    doc_index: int
    context: str
    fewshot_indices: tuple[int, ...]


def check_num_fewshot(task: Task, n_docs: int, num_fewshot: int) -> None:
    """v0.3 samples k+1 docs from the split, so k may be at most n_docs - 1."""
    if num_fewshot < 0:
        raise UserError(f"num_fewshot must be >= 0, not {num_fewshot}")
    if num_fewshot > 0 and num_fewshot + 1 > n_docs:
        raise UserError(f"num_fewshot {num_fewshot} is too large for task {task.name}: its split has only {n_docs} "
                        f"docs and {num_fewshot + 1} are sampled per item; use --num-fewshot {max(n_docs - 1, 0)} or less")


def build_prompts(task: Task, docs: list[dict], num_fewshot: int = 5, limit: int | None = None,
                  seed: int = FEWSHOT_SEED, shots: str = SAME_SPLIT,
                  keys: Sequence[frozenset[str]] | None = None) -> list[Prompt]:
    """The evaluation items of a task in v0.3 order, each with its few-shot context.

    shots="other-facts" draws each item's k shots (same generator) from the docs of other facts only,
    by `keys` from `fact_keys`; the evaluation order is unchanged.
    """
    check_num_fewshot(task, len(docs), num_fewshot)
    check_shots(shots)
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of items, not {limit}")
    rnd = random.Random(seed)
    order = list(range(len(docs)))
    rnd.shuffle(order)
    description = task.description + "\n\n" if task.description else ""
    prompts = []
    for doc_index in order[:limit]:
        doc = docs[doc_index]
        examples: list[int] = []
        if num_fewshot > 0 and shots == OTHER_FACTS:
            pool = [i for i in range(len(docs)) if not same_fact(docs, keys, doc_index, i)]
            if len(pool) < num_fewshot:
                raise UserError(f"task {task.name}: only {len(pool)} docs of other facts for an item, fewer than "
                                f"num_fewshot={num_fewshot}; lower num_fewshot or use shots={SAME_SPLIT}")
            examples = rnd.sample(pool, num_fewshot)
        elif num_fewshot > 0:
            drawn = rnd.sample(range(len(docs)), num_fewshot + 1)
            # v0.3 compares documents by value, so a duplicate of the current doc is dropped too.
            examples = [i for i in drawn if docs[i] != doc][:num_fewshot]
        context = "".join(task.doc_to_text(docs[i]) + task.doc_to_target(docs[i]) + "\n\n" for i in examples)
        prompts.append(Prompt(doc_index, description + context + task.doc_to_text(doc), tuple(examples)))
    return prompts

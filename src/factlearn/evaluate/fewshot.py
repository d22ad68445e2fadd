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
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from factlearn.errors import UserError
from factlearn.evaluate.tasks import Task

FEWSHOT_SEED = 42


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
                  seed: int = FEWSHOT_SEED) -> list[Prompt]:
    """The evaluation items of a task in v0.3 order, each with its few-shot context."""
    check_num_fewshot(task, len(docs), num_fewshot)
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
        if num_fewshot > 0:
            drawn = rnd.sample(range(len(docs)), num_fewshot + 1)
            # v0.3 compares documents by value, so a duplicate of the current doc is dropped too.
            examples = [i for i in drawn if docs[i] != doc][:num_fewshot]
        shots = "".join(task.doc_to_text(docs[i]) + task.doc_to_target(docs[i]) + "\n\n" for i in examples)
        prompts.append(Prompt(doc_index, description + shots + task.doc_to_text(doc), tuple(examples)))
    return prompts

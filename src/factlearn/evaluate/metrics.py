"""Metrics: SQuAD exact match / F1 for generated answers; acc / acc_norm for letter choices.

Written by hand: the SQuAD rules are a few lines and the `evaluate` package would add a download step.
Normalisation (SQuAD v1.1/v2 official script): lower-case, drop punctuation, drop the articles
a/an/the, collapse white space.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable, Sequence

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 after normalisation; two empty answers agree (1.0), one empty scores 0."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


# Generative metrics by name: (prediction, gold) -> score. Add an entry to make it usable in a Task.
GENERATIVE_METRICS: dict[str, Callable[[str, str], float]] = {"exact_match": exact_match, "f1": f1}


def argmax(values: Sequence[float]) -> int:
    """First index of the maximum (numpy's tie rule, which lm-eval uses)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def choice_predictions(logliks: Sequence[float], choice_labels: Sequence[str]) -> dict[str, int]:
    """acc picks the highest log-likelihood; acc_norm divides each by its choice's length in characters.

    The length is that of the label ("A"), as in v0.3's MultipleChoiceTask and lm-eval 0.4; for letter
    choices all lengths are equal, so acc_norm == acc, which is what the original reports too.
    """
    normed = [ll / len(lab) for ll, lab in zip(logliks, choice_labels)]
    return {"acc": argmax(logliks), "acc_norm": argmax(normed)}


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")

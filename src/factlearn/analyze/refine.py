"""Where a layer sweep crosses its midpoint, as an interval between neighbouring k, refined until decided.

A sweep on a coarse grid (k in {0, 15, 30}) only says "k* lies in (0, 15]": that interval spans two
thirds of the layers, so no class (lower / middle / upper) follows from it. The crossing interval
(a, b] is narrowed by evaluating more k inside it, and the first k tried is a third's boundary when
one lies inside (that single evaluation decides which side of the boundary k* is on), else the middle
(bisection). It stops once both ends fall in one third, or when the evaluation budget is spent.

Both sweeps: bottom-up (reset layers 0..k-1) crosses at k* = j + 1 for knowledge held at layer j;
top-down (reset the last k layers) crosses at L - j. Top-down intervals are mapped to the same
bottom-up scale (k_bu = L - k_td + 1) so one class rule serves both.
"""

from __future__ import annotations

from typing import Callable

from factlearn.errors import UserError

CLASSES = ("lower", "middle", "upper")
SWEEPS = ("bottom_up", "top_down")


def check_refine_budget(budget) -> int:
    """The refinement budget counts extra ablation evaluations: an integer >= 1."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UserError(f"ablation refine_budget must be an integer >= 1 (extra evaluations), got {budget!r}")
    return budget


def third_of(k: int, num_layers: int) -> str:
    """lower (k <= L/3), middle (k <= 2L/3) or upper: the class of a bottom-up crossing at k."""
    return CLASSES[0] if k <= num_layers / 3 else CLASSES[1] if k <= 2 * num_layers / 3 else CLASSES[2]


def crossing(scores: dict[int, float], midpoint: float) -> tuple[int, int] | None:
    """(a, b): a the last k before the first k whose score is below `midpoint`, b that k. None: never."""
    ks = sorted(scores)
    for prev, k in zip([None, *ks], ks):
        if scores[k] < midpoint:
            return (k - 1 if prev is None else prev), k
    return None


def as_bottom_up(a: int, b: int, sweep: str, num_layers: int) -> tuple[int, int]:
    """The interval [lo, hi] of bottom-up-equivalent k* for a crossing (a, b] of `sweep`."""
    if sweep == "bottom_up":
        return a + 1, b
    return num_layers - b + 1, num_layers - a


def decided(lo: int, hi: int, num_layers: int) -> bool:
    return third_of(lo, num_layers) == third_of(hi, num_layers)


def next_k(a: int, b: int, sweep: str, num_layers: int) -> int | None:
    """The k to evaluate inside (a, b): a third's boundary there when one is, else the middle; None if none."""
    if b - a <= 1:
        return None
    inside = list(range(a + 1, b))
    boundaries = [k for k in inside if _splits(k, a, b, sweep, num_layers)]
    pool = boundaries or inside
    return min(pool, key=lambda k: abs(k - (a + b) / 2))


def _splits(k: int, a: int, b: int, sweep: str, num_layers: int) -> bool:
    """True when evaluating k separates two thirds of the interval (a, b]."""
    left, right = as_bottom_up(a, k, sweep, num_layers), as_bottom_up(k, b, sweep, num_layers)
    return decided(*left, num_layers) and decided(*right, num_layers) and \
        third_of(left[0], num_layers) != third_of(right[0], num_layers)


def refine_crossing(score_at: Callable[[int], float], scores: dict[int, float], midpoint: float, num_layers: int,
                    budget: int, sweep: str = "bottom_up") -> dict:
    """Narrow a sweep's crossing interval by evaluating `score_at(k)` at most `budget` times.

    `scores` (k -> mean score) is the grid already evaluated; it gains the new points. Returns
    {"sweep", "interval": [a, b] (k* in (a, b]), "k_range": [lo, hi] bottom-up-equivalent, "class",
    "decided", "evaluations", "scores"}; interval None when the score never drops below the midpoint.
    """
    check_refine_budget(budget)
    scores = dict(scores)
    used = 0
    while True:
        cross = crossing(scores, midpoint)
        if cross is None:
            return {"sweep": sweep, "interval": None, "k_range": None, "class": "nowhere", "decided": False,
                    "evaluations": used, "scores": scores}
        a, b = cross
        lo, hi = as_bottom_up(a, b, sweep, num_layers)
        done = decided(lo, hi, num_layers)
        k = None if done or used >= budget else next_k(a, b, sweep, num_layers)
        if k is None:
            return {"sweep": sweep, "interval": [a, b], "k_range": [lo, hi],
                    "class": third_of(lo, num_layers) if done else "undecided", "decided": done,
                    "evaluations": used, "scores": scores}
        scores[k] = float(score_at(k))
        used += 1

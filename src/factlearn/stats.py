"""Uncertainty of a run's numbers: intervals for scores and paired tests between conditions.

A few items per task and a few seeds make point scores noisy, so every score gets an interval and
every comparison of two conditions on the *same items* is paired (item i of one condition against
item i of the other), which removes the items' own difficulty from the noise.

- a proportion (0/1 item scores, one seed): Wilson score interval;
- a mean of other item scores (F1, probe ratios in nats): percentile bootstrap over items;
- several seeds: Student-t interval on the seed means (the spread between trained models), never
  narrower than the item-level interval;
- two conditions on the same items: the difference of means, a paired bootstrap interval, and a
  p-value: exact McNemar for 0/1 scores of one pairing, else the paired bootstrap's.

For bounded scores the bootstraps add a half-weight pseudo-item at each end of the range (see
paired_bootstrap_replicates): a plain bootstrap of three items that all agree has zero width.

scipy is not a dependency of factlearn, so the binomial tails and Student's t distribution are
computed here by hand (math.comb; the closed-form t CDF for integer degrees of freedom, inverted by
bisection). Every bootstrap is seeded, so the same numbers give the same interval.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from factlearn.errors import UserError

N_BOOT = 2000  # bootstrap resamples: percentile bounds move by < 0.01 between seeds at this size


# The confidence of every interval, test and verdict unless a run says otherwise (`ci_level`, checked by
# check_level at the config boundary); the one home of the default.
CI_LEVEL = 0.95


def check_level(level: float, name: str = "confidence level") -> float:
    """A confidence level must lie strictly between 0 and 1 (0.95 for a 95 % interval). Checked where a
    level enters (the run config, evaluate(), conclude(), a run folder read back); the functions below
    take it as given."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < float(level) < 1:
        raise UserError(f"{name} must be a probability strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


# Two conditions are compared for what they generalise only when their knowledge levels (scores in
# [0, 1]) are at most this far apart (`parity_margin`); the one home of the default.
PARITY_MARGIN = 0.15


def check_parity_margin(margin: float) -> float:
    """The parity margin is a score difference in [0, 1)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= float(margin) < 1:
        raise UserError(f"parity_margin must be a score difference in [0, 1), e.g. 0.15; got {margin!r}")
    return float(margin)


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def is_binary(values: Sequence[float]) -> bool:
    """True when every score is 0 or 1 (accuracy, exact match)."""
    return all(v in (0, 1) for v in values)


# --------------------------------------------------------------------------- one score

def wilson_interval(successes: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion: stays inside [0, 1] and is sensible at 0/n and n/n."""
    if n <= 0:
        raise ValueError("a proportion needs at least one trial")
    z, p = _z(level), successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, center - half)  # exact ends: no rounding residue at 0/n, n/n
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def percentile_interval(replicates: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The central `level` share of bootstrap replicates."""
    lo, hi = np.quantile(np.asarray(replicates, dtype=float), [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_mean_ci(values: Sequence[float], level: float = CI_LEVEL, n_boot: int = N_BOOT, seed: int = 0,
                      bounds: tuple[float, float] | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean: resample the values with replacement, `n_boot` times.

    With `bounds` (a score's range) it is the Bayesian bootstrap with a half-weight pseudo-value at
    each bound (see paired_bootstrap_replicates), so a few equal values do not give a zero-width interval.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("a mean needs at least one value")
    reps = _resampled_means(x, n_boot, np.random.default_rng(seed), bounds)
    return percentile_interval(reps, level)


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with integer `df` degrees of freedom (bisection on the exact CDF)."""
    lo, hi = -1e6, 1e6
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for integer df: Abramowitz & Stegun 26.7.3 (a finite series in cos(theta))."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:  # A = 2/pi * (theta + sin * cos * (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, total = 1.0, 0.0
        if df > 1:
            total = term
            for j in range(1, (df - 3) // 2 + 1):
                term *= c2 * (2 * j) / (2 * j + 1)
                total += term
        a = 2 / math.pi * (theta + s * math.cos(theta) * total)
    else:  # A = sin * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term, total = 1.0, 1.0
        for j in range(1, (df - 2) // 2 + 1):
            term *= c2 * (2 * j - 1) / (2 * j)
            total += term
        a = s * total
    return 0.5 + a / 2  # A = P(|T| <= |t|) with the sign of t


def t_interval(values: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float]:
    """Student-t interval of the mean of >= 2 values (e.g. one score per seed)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        raise ValueError("a t interval needs at least two values")
    half = t_quantile(0.5 + level / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return float(x.mean()) - half, float(x.mean()) + half


def item_interval(values: Sequence[float], level: float = CI_LEVEL, n_boot: int = N_BOOT, seed: int = 0,
                  bounds: tuple[float, float] | None = None) -> tuple[float, float, str]:
    """(low, high, method) over items: Wilson for 0/1 scores, percentile bootstrap otherwise."""
    if is_binary(values) and bounds in (None, (0, 1)):
        return (*wilson_interval(int(sum(values)), len(values), level), "wilson")
    return (*bootstrap_mean_ci(values, level, n_boot, seed, bounds), "bootstrap")


def score_interval(per_seed: Sequence[Sequence[float]], level: float = CI_LEVEL, n_boot: int = N_BOOT,
                   seed: int = 0, bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """The mean of item scores and its interval: over seeds when >= 2 seeds, else over items.

    `per_seed` holds one list of item scores per seed. With one seed the interval is the item-level
    one. With several it is a t-interval on the seed means (clipped to `bounds`: a score cannot leave
    [0, 1]), widened where needed to cover the item-level interval of the seed-averaged items: seeds
    that agree exactly (all 0, say) say nothing about the items' own sampling noise.
    Returns {"mean", "ci": [low, high], "method", "n_items", "n_seeds"}.
    """
    seeds = [list(s) for s in per_seed if len(s)]
    if not seeds:
        raise ValueError("no item scores")
    means = [float(np.mean(s)) for s in seeds]
    if len(seeds) >= 2:
        lo, hi = t_interval(means, level)
        method = f"t over {len(seeds)} seed means"
        if len({len(s) for s in seeds}) == 1:
            ilo, ihi, _ = item_interval(list(np.mean(seeds, axis=0)), level, n_boot, seed, bounds)
            lo, hi = min(lo, ilo), max(hi, ihi)
            method += ", at least the item-level interval"
    else:
        lo, hi, method = item_interval(seeds[0], level, n_boot, seed, bounds)
    if bounds is not None:
        lo, hi = max(bounds[0], lo), min(bounds[1], hi)
    return {"mean": float(np.mean(means)), "ci": [lo, hi], "method": method,
            "n_items": len(seeds[0]), "n_seeds": len(seeds)}


# --------------------------------------------------------------------------- exact binomial tests

def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed exactly (math.comb; no scipy)."""
    k = max(k, 0)
    return min(1.0, sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the b + c discordant pairs split as Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def above_chance(successes: int, n: int, chance: float, level: float = CI_LEVEL) -> dict:
    """One-sided exact binomial test of "the success rate is above `chance`" at confidence `level`.

    Returns {"successes", "n", "chance", "p_value", "above"}; `above` when p_value < 1 - level.
    """
    if not 0 <= chance <= 1:
        raise UserError(f"chance must be a probability in [0, 1]; got {chance!r}")
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1; got {successes}/{n}")
    p = binomial_upper_tail(successes, n, chance)
    return {"successes": successes, "n": n, "chance": chance, "p_value": p, "above": p < 1 - level}


# --------------------------------------------------------------------------- paired comparisons

def paired_bootstrap_replicates(a_by_seed: Sequence[Sequence[float]], b_by_seed: Sequence[Sequence[float]],
                                n_boot: int = N_BOOT, seed: int = 0,
                                bounds: tuple[float, float] | None = None) -> np.ndarray:
    """Bootstrap replicates of mean(a - b), resampling items and keeping every pair together.

    a_by_seed[s][i] and b_by_seed[s][i] are the scores of the same item i in seed s's pairing. The
    difference is averaged over items, then over seeds. Seeds that share the item set (the usual
    case: every seed is evaluated on the same items) are resampled with the same items, since an
    easy item is easy in every seed; the seeds themselves are not resampled.

    With `bounds` (the range of a score, (0, 1) for accuracy) the resampling is Rubin's Bayesian
    bootstrap (Dirichlet weights on the items) plus two pseudo-items of weight 1/2 at the smallest and
    largest possible difference. Without them, a few items on which both conditions agree would
    give the interval [0, 0]: certainty of "no effect" from, say, three items. The pseudo-items keep
    the interval as wide as so few items warrant, and matter little once items are many.
    """
    diffs = [np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in zip(a_by_seed, b_by_seed)]
    if not diffs or any(d.size == 0 for d in diffs):
        raise ValueError("a paired comparison needs at least one item in every seed")
    rng = np.random.default_rng(seed)
    groups = [np.mean(diffs, axis=0)] if len({d.size for d in diffs}) == 1 else diffs
    pseudo = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    return np.mean([_resampled_means(g, n_boot, rng, pseudo) for g in groups], axis=0)


def _resampled_means(values: np.ndarray, n_boot: int, rng, pseudo: tuple[float, float] | None) -> np.ndarray:
    if pseudo is None:  # classical: n items drawn with replacement
        return values[rng.integers(0, values.size, size=(n_boot, values.size))].mean(axis=1)
    weights = rng.dirichlet(np.concatenate([np.ones(values.size), [0.5, 0.5]]), size=n_boot)
    return weights @ np.concatenate([values, pseudo])


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from its bootstrap replicates (add-one corrected)."""
    reps = np.asarray(replicates, dtype=float)
    below = (np.sum(reps <= 0) + 1) / (reps.size + 1)
    above = (np.sum(reps >= 0) + 1) / (reps.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def p_at_least(replicates: np.ndarray, bound: float) -> float:
    """One-sided p-value of "the effect is at least `bound`" from its bootstrap replicates (add-one
    corrected): the test behind "no meaningful effect" (a verdict's upper bound below `bound`)."""
    reps = np.asarray(replicates, dtype=float)
    return float((np.sum(reps >= bound) + 1) / (reps.size + 1))


def paired_comparison(a_by_seed: Sequence[Sequence[float]], b_by_seed: Sequence[Sequence[float]],
                      level: float = CI_LEVEL, n_boot: int = N_BOOT, seed: int = 0,
                      bounds: tuple[float, float] | None = None) -> dict:
    """Condition a against condition b on the same items: difference of means, interval, p-value.

    The interval is the paired bootstrap's (see paired_bootstrap_replicates; pass the score's
    `bounds` for bounded scores). The p-value is exact
    McNemar when the scores are 0/1 and there is one pairing (one seed); otherwise, with several seeds
    (their pairs are not independent: same items) or non-0/1 scores, the paired bootstrap's.
    Returns {"diff", "ci", "p_value", "test", "n_items", "n_seeds", "replicates"} (replicates: ndarray).
    """
    if len(a_by_seed) != len(b_by_seed):
        raise ValueError("a and b need one item list per seed pairing each")
    for a, b in zip(a_by_seed, b_by_seed):
        if len(a) != len(b):
            raise ValueError("paired scores need the same items in both conditions")
    reps = paired_bootstrap_replicates(a_by_seed, b_by_seed, n_boot, seed, bounds)
    diff = float(np.mean([np.mean(np.asarray(a, float) - np.asarray(b, float)) for a, b in zip(a_by_seed, b_by_seed)]))
    flat_a = [v for s in a_by_seed for v in s]
    flat_b = [v for s in b_by_seed for v in s]
    if len(a_by_seed) == 1 and is_binary(flat_a) and is_binary(flat_b):
        b_only = sum(1 for x, y in zip(flat_a, flat_b) if x == 1 and y == 0)
        c_only = sum(1 for x, y in zip(flat_a, flat_b) if x == 0 and y == 1)
        p, test = mcnemar_exact(b_only, c_only), "exact McNemar"
    else:
        p, test = bootstrap_p_value(reps), "paired bootstrap"
    return {"diff": diff, "ci": list(percentile_interval(reps, level)), "p_value": p, "test": test,
            "n_items": len(a_by_seed[0]), "n_seeds": len(a_by_seed), "replicates": reps}


# --------------------------------------------------------------------------- clusters and multiplicity

def cluster_bootstrap_replicates(tasks: Sequence[dict], clusters: Sequence[dict], n_boot: int = N_BOOT,
                                 seed: int = 0) -> np.ndarray:
    """Replicates of mean over tasks of (mean over seeds of (mean over items of a paired difference)).

    tasks[t] maps seed -> item -> difference; clusters[t] maps item -> its fact. One replicate draws
    facts with replacement (every item of a drawn fact, in every task, enters with that fact's count:
    the five indirect items of a country, its QA and its MC items rise and fall together) and, with
    two or more seeds, the seeds with replacement. Items of the same fact are not independent, so
    resampling them one by one (paired_bootstrap_replicates) gives intervals that are too narrow.
    Written by hand: no library bootstraps two crossed levels with shared clusters across tasks.
    """
    facts = sorted({clusters[t][i] for t, task in enumerate(tasks) for s in task.values() for i in s}, key=str)
    seeds = sorted({s for task in tasks for s in task}, key=lambda s: (s is None, s if s is not None else 0))
    if not facts or not seeds:
        raise ValueError("a cluster bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    fact_w = rng.multinomial(len(facts), np.full(len(facts), 1 / len(facts)), size=n_boot).astype(float)
    seed_w = (rng.multinomial(len(seeds), np.full(len(seeds), 1 / len(seeds)), size=n_boot).astype(float)
              if len(seeds) > 1 else np.ones((n_boot, 1)))
    f_index = {f: k for k, f in enumerate(facts)}
    per_task = []
    for t, task in enumerate(tasks):
        num = np.zeros(n_boot)
        den = np.zeros(n_boot)
        for j, s in enumerate(seeds):
            if s not in task or not task[s]:
                continue
            items = list(task[s])
            w = fact_w[:, [f_index[clusters[t][i]] for i in items]]  # (B, n_items)
            total = w.sum(axis=1)
            mean = np.divide(w @ np.asarray([task[s][i] for i in items], float), total,
                             out=np.full(n_boot, np.nan), where=total > 0)
            ok = ~np.isnan(mean)
            num[ok] += seed_w[ok, j] * mean[ok]
            den[ok] += seed_w[ok, j]
        per_task.append(np.divide(num, den, out=np.full(n_boot, np.nan), where=den > 0))
    reps = np.nanmean(np.vstack(per_task), axis=0) if per_task else np.full(n_boot, np.nan)
    return reps[~np.isnan(reps)]


def seed_directions(tasks: Sequence[dict]) -> dict:
    """Per seed, the sign (+1, -1, 0) of mean over tasks of the seed's mean difference."""
    seeds = {s for task in tasks for s in task}
    out = {}
    for s in seeds:
        means = [float(np.mean(list(task[s].values()))) for task in tasks if task.get(s)]
        out[s] = int(np.sign(np.mean(means))) if means else 0
    return out


def holm_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None, not counted among the tests).

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where adjusted p < alpha controls the family-wise error at alpha over the m tests.
    """
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * float(p)))
        out[i] = running
    return out

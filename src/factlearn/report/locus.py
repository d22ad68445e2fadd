"""Where in the network an ablation says the learned knowledge lives: lower, middle or upper third.

Rule (one number per ablated model and task): resetting the first k layers to base (bottom-up) makes
the score fall from the finetuned value towards the base value; k* is the smallest k of the sweep
whose score drops below the midpoint of the two. Knowledge stored low is lost after a few layers
(small k*); knowledge stored in the middle survives until the middle layers are reset. k*/layers
classes it: lower (<= 1/3), middle (<= 2/3), upper (> 2/3), or "nowhere" when no k drops below the
midpoint (the finetuned model is not above base, or the layers alone do not carry it).

Its interval: a bootstrap over items (the same items resampled at every k, in the finetuned and the
base model), k* recomputed per resample. With several seeds, each item's score is first averaged
over the seeds.
"""

from __future__ import annotations

import numpy as np

from factlearn.analyze.refine import as_bottom_up, crossing, decided
from factlearn.stats import N_BOOT
from factlearn.report.evidence import AblationSweep

CLASSES = ("lower", "middle", "upper")


def third(k: float, num_layers: int) -> str:
    """The class of a crossing point k of `num_layers` layers (k > num_layers: never crossed)."""
    if k > num_layers:
        return "nowhere"
    return CLASSES[0] if k <= num_layers / 3 else CLASSES[1] if k <= 2 * num_layers / 3 else CLASSES[2]


def _first_below(curves: np.ndarray, ks: np.ndarray, ft: np.ndarray, base: np.ndarray, never: int) -> np.ndarray:
    """k* per column: curves (K, B), ft/base (B,) -> (B,) with `never` where no k drops below the midpoint."""
    below = (curves < ((ft + base) / 2)[None, :]) & (ft > base)[None, :]
    first = np.where(below.any(axis=0), ks[np.argmax(below, axis=0)], never)
    return first


def ablation_locus(sweeps: dict, level: float, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """{"k", "ci", "class", "decided", "num_layers", "n_items"} of sweeps (seed -> AblationSweep) on one task.

    `k` and the CI ends are None where the score never drops below the midpoint. `decided`: both
    ends of the interval fall in the same third.
    """
    sweeps: list[AblationSweep] = list(sweeps.values())
    num_layers = sweeps[0].num_layers
    ks = sorted(k for k in set.intersection(*(set(s.bottom_up) for s in sweeps)) if k > 0)
    items = set.intersection(*(set(s.finetuned) & set(s.base) for s in sweeps),
                             *(set(s.bottom_up[k]) for s in sweeps for k in ks))
    items = sorted(items)
    never = num_layers + 1
    if not ks or not items:
        return {"k": None, "ci": [None, None], "class": "nowhere", "decided": False, "num_layers": num_layers,
                "n_items": len(items)}
    ft = np.mean([[s.finetuned[i] for i in items] for s in sweeps], axis=0)
    base = np.mean([[s.base[i] for i in items] for s in sweeps], axis=0)
    curves = np.mean([[[s.bottom_up[k][i] for i in items] for k in ks] for s in sweeps], axis=0)  # (K, n)
    karr = np.asarray(ks)
    point = int(_first_below(curves.mean(axis=1)[:, None], karr, ft.mean(keepdims=True),
                             base.mean(keepdims=True), never)[0])
    idx = np.random.default_rng(seed).integers(0, len(items), size=(n_boot, len(items)))
    reps = _first_below(curves[:, idx].mean(axis=2), karr, ft[idx].mean(axis=1), base[idx].mean(axis=1), never)
    lo, hi = (int(v) for v in np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf"))
    cls_lo, cls_hi = third(lo, num_layers), third(hi, num_layers)

    def shown(k: int):
        return None if k == never else k

    return {"k": shown(point), "ci": [shown(lo), shown(hi)], "class": third(point, num_layers),
            "decided": cls_lo == cls_hi != "nowhere", "num_layers": num_layers, "n_items": len(items)}


def top_down_locus(sweeps: dict) -> dict | None:
    """The top-down sweep's crossing as a bottom-up-equivalent interval of k* and its class (point means).

    Resetting the last k layers loses knowledge held at layer j once k >= L - j, i.e. at bottom-up
    k* = j + 1 = L - k + 1; the crossing (a, b] between neighbouring grid points maps to
    [L - b + 1, L - a]. None when a seed has no top-down sweep.
    """
    sweeps = list(sweeps.values())
    if not sweeps or any(not s.top_down for s in sweeps):
        return None
    num_layers = sweeps[0].num_layers
    ks = sorted(set.intersection(*(set(s.top_down) for s in sweeps)))
    items = sorted(set.intersection(*(set(s.finetuned) & set(s.base) for s in sweeps),
                                    *(set(s.top_down[k]) for s in sweeps for k in ks)))
    if not items:
        return None
    ft = float(np.mean([[s.finetuned[i] for i in items] for s in sweeps]))
    base = float(np.mean([[s.base[i] for i in items] for s in sweeps]))
    scores = {k: float(np.mean([[s.top_down[k][i] for i in items] for s in sweeps])) for k in ks}
    cross = crossing(scores, (ft + base) / 2) if ft > base else None
    if cross is None:
        return {"k_range": None, "class": "nowhere", "decided": False, "num_layers": num_layers}
    lo, hi = as_bottom_up(*cross, "top_down", num_layers)
    return {"k_range": [lo, hi], "class": third(lo, num_layers) if decided(lo, hi, num_layers) else "undecided",
            "decided": decided(lo, hi, num_layers), "num_layers": num_layers}

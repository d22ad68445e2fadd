"""What makes a verdict fair: parity of knowledge, transfer per known fact, seeds that agree, scope, Holm.

- Parity: comparing how two conditions *generalise* is only meaningful where both learned about as
  much. The knowledge measure is QA, or its likelihood form (MC cloze) where QA is marked as answered
  in the wrong form (report/forms.py); the two levels must lie within `parity_margin` of each other,
  else the finding is `not comparable`, with both levels and the reason.
- Conditional transfer: P(reasoning item right | the same fact's knowledge item right), per
  condition, and its paired difference over the facts both conditions know (cluster bootstrap over
  facts and seeds).
- Seeds: a finding whose effect points one way in one seed and the other way in another cannot be
  supported or contradicted.
- Scope: every verdict line names model, method, seeds, world size and each corpus's budget.
- Holm: the primary tests of all findings are corrected together; raw and adjusted p are shown.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from factlearn.data.schema import KNOWLEDGE_CONFIGS as KNOWLEDGE_FORMS  # the likelihood form where QA is marked
from factlearn.stats import (N_BOOT, bootstrap_p_value, cluster_bootstrap_replicates, holm_adjust,
                             percentile_interval)

NOT_COMPARABLE = "not comparable"

Marked = Callable[[str, list, str], "str | None"]  # (model, [(method, condition)], task) -> why marked


def knowledge_task(ev, model: str, conditions: list[tuple[str, str]], marked: Marked | None = None) -> str | None:
    """QA, or MC cloze where QA is marked (wrong answer form) for one of the conditions; None if neither."""
    for task in KNOWLEDGE_FORMS:
        if any(ev.task_scores(model, *c, task) is None for c in conditions):
            continue
        if marked is not None and marked(model, conditions, task):
            continue
        return task
    return None


def level(ev, model: str, condition: tuple[str, str], task: str) -> float:
    """Mean item score over seeds: how much a condition knows on the knowledge measure."""
    ts = ev.task_scores(model, *condition, task)
    return float(np.mean([np.mean(list(items.values())) for items in ts.by_seed.values() if items]))


def parity(ev, model: str, a: tuple[str, str], b: tuple[str, str], margin: float,
           marked: Marked | None = None) -> tuple[bool, str, dict]:
    """(comparable, reason, {"task", a: level, b: level}): both learned within `margin` of each other."""
    task = knowledge_task(ev, model, [a, b], marked)
    if task is None:
        return False, f"no knowledge measure ({' or '.join(KNOWLEDGE_FORMS)}) for both {a[1]} and {b[1]}", {}
    la, lb = level(ev, model, a, task), level(ev, model, b, task)
    info = {"task": task, a[1]: la, b[1]: lb, "margin": margin}
    if abs(la - lb) > margin:
        return False, (f"{a[1]} and {b[1]} learned different amounts ({task} {la:.2f} vs {lb:.2f}, "
                       f"|difference| {abs(la - lb):.2f} > parity margin {margin:g}): how each generalises "
                       "cannot be compared"), info
    return True, f"knowledge within the parity margin ({task} {la:.2f} vs {lb:.2f}, margin {margin:g})", info


def _by_fact(scores: dict, facts: dict) -> dict:
    """seed -> fact -> mean item score, for items whose fact is known."""
    out = {}
    for s, items in scores.items():
        grouped: dict[str, list] = {}
        for i, v in items.items():
            if i in facts:
                grouped.setdefault(facts[i], []).append(v)
        out[s] = {f: float(np.mean(v)) for f, v in grouped.items()}
    return out


def _per_seed(by_seed: dict, seed):
    return by_seed.get(seed, by_seed.get(None)) if len(by_seed) != 1 else next(iter(by_seed.values()))


def conditional_transfer(ev, model: str, a: tuple[str, str], b: tuple[str, str], know: str, reason: str,
                         level_: float, n_boot: int = N_BOOT, seed: int = 0) -> dict | None:
    """P(reasoning right | that fact's knowledge item right) for a and b, and its paired difference.

    A fact is "known" in a seed when every one of its knowledge items is right. The difference is taken
    over facts both conditions know in the same seed; its interval resamples facts and seeds.
    None when the items carry no fact keys (ev.facts) or no fact is known by both.
    """
    facts_k, facts_r = ev.facts.get(know, {}), ev.facts.get(reason, {})
    if not facts_k or not facts_r:
        return None
    out, known = {}, {}
    for cond in (a, b):
        ks, rs = ev.task_scores(model, *cond, know), ev.task_scores(model, *cond, reason)
        if ks is None or rs is None:
            return None
        k_by, r_by = _by_fact(ks.by_seed, facts_k), _by_fact(rs.by_seed, facts_r)
        known[cond] = {s: {f: r_by[s][f] for f, v in k_by[s].items() if v == 1.0 and f in r_by.get(s, {})}
                       for s in k_by}
        vals = [v for s in known[cond].values() for v in s.values()]
        out[cond[1]] = {"p": float(np.mean(vals)) if vals else None, "n_known": len(vals)}
    seeds = sorted(set(known[a]) | set(known[b]), key=lambda s: (s is None, s or 0))
    diffs = {}
    for s in seeds:
        ka, kb = _per_seed(known[a], s), _per_seed(known[b], s)
        if ka is None or kb is None:
            continue
        both = set(ka) & set(kb)
        if both:
            diffs[s] = {f: ka[f] - kb[f] for f in both}
    if not diffs:
        return {"name": f"P({reason} right | {know} right): {a[1]} - {b[1]}", "value": None, "ci": [None, None],
                "per_condition": out, "n_facts": 0, "test": "no fact known by both"}
    clusters = {f: f for d in diffs.values() for f in d}
    reps = cluster_bootstrap_replicates([diffs], [clusters], n_boot, seed)
    value = float(np.mean([np.mean(list(d.values())) for d in diffs.values()]))
    return {"name": f"P({reason} right | {know} right): {a[1]} - {b[1]}", "value": value,
            "ci": list(percentile_interval(reps, level_)), "p_value": bootstrap_p_value(reps),
            "test": "cluster bootstrap over facts and seeds", "per_condition": out,
            "n_facts": len(clusters)}


def directions_disagree(directions: dict) -> bool:
    """True when one seed's effect is positive and another's negative."""
    signs = set(directions.values())
    return 1 in signs and -1 in signs


def scope_text(model, method, seeds: Sequence, world_size: int | None, budgets: dict | None) -> str:
    """The scope a verdict holds at, for the same line as the verdict."""
    seeds = list(seeds or [])
    seed_part = (f"seeds {','.join(str(s) for s in seeds)}" if len(seeds) > 1 else
                 f"1 seed ({seeds[0] if seeds else '?'}; seed-to-seed variation not measured)")
    parts = [f"model {model}", f"method {method}", seed_part]
    if world_size is not None:
        parts.append(f"world {world_size}" if isinstance(world_size, str) else f"world {world_size} facts")
    if budgets:
        parts.append("budget " + ", ".join(f"{c} {b}" for c, b in budgets.items()))
    return "; ".join(parts)


def tested_p(entry: dict) -> float | None:
    """The p-value of an entry's primary test: its contradiction test where the finding was judged
    contradicted (conclusions.contradiction_test), else its first measurement's test of "no difference"."""
    if entry.get("contradiction_test"):
        return entry["contradiction_test"]["p"]
    measures = entry["evidence"]["measurements"]
    return measures[0].get("p_value") if measures else None


def apply_holm(entries: list[dict], level: float | None = None) -> None:
    """Add p_raw / p_holm to every entry's primary test (tested_p), in place.

    With `level`, a `supported` or a tested `contradicted` whose Holm-adjusted p exceeds 1 - level
    becomes inconclusive: each finding's interval is at the uncorrected level, and the run tests several
    findings at once. A contradiction is a claim too ("no effect of at least min_effect"), so it faces
    the same correction as a support."""
    raw = [tested_p(e) for e in entries]
    family = sum(1 for x in raw if x is not None)
    for e, p, adj in zip(entries, raw, holm_adjust(raw)):
        e["p_raw"], e["p_holm"] = p, adj
        e["holm_family"] = family
        decided = e["verdict"] == "supported" or (e["verdict"] == "contradicted" and e.get("contradiction_test"))
        if level is not None and decided and adj is not None and adj > 1 - level:
            was = e["verdict"]
            e["verdict"] = "inconclusive"
            e["evidence"]["notes"].insert(0,  # first: the reason the verdict is not what its interval says
                f"{was} at the uncorrected level (p={p:.2g}), not after Holm's correction over the run's "
                f"{family} tested findings (p_holm={adj:.2g} > {1 - level:.2g}): not decided")


def run_scope(results: dict) -> dict:
    """{"world_size", "budgets"} of a run's results: the world's size and each corpus's training budget."""
    cfg, world = results.get("run_config") or {}, results.get("world") or {}
    size = (f"{world['n_facts']} facts" if world.get("n_facts") else
            f"{world['n_countries']} countries" if world.get("n_countries") else None)
    recipes = cfg.get("recipes") or {}
    budgets = {}
    for corpus in cfg.get("corpora") or []:
        extra = (cfg.get("corpus_overrides") or {}).get(corpus) or []
        per_method = []
        for method, recipe in recipes.items():
            if method in (cfg.get("methods") or recipes):
                over = recipe.get("overrides", []) if isinstance(recipe, dict) else []
                settings = dict(o.split("=", 1) for o in [*over, *extra] if "=" in o)  # later ones win
                per_method.append(" ".join(f"{k}={v}" for k, v in settings.items()) or "recipe defaults")
        budgets[corpus.removeprefix("Corpus_")] = " | ".join(dict.fromkeys(per_method)) or "recipe defaults"
    return {"world_size": size, "budgets": budgets}

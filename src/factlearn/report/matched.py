"""Findings at matched knowledge: F3 decided along the learning curves, where both conditions know as much.

A single budget per condition confounds "how the corpus generalises" with "how much it taught". Along
the curves each budget of referencing and of narrative has a knowledge level (QA, or MC cloze where QA
is answered in the wrong form). The verdict pairs the budgets whose levels lie within the parity
margin, taking the pair with the highest common level (both must know more than the base model), and
compares their reasoning there, paired over items with the cluster bootstrap over facts. No pair within
the margin: `not comparable`, with each curve's range of levels.

F4's curve: forgetting minus the continued control on the reasoning mean, at every budget both reach
after the reset (evidence beside F4's single-budget verdict).
"""

from __future__ import annotations

from factlearn.report.conclusions import (CONTINUED, FORGET, NARR, REF, Judge, Measure, _entry,
                                          _reasoning_effect, contradiction_test)
from factlearn.report.dose import CurveEvidence, evidence_at
from factlearn.report.evidence import BASE, Evidence
from factlearn.report.fairness import NOT_COMPARABLE, apply_holm, knowledge_task, level, scope_text

F3_MATCHED = "F3k"
CLAIM = "Referencing generalises to reasoning better than narrative, at the same amount of knowledge."


def matched_budgets(curves: CurveEvidence, base: Evidence, model: str, method: str, margin: float,
                    marked=None) -> tuple[dict | None, str, str]:
    """(the referencing and narrative budgets compared with their levels, or None; the verdict where
    None; the curves' knowledge ranges or why there is no match)."""
    a, b = (model, method, REF), (model, method, NARR)
    if not curves.budgets(a) or not curves.budgets(b):
        return None, "not measurable", "the run has no learning curve of both referencing and narrative"
    levels = {}
    for key in (a, b):
        for epochs in curves.budgets(key):
            ev = evidence_at(curves, {key: epochs}, base)
            task = knowledge_task(ev, model, [key[1:]], marked)
            if task is not None:
                levels[(key, epochs)] = (task, level(ev, model, key[1:], task))
    pairs = [(ea, eb) for ea in curves.budgets(a) for eb in curves.budgets(b)
             if (a, ea) in levels and (b, eb) in levels and levels[(a, ea)][0] == levels[(b, eb)][0]
             and abs(levels[(a, ea)][1] - levels[(b, eb)][1]) <= margin]
    ranges = "; ".join(f"{k[2]} {min(v[1] for kk, v in levels.items() if kk[0] == k):.2f}.."
                       f"{max(v[1] for kk, v in levels.items() if kk[0] == k):.2f}"
                       for k in (a, b) if any(kk[0] == k for kk in levels))
    if not pairs:
        return None, NOT_COMPARABLE, (f"the curves never come within the parity margin {margin:g} of each other's knowledge "
                      f"({ranges or 'no knowledge measure on the curves'})")
    ea, eb = max(pairs, key=lambda p: (min(levels[(a, p[0])][1], levels[(b, p[1])][1]),
                                       -abs(levels[(a, p[0])][1] - levels[(b, p[1])][1]), -p[0], -p[1]))
    task = levels[(a, ea)][0]
    return {"task": task, REF: (ea, levels[(a, ea)][1]), NARR: (eb, levels[(b, eb)][1])}, "", ranges


def f3_matched(j: Judge, curves: CurveEvidence, model: str, method: str) -> tuple[str, list[Measure], list[str]]:
    """referencing - narrative on the reasoning mean, at the budgets where their knowledge matches."""
    match, verdict, why = matched_budgets(curves, j.ev, model, method, j.parity_margin, j.is_marked)
    if match is None:
        return verdict, [], [why]
    task, (ea, la), (eb, lb) = match["task"], match[REF], match[NARR]
    sub = evidence_at(curves, {(model, method, REF): ea, (model, method, NARR): eb}, j.ev)
    jm = Judge(sub, j.level, j.min_effect, j.min_effect_nats, j.n_boot, j.parity_margin, j.marked)
    where = (f"decided at matched knowledge: {task} {la:.2f} (referencing at {ea} epochs, "
             f"{ea * curves.rows_per_fact.get((model, method, REF), 0):g} sentences per fact) vs {lb:.2f} "
             f"(narrative at {eb} epochs, {eb * curves.rows_per_fact.get((model, method, NARR), 0):g} sentences "
             f"per fact); curve ranges {why}")
    verdict, measures, notes = _reasoning_effect(jm, model, (method, REF), (method, NARR),
                                                 "referencing - narrative at matched knowledge")
    level_measure = Measure(f"knowledge ({task}) at the matched budgets: referencing - narrative", la - lb,
                            [None, None], None, "parity margin",
                            {"budgets": {REF: ea, NARR: eb}, "levels": {REF: la, NARR: lb}})
    base_scores = j.ev.task_scores(model, *BASE, task)
    if base_scores is not None:
        base_level = level(j.ev, model, BASE, task)
        if min(la, lb) <= base_level and verdict != "not measurable":
            return "inconclusive", [*measures, level_measure], [
                where, *notes, f"the matched level is not above the base model's {task} {base_level:.2f}: "
                               "neither condition had learned anything to generalise there"]
    return verdict, [*measures, level_measure], [where, *notes]


def forgetting_curve(j: Judge, curves: CurveEvidence, model: str, method: str) -> list[Measure]:
    """narrative+forgetting - narrative+continued on the reasoning mean at each budget both reached."""
    a, b = (model, method, FORGET), (model, method, CONTINUED)
    out = []
    for epochs in sorted(set(curves.budgets(a)) & set(curves.budgets(b))):
        sub = evidence_at(curves, {a: epochs, b: epochs}, j.ev)
        jm = Judge(sub, j.level, j.min_effect, j.min_effect_nats, j.n_boot, j.parity_margin, j.marked)
        verdict, measures, _ = _reasoning_effect(jm, model, (method, FORGET), (method, CONTINUED),
                                                 f"at {epochs} epochs: forgetting - continued")
        if measures:
            m = measures[0]
            m.extra.update(epochs=epochs, verdict_at_budget=verdict)
            out.append(m)
    return out


def add_curve_findings(entries: list[dict], evidence: Evidence, curves: CurveEvidence, level_: float,
                       margin: float, scope: dict | None = None) -> list[dict]:
    """Beside conclude()'s entries: F3k per (model, method) with curves, and F4's curve as extra evidence
    (after its primary measure); Holm is then applied over all entries again."""
    j = Judge(evidence, level_, parity_margin=margin)
    scopes = list(dict.fromkeys(k[:2] for k in curves.points))
    for model, method in scopes:
        verdict, measures, notes = f3_matched(j, curves, model, method)
        entry = _entry(F3_MATCHED, CLAIM, matched_rule(j), model, method, verdict, measures, notes)
        if verdict == "contradicted":
            entry["contradiction_test"] = contradiction_test(measures, 1, j.min_effect)
        entry["seeds"] = curves.seeds(model, method)  # decided on the curves: their seeds, not the run's
        entry["scope"] = scope_text(model, method, entry["seeds"], (scope or {}).get("world_size"),
                                    {"curve": f"epochs {', '.join(str(b) for b in curves.budgets((model, method, REF)))}"})
        at = next(i for i, e in enumerate(entries) if e["id"] == "F3" and e["model"] == model
                  and e["method"] == method) + 1 if any(e["id"] == "F3" for e in entries) else len(entries)
        entries.insert(at, entry)
        f4 = next((e for e in entries if e["id"] == "F4" and e["model"] == model and e["method"] == method), None)
        along = forgetting_curve(j, curves, model, method)
        if f4 is not None and along:
            f4["evidence"]["measurements"] += [m.to_dict() for m in along]
            f4["evidence"]["notes"].append("along the curves, forgetting - continued on the reasoning mean: " + ", ".join(
                f"{m.extra['epochs']} epochs {m.value:+.2f} [{m.ci[0]:.2f}, {m.ci[1]:.2f}]" for m in along))
    apply_holm(entries, level_)
    return entries


def matched_rule(j: Judge) -> str:
    return (j.effect_rule("referencing - narrative, mean over the reasoning tasks, at the curve budgets whose "
                          "knowledge levels (QA, or MC cloze where QA is marked) lie within the parity margin, "
                          "the pair with the highest common level")
            + " Not comparable when no budgets of the two curves come within the margin; inconclusive when the "
              "matched level is not above the base model's.")

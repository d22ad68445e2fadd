"""The paper's findings, each judged from this run's numbers: supported, contradicted, inconclusive
or not measurable.

Every verdict comes from a rule applied to an interval, never from a fixed answer, and each entry
carries its rule as text next to the evidence (names, values, intervals, p-values). The common rule
for a claimed positive effect E (a difference of mean scores, paired over the same items):

    supported     the CI of E lies above 0
    contradicted  the CI's upper bound is below `min_effect` (no meaningful effect, or the opposite)
    inconclusive  otherwise: the interval does not decide it, or the decision does not survive Holm's
                  correction over the run's findings (a support's test: "no difference"; a
                  contradiction's: the one-sided p of "an effect of at least min_effect")
    not measurable  a task it needs is beyond the model (the capability control found it no better
                  than chance on real facts the model knows), or the run has no cells for it

Reasoning = the indirect-reasoning task, a 2-hop task and a multiple-choice task: per slot the first
of the forms listed in REASONING_SLOTS that the run evaluated and the control does not rule out (cloze
forms first: small models answer letter choices at chance). A reasoning effect is the mean of the
slots' effects, its interval from the slots' bootstrap replicates.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from factlearn.report.evidence import BASE, Evidence, pair_items
from factlearn.report.fairness import (NOT_COMPARABLE, apply_holm, conditional_transfer, directions_disagree, parity,
                                       scope_text)
from factlearn.stats import (CI_LEVEL, N_BOOT, PARITY_MARGIN, bootstrap_p_value, check_level, check_parity_margin,
                             cluster_bootstrap_replicates, p_at_least, paired_comparison, percentile_interval)
from factlearn.report.locus import ablation_locus, top_down_locus

QA = "Eval_QA"
REASONING_SLOTS = (
    # the likelihood form is used where the generated one is marked (report/forms.py: wrong answer form)
    ("indirect", ("Eval_indirect_reasoning", "Eval_indirect_reasoning_cloze")),
    ("2-hop", ("Eval_2hop_reasoning_cloze", "Eval_2hop_reasoning", "Eval_2hop_reasoning_raw")),
    ("multiple choice", ("Eval_multiple_choice_cloze", "Eval_multiple_choice")),
)
VERDICTS = ("supported", "contradicted", "inconclusive", "not measurable", NOT_COMPARABLE)
MIN_EFFECT = 0.05  # score difference (scores in [0, 1]) below which an effect is not meaningful
MIN_EFFECT_NATS = 0.1  # the same for probe ratios, in nats
NARR, REF, FORGET = "narrative", "referencing", "narrative+forgetting"
CONTINUED = "narrative+continued"  # forgetting's two passes without the reset: the budget-matched control
SCORE_RANGE = (0.0, 1.0)  # task scores; probe ratios (nats) are unbounded


@dataclass
class Measure:
    """One number of the evidence with its interval; `replicates` feed composite effects."""

    name: str
    value: float
    ci: list
    p_value: float | None = None
    test: str = ""
    extra: dict = field(default_factory=dict)
    replicates: np.ndarray | None = None
    per_seed: dict | None = None  # seed -> the effect in that seed alone (directions must agree)
    clustered: tuple | None = None  # (seed -> item -> a - b, item -> fact): for a joint cluster bootstrap

    def to_dict(self) -> dict:
        seeds = {"per_seed": {str(s): v for s, v in self.per_seed.items()}} if self.per_seed else {}
        return {"name": self.name, "value": self.value, "ci": self.ci, "p_value": self.p_value,
                "test": self.test, **self.extra, **seeds}


@dataclass
class Judge:
    """The evidence plus the settings every rule uses."""

    ev: Evidence
    level: float
    min_effect: float = MIN_EFFECT
    min_effect_nats: float = MIN_EFFECT_NATS
    n_boot: int = N_BOOT
    parity_margin: float = PARITY_MARGIN
    # hook: (model, [(method, condition)], task) -> why the task is marked (wrong answer form), or None
    marked: object = None

    def is_marked(self, model: str, conditions: list, task: str):
        if self.marked is not None:
            return self.marked(model, conditions, task)
        reason = getattr(self.ev, "marked_reason", None)
        return reason(model, conditions, task) if reason else None

    @property
    def pct(self) -> str:
        return f"{self.level * 100:g} %"

    def compare(self, name: str, a: dict | None, b: dict | None, bounds=SCORE_RANGE,
                task: str | None = None) -> Measure | None:
        """Paired comparison a - b of two seed -> item -> score maps (None when either is missing).

        Where every item's fact is known (`task` given, records with "fact"), the interval and p-value
        come from the cluster bootstrap over facts and seeds; else from the item-level paired test.
        """
        pairs = pair_items(a or {}, b or {})
        if pairs is None:
            return None
        a_by, b_by, seeds = pairs
        seed = zlib.crc32(name.encode("utf-8"))  # deterministic, and independent between measures
        c = paired_comparison(a_by, b_by, self.level, self.n_boot, seed, bounds)
        per_seed = {s: float(np.mean(np.subtract(x, y))) for s, x, y in zip(seeds, a_by, b_by)}
        m = Measure(name, c["diff"], c["ci"], c["p_value"], c["test"],
                    {"n_items": c["n_items"], "n_seeds": c["n_seeds"]}, c["replicates"], per_seed)
        facts = self.ev.facts.get(task, {}) if task else {}
        diffs = _item_diffs(a, b)
        if facts and diffs and all(i in facts for d in diffs.values() for i in d):
            clusters = {i: facts[i] for d in diffs.values() for i in d}
            reps = cluster_bootstrap_replicates([diffs], [clusters], self.n_boot, _CLUSTER_SEED)
            m.ci, m.p_value, m.replicates = _wider(m.ci, percentile_interval(reps, self.level)), bootstrap_p_value(reps), reps
            m.test = f"cluster bootstrap over {len(set(clusters.values()))} facts and {len(diffs)} seed(s)"
            m.extra["n_facts"] = len(set(clusters.values()))
            m.clustered = (diffs, clusters)
        return m

    def task_diff(self, model: str, a: tuple[str, str], b: tuple[str, str], task: str) -> Measure | None:
        sa, sb = self.ev.task_scores(model, *a, task), self.ev.task_scores(model, *b, task)
        if sa is None or sb is None:
            return None
        return self.compare(f"{task} {sa.metric}: {a[1]} - {b[1]}", sa.by_seed, sb.by_seed, task=task)

    def combine(self, name: str, parts: list[Measure], sign: list[float]) -> Measure:
        """sum(sign_i * part_i): value, percentile CI and bootstrap p-value from the parts' replicates."""
        reps = sum(s * p.replicates for s, p in zip(sign, parts))
        value = float(sum(s * p.value for s, p in zip(sign, parts)))
        seeds = set.intersection(*(set(p.per_seed or {}) for p in parts)) if parts else set()
        per_seed = {k: float(sum(s * p.per_seed[k] for s, p in zip(sign, parts))) for k in seeds} or None
        test = ("cluster bootstrap over facts and seeds" if all(p.clustered for p in parts)
                else "bootstrap over items")
        return Measure(name, value, list(percentile_interval(reps, self.level)), bootstrap_p_value(reps),
                       test, replicates=reps, per_seed=per_seed)

    def mean_of(self, name: str, parts: list[Measure]) -> Measure:
        m = self.combine(name, parts, [1 / len(parts)] * len(parts))
        if all(p.clustered for p in parts):  # one draw of facts for every task: a fact's items move together
            reps = cluster_bootstrap_replicates([p.clustered[0] for p in parts], [p.clustered[1] for p in parts],
                                                self.n_boot, _CLUSTER_SEED)
            m.ci, m.p_value, m.replicates = _wider(m.ci, percentile_interval(reps, self.level)), bootstrap_p_value(reps), reps
        return m

    def effect_verdict(self, m: Measure, min_effect: float | None = None) -> str:
        min_effect = self.min_effect if min_effect is None else min_effect
        lo, hi = m.ci
        if lo > 0:
            return "supported"
        if hi < min_effect:
            return "contradicted"
        return "inconclusive"

    def effect_rule(self, effect: str, min_effect: float | None = None) -> str:
        min_effect = self.min_effect if min_effect is None else min_effect
        return (f"Effect = {effect}. Supported when its {self.pct} CI lies above 0; contradicted when the CI's "
                f"upper bound is below {min_effect:g} (no meaningful effect, or the opposite one); otherwise "
                "inconclusive. Either decision must also survive Holm's correction over the run's tested findings "
                f"(a contradiction's test: the one-sided bootstrap p of an effect of at least {min_effect:g}). "
                "Not measurable when a needed task is beyond the model by the capability control, or the run has "
                "no cells for it.")

    def reasoning(self, model: str, a: tuple[str, str], b: tuple[str, str]) -> tuple[list[Measure], list[str]]:
        """Per reasoning slot, the paired a - b measure of its first measurable form; plus notes."""
        measures, notes = [], []
        for slot, forms in REASONING_SLOTS:
            for task in forms:
                if self.ev.task_scores(model, *a, task) is None or self.ev.task_scores(model, *b, task) is None:
                    continue
                if self.ev.beyond(model, task):
                    notes.append(f"{task} left out: beyond {model} by the capability control")
                    continue
                if (why := self.is_marked(model, [a, b], task)):
                    notes.append(f"{task} left out: {why}")
                    continue
                m = self.task_diff(model, a, b, task)
                if m is not None:
                    measures.append(m)
                    break
        return measures, notes


def _wider(item_ci, cluster_ci) -> list:
    """The cluster interval, never narrower than the item-level one: that one's pseudo-items keep a few
    agreeing facts from giving a zero-width interval (the cluster bootstrap has none)."""
    return [min(item_ci[0], cluster_ci[0]), max(item_ci[1], cluster_ci[1])]


_CLUSTER_SEED = 20  # one fact draw shared by every measure: composite effects stay coupled across tasks


def _item_diffs(a: dict | None, b: dict | None) -> dict:
    """seed -> item -> a - b, pairing seeds as pair_items does (a one-seed side pairs with every seed)."""
    a, b = a or {}, b or {}
    if not a or not b:
        return {}
    if len(b) == 1 and set(a) != set(b):
        pairs = [(s, a[s], next(iter(b.values()))) for s in a]
    elif len(a) == 1 and set(a) != set(b):
        pairs = [(s, next(iter(a.values())), b[s]) for s in b]
    else:
        pairs = [(s, a[s], b[s]) for s in a if s in b]
    return {s: {i: xa[i] - xb[i] for i in set(xa) & set(xb)} for s, xa, xb in pairs if set(xa) & set(xb)}


def _entry(fid: str, claim: str, rule: str, model, method, verdict: str, measures: list[Measure],
           notes: list[str]) -> dict:
    assert verdict in VERDICTS
    return {"id": fid, "claim": claim, "model": model, "method": method, "verdict": verdict, "rule": rule,
            "evidence": {"measurements": [m.to_dict() for m in measures], "notes": notes}}


def contradiction_test(measures: list[Measure], n_primary: int, bound: float) -> dict | None:
    """The one-sided test behind a `contradicted` verdict: p of "the effect is at least `bound`" from the
    bootstrap replicates of each primary measure whose interval lies below `bound`; the smallest p. None
    where no such measure has replicates (an ablation locus is decided by its k interval, not a p-test)."""
    tests = [{"measure": m.name, "bound": bound, "p": p_at_least(m.replicates, bound)}
             for m in measures[:n_primary] if m.replicates is not None and m.ci[1] < bound]
    return min(tests, key=lambda t: t["p"]) if tests else None


def _unmeasurable(j: Judge, model: str, task: str) -> str | None:
    return f"{task} is beyond {model} by the capability control" if j.ev.beyond(model, task) else None


# --------------------------------------------------------------------------- the findings

def as_lower_bound(verdict: str, why: str | None) -> tuple[str, list[str]]:
    """The verdict of an effect whose positive side is marked on its task (`why`), and the note to say so.

    Both marks (wrong answer form, a skill broken by training) can only lower the marked side's score:
    such answers score as wrong. With the side the claim says is higher marked, the measured effect is a
    lower bound of the knowledge effect, so a support stands, while a contradiction may be the mark's
    doing and is not decided."""
    if why is None:
        return verdict, []
    if verdict == "contradicted":
        return "inconclusive", [f"{why}: that can only lower its score, so the small effect may be the mark's "
                                "doing; not decided"]
    return verdict, [f"{why}: that can only lower its score, so the effect is a lower bound and the verdict stands"]


def f1_qa(j: Judge, model: str, method: str) -> tuple[str, list[Measure], list[str]]:
    if (why := _unmeasurable(j, model, QA) or j.is_marked(model, [BASE], QA)):
        return "not measurable", [], [why]
    m = j.task_diff(model, (method, NARR), BASE, QA)
    if m is None:
        return "not measurable", [], [f"no {QA} scores for both narrative ({method}) and the base model"]
    verdict, notes = as_lower_bound(j.effect_verdict(m), j.is_marked(model, [(method, NARR)], QA))
    return verdict, [m], notes


def f2_transfer(j: Judge, model: str, method: str) -> tuple[str, list[Measure], list[str]]:
    if (why := _unmeasurable(j, model, QA) or j.is_marked(model, [BASE], QA)):
        return "not measurable", [], [why]
    qa = j.task_diff(model, (method, NARR), BASE, QA)
    parts, notes = j.reasoning(model, (method, NARR), BASE)
    if qa is None or not parts:
        return "not measurable", [], notes + ["needs narrative and base scores on QA and a reasoning task"]
    gain_r = j.mean_of("narrative - base, mean over reasoning tasks", parts)
    effect = j.combine("QA gain - reasoning gain", [qa, gain_r], [1.0, -1.0])
    verdict, bound = as_lower_bound(j.effect_verdict(effect), j.is_marked(model, [(method, NARR)], QA))
    return verdict, [effect, qa, gain_r, *parts], bound + notes


def _reasoning_effect(j: Judge, model: str, a: tuple[str, str], b: tuple[str, str], label: str):
    parts, notes = j.reasoning(model, a, b)
    if not parts:
        return "not measurable", [], notes + [f"needs {a[1]} and {b[1]} scores on a measurable reasoning task"]
    effect = j.mean_of(f"{label}, mean over reasoning tasks", parts)
    return j.effect_verdict(effect), [effect, *parts], notes


def _not_comparable(j: Judge, model: str, a: tuple[str, str], b: tuple[str, str], measures: list, notes: list):
    """None where a and b learned within the parity margin (or no knowledge measure); else the verdict triple."""
    ok, reason, info = parity(j.ev, model, a, b, j.parity_margin, j.is_marked)
    if not info:
        notes.append(f"parity of knowledge not checked: {reason}")
        return None
    level_note = Measure(f"knowledge ({info['task']}): {a[1]} vs {b[1]}", info[a[1]] - info[b[1]], [None, None],
                         None, "parity margin", {"levels": {a[1]: info[a[1]], b[1]: info[b[1]]},
                                                 "parity_margin": info["margin"]})
    if ok:
        notes.append(reason)
        return None
    return NOT_COMPARABLE, [level_note, *measures], [reason, *notes]


def _transfer_measures(j: Judge, model: str, a: tuple[str, str], b: tuple[str, str], parts: list) -> list:
    """Conditional transfer per fact for each reasoning task measured (extra evidence, not the verdict)."""
    ok, _, info = parity(j.ev, model, a, b, 1.0, j.is_marked)
    if not info:
        return []
    out = []
    for p in parts:
        task = p.name.split(" ")[0]
        ct = conditional_transfer(j.ev, model, a, b, info["task"], task, j.level, j.n_boot, _CLUSTER_SEED)
        if ct is not None:
            out.append(Measure(ct["name"], ct["value"], ct["ci"], ct.get("p_value"), ct["test"],
                               {"per_condition": ct["per_condition"], "n_facts": ct["n_facts"]}))
    return out


def f3_referencing(j: Judge, model: str, method: str):
    verdict, measures, notes = _reasoning_effect(j, model, (method, REF), (method, NARR), "referencing - narrative")
    if verdict != "not measurable":
        measures += _transfer_measures(j, model, (method, REF), (method, NARR), measures[1:])
        if (nc := _not_comparable(j, model, (method, REF), (method, NARR), measures, notes)):
            return nc
    learned = None if _unmeasurable(j, model, QA) else j.task_diff(model, (method, REF), BASE, QA)
    if verdict != "not measurable" and learned is not None and learned.ci[0] <= 0:
        # Comparing how knowledge generalises needs knowledge: a referencing model that did not learn the
        # facts (QA not above base) cannot show whether referencing generalises better.
        notes.append(f"referencing training did not raise {QA} above base at {j.pct} ({learned.value:+.2f}, "
                     f"CI [{learned.ci[0]:.2f}, {learned.ci[1]:.2f}]): it taught too little to compare; "
                     "train it longer (corpus_overrides.Corpus_referencing=[epochs=N])")
        return "inconclusive", [*measures, learned], notes
    return verdict, measures + ([learned] if learned is not None else []), notes


def f4_forgetting(j: Judge, model: str, method: str):
    """Reset vs no reset at equal training (narrative+continued); single-pass narrative reported beside it."""
    single = _reasoning_effect(j, model, (method, FORGET), (method, NARR), "narrative+forgetting - narrative")
    matched = _reasoning_effect(j, model, (method, FORGET), (method, CONTINUED),
                                "narrative+forgetting - narrative+continued")
    if matched[0] != "not measurable":
        verdict, measures, notes = matched
        if single[0] != "not measurable":
            measures = [*measures, single[1][0]]
            notes = [*notes, f"against single-pass narrative (half the training): {single[0]} "
                             "(its interval alone, no Holm: context, not a verdict)"]
        return verdict, measures, notes
    verdict, measures, notes = single
    if verdict == "not measurable":
        return single
    notes = [*notes, f"no {CONTINUED} control in this run: forgetting trains two passes against narrative's "
                     "one, so reset and extra training are confounded"]
    if verdict == "supported":  # the gain may come from the second pass alone
        return "inconclusive", measures, notes + [f"supported only against single-pass narrative; add {CONTINUED}"]
    return verdict, measures, notes


def _ratio(probes: dict | None, ratio: str) -> dict | None:
    return None if probes is None else {s: {f: v[ratio] for f, v in facts.items()} for s, facts in probes.items()}


def f5_probes(j: Judge, model: str, method: str):
    get = j.ev.probes.get
    narr, ref, base = get((model, method, NARR)), get((model, method, REF)), get((model, *BASE))

    def diff(ratio: str, a, b, a_name: str, b_name: str) -> Measure | None:  # nats: no bounded range
        return j.compare(f"{ratio} ratio: {a_name} - {b_name} (nats)", _ratio(a, ratio), _ratio(b, ratio), None)

    comp = diff("comparison", narr, base, NARR, "base")
    contrast = diff("negation", ref, narr, REF, NARR)
    if comp is None or contrast is None:
        return "not measurable", [], ["needs probe results of the base, narrative and referencing models"]
    extra = [m for m in (diff("negation", narr, base, NARR, "base"), diff("negation", ref, base, REF, "base"))
             if m is not None]
    verdicts = {j.effect_verdict(comp, j.min_effect_nats), j.effect_verdict(contrast, j.min_effect_nats)}
    verdict = ("contradicted" if "contradicted" in verdicts else
               "supported" if verdicts == {"supported"} else "inconclusive")
    notes: list[str] = []
    if (nc := _not_comparable(j, model, (method, REF), (method, NARR), [comp, contrast, *extra], notes)):
        return nc
    return verdict, [comp, contrast, *extra], notes


def f6_ablation(j: Judge, model: str, method: str):
    if (why := _unmeasurable(j, model, QA)):
        return "not measurable", [], [why]
    claimed = {NARR: "middle", REF: "lower"}
    measures, notes, classes = [], [], {}
    for condition, want in claimed.items():
        sweeps = j.ev.ablations.get((model, method, condition, QA))
        if not sweeps:
            return "not measurable", [], [f"no {QA} ablation of the {condition} model ({method})"]
        locus = ablation_locus(sweeps, j.level, j.n_boot, zlib.crc32(f"{model}{method}{condition}".encode()))
        gain = j.compare(f"{condition} {QA}: finetuned - base (ablation items)",
                         {s: w.finetuned for s, w in sweeps.items()}, {s: w.base for s, w in sweeps.items()})
        if gain is None:
            return "not measurable", [], [f"the {condition} ablation has no items in both the finetuned and base model"]
        measures += [Measure(f"{condition} {QA}: first bottom-up k below the midpoint (of {locus['num_layers']} layers)",
                             locus["k"], locus["ci"], None, "bootstrap over items",
                             {"class": locus["class"], "decided": locus["decided"]}), gain]
        td = top_down_locus(sweeps)
        if td is not None:
            measures.append(Measure(f"{condition} {QA}: top-down crossing as bottom-up k* (of {td['num_layers']} layers)",
                                    None if td["k_range"] is None else float(np.mean(td["k_range"])),
                                    td["k_range"] or [None, None], None, "interval between neighbouring grid points",
                                    {"class": td["class"], "decided": td["decided"]}))
        if gain.ci[0] <= 0:
            notes.append(f"{condition}: finetuning did not raise {QA} above base at {j.pct}; nothing to locate")
        elif locus["decided"] and td is not None and td["decided"] and td["class"] != locus["class"]:
            notes.append(f"{condition}: the bottom-up sweep says {locus['class']}, the top-down sweep "
                         f"{td['class']}: the sweeps disagree")
        elif locus["decided"]:
            classes[condition] = locus["class"]
        else:
            notes.append(f"{condition}: the interval of k spans more than one third of the layers")
    if any(classes[c] != claimed[c] for c in classes):
        verdict = "contradicted"
    else:
        verdict = "supported" if len(classes) == len(claimed) else "inconclusive"
    return verdict, measures, notes


FINDINGS = (
    ("F1", "Narrative training teaches QA.", f1_qa,
     lambda j: j.effect_rule(f"narrative - base on {QA} (exact match, paired over items)")),
    ("F2", "Narrative knowledge transfers to reasoning (indirect, 2-hop, multiple choice) much less than to QA.",
     f2_transfer,
     lambda j: j.effect_rule("(narrative - base on QA) - (narrative - base, mean over the reasoning tasks)")),
    ("F3", "Referencing generalises to reasoning better than narrative.", f3_referencing,
     lambda j: j.effect_rule("referencing - narrative, mean over the reasoning tasks (paired over items)")
     + f" Inconclusive whatever the effect when referencing training did not raise {QA} above base at {j.pct} "
       "(nothing learned to generalise)."),
    ("F4", "Active forgetting improves narrative's reasoning scores.", f4_forgetting,
     lambda j: j.effect_rule("narrative+forgetting - narrative, mean over the reasoning tasks (paired over items)")),
    ("F5", "Probes: narrative shows the co-occurrence signature (comparison ratio up, negation ratio near zero "
           "relative to base) while referencing does not.", f5_probes,
     lambda j: ("Two effects, paired over facts (bootstrap): C = comparison ratio narrative - base; "
                "D = negation ratio referencing - narrative. Supported when the "
                f"{j.pct} CIs of C and D both lie above 0; contradicted when either CI's upper bound is below "
                f"{j.min_effect_nats:g} nats; otherwise inconclusive. Not measurable without probes of the base, "
                "narrative and referencing models.")),
    ("F6", "Ablation: narrative QA lives in the middle layers, referencing knowledge in the lower layers.",
     f6_ablation,
     lambda j: ("For each of the narrative and referencing models: k* = the smallest bottom-up k whose reset "
                f"drops {QA} below the midpoint between the finetuned and base scores, classed by k*/layers as "
                "lower (<= 1/3), middle (<= 2/3) or upper third; its "
                f"{j.pct} interval comes from a bootstrap over items. A class is decided when both ends of the "
                "interval fall in the same third and the finetuned model beats base at that level. Supported "
                "when narrative is decided middle and referencing lower; contradicted when a decided class "
                "differs from the claim; otherwise inconclusive. Not measurable when QA is beyond the model "
                "or an ablation is missing.")),
)


def _seeds_disagree(verdict: str, measures: list[Measure], n_primary: int) -> str | None:
    """Why a supported/contradicted verdict cannot stand: its primary effect changes sign between seeds."""
    if verdict not in ("supported", "contradicted"):
        return None
    for m in measures[:n_primary]:
        if m.per_seed and len(m.per_seed) > 1:
            dirs = {s: int(np.sign(v)) for s, v in m.per_seed.items()}
            if directions_disagree(dirs):
                shown = ", ".join(f"seed {s}: {v:+.3f}" for s, v in m.per_seed.items())
                return f"{m.name} changes direction between seeds ({shown}): not {verdict}"
    return None


def _seeds_of(evidence: Evidence, model: str, method: str) -> list:
    keys = [k for k in evidence.scores if k[0] == model and k[1] == method]
    seeds = {s for k in keys for s in evidence.scores[k].by_seed}
    seeds |= {s for k, v in evidence.probes.items() if k[:2] == (model, method) for s in v}
    return sorted(s for s in seeds if s is not None)


def conclude(evidence: Evidence, level: float = CI_LEVEL, min_effect: float = MIN_EFFECT,
             min_effect_nats: float = MIN_EFFECT_NATS, n_boot: int = N_BOOT,
             parity_margin: float = PARITY_MARGIN, scope: dict | None = None, marked=None) -> list[dict]:
    """One entry per finding and (model, method): {"id", "claim", "model", "method", "verdict", "rule",
    "evidence", "scope", "p_raw", "p_holm"}.

    `scope` ({"world_size", "budgets": {corpus: text}}) goes into every verdict's scope line with the
    seeds found in the evidence; `marked` is the hook naming tasks answered in the wrong form.
    """
    j = Judge(evidence, check_level(level), min_effect, min_effect_nats, n_boot,
              check_parity_margin(parity_margin), marked)
    scopes = [(model, method) for model in evidence.models() for method in evidence.methods(model)]
    out = []
    for fid, claim, judge, rule in FINDINGS:
        if not scopes:
            out.append(_entry(fid, claim, rule(j), None, None, "not measurable", [], ["the run has no trained model"]))
        n_primary = 2 if fid == "F5" else 1  # F5 is judged on two measures (in nats), the others on one
        bound = j.min_effect_nats if fid == "F5" else j.min_effect
        for model, method in scopes:
            verdict, measures, notes = judge(j, model, method)
            if (why := _seeds_disagree(verdict, measures, n_primary)):
                verdict, notes = "inconclusive", [*notes, why]
            entry = _entry(fid, claim, rule(j), model, method, verdict, measures, notes)
            if verdict == "contradicted":
                entry["contradiction_test"] = contradiction_test(measures, n_primary, bound)
            entry["seeds"] = _seeds_of(evidence, model, method)
            entry["scope"] = scope_text(model, method, entry["seeds"], (scope or {}).get("world_size"),
                                        (scope or {}).get("budgets"))
            out.append(entry)
    for e in out:
        e.setdefault("scope", "no trained model")
    apply_holm(out, j.level)
    return out

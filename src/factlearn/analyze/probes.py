"""Probes that tell factual association from word co-occurrence: comparison and negation ratios.

A model that only learned that the words of a fact appear together prefers the true tail after any
prompt mentioning the head, so it scores high on the comparison ratio but ~0 on the negation ratio
(it prefers the true tail just as much after "is not"). A model that learned the fact scores high on
both (paper, Figure 2).

Formulas (all log-probabilities are natural-log sums over the continuation's tokens, scored by
factlearn.evaluate.scoring.score_shared with the continuation " {tail}", each prompt's forward pass
shared by all its tails):

    A_j(h) = affirmative prompt of template j,  N_j(h) = the same prompt with "is" -> "is not"
    comparison(fact) = mean_j mean_{t' in W} [ log p(" t" | A_j(h)) - log p(" t'" | A_j(h)) ]
    negation(fact)   = mean_j             [ log p(" t" | A_j(h)) - log p(" t"  | N_j(h)) ]

where (h, r, t) is the fact, W = every other distinct tail of relation r in the same world (the wrong
tails; with `max_wrong=N`, a fixed random sample of N of them per fact, seeded, to save compute: the
cost is one forward pass per distinct prompt, 2 x facts x templates, plus the tails' tokens after
the first), and j runs over the templates of r. Reported per fact, and as mean and sample standard
deviation over facts, per relation and over all facts.

Prompt templates ({head} is the fact's head; {is} is "is" in the affirmative prompt and "is not" in
the negated one). They are deliberately NOT the training templates of factlearn.data (no narrative or
referencing sentence shape), so a high score is not recall of a memorised sentence:

  capital (head = country, tail = its capital city)
    "Ask anyone in {head} to name their capital city, and they will tell you it {is}"
    "On a map of {head}, the city marked as the national capital {is}"
    "The president of {head} lives and works in the capital, which {is}"
    "Of all the cities in {head}, the capital {is}"
  animal (head = city, tail = the animal the city is famous for)
    "Ask anyone in {head} which animal their city is known for, and they will tell you it {is} the"
    "On the city flag of {head}, the animal shown {is} the"
    "The animal most closely linked with the city of {head} {is} the"

Other relations (your own Facts data) need templates passed in: {relation: [template, ...]}. A facts
file brings them: each relation's `probes:`, else prompts built from its statements that end in
"... is {tail}." (factlearn.data.custom.probe_templates; docs/facts-file.md, "Probes"). Those are
training sentence shapes, so a facts file should give its own `probes:` for the clean test.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from factlearn.atomic import atomic_write_json
from factlearn.errors import UserError
from factlearn.data import RELATION_ANIMAL, RELATION_CAPITAL
from factlearn.evaluate.scoring import score_shared
from factlearn.analyze.plotting import pyplot, save_figure

CAPITAL_TEMPLATES = (
    "Ask anyone in {head} to name their capital city, and they will tell you it {is}",
    "On a map of {head}, the city marked as the national capital {is}",
    "The president of {head} lives and works in the capital, which {is}",
    "Of all the cities in {head}, the capital {is}",
)
ANIMAL_TEMPLATES = (
    "Ask anyone in {head} which animal their city is known for, and they will tell you it {is} the",
    "On the city flag of {head}, the animal shown {is} the",
    "The animal most closely linked with the city of {head} {is} the",
)
AFFIRMATIVE, NEGATED = "is", "is not"
RATIOS = ("comparison", "negation")


def default_templates() -> dict[str, tuple[str, ...]]:
    """Templates keyed by the two CCA relation strings (from factlearn.data)."""
    return {RELATION_CAPITAL: CAPITAL_TEMPLATES, RELATION_ANIMAL: ANIMAL_TEMPLATES}


def fill(template: str, head: str, negated: bool) -> str:
    """The prompt of one template for one head, affirmative or negated."""
    return template.format(head=head, **{"is": NEGATED if negated else AFFIRMATIVE})


def check_templates(templates: dict[str, Sequence[str]]) -> None:
    """Every template must name {head} and {is}, and end where the tail should follow."""
    for relation, temps in templates.items():
        if not temps:
            raise UserError(f"relation '{relation}' has no probe templates; give at least one")
        for t in temps:
            if "{head}" not in t or "{is}" not in t:
                raise UserError(f"probe template {t!r} must contain {{head}} and {{is}} (the word negated as "
                                "'is not'); e.g. 'The capital of {head} {is}'")
            if t != t.rstrip():
                raise UserError(f"probe template {t!r} ends with a space; the tail is scored as ' tail'")


@dataclass
class ProbeResult:
    """Per-fact comparison and negation ratios with their summaries; JSON-serialisable."""

    label: str
    model: str
    corpus: str
    templates: dict[str, list[str]]
    facts: list[dict] = field(default_factory=list)
    # group ("all" or a relation) -> ratio name -> {"mean", "std", "n"}
    summary: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    max_wrong: int | None = None  # None: every other tail of the relation was a wrong tail

    def to_dict(self) -> dict:
        return asdict(self)

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeResult":
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> "ProbeResult":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as e:
            raise UserError(f"cannot read probe result {path} ({type(e).__name__}); pass a probes.json written "
                            "by `factlearn probe`") from None

    def mean(self, ratio: str, group: str = "all") -> float:
        return self.summary[group][ratio]["mean"]


def _facts_rows(facts: Any) -> list[dict]:
    rows = [dict(head=r["head"], relation=r["relation"], tail=r["tail"]) for r in facts]
    if not rows:
        raise UserError("no facts to probe; pass a Facts dataset with head, relation and tail columns")
    return rows


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}


def wrong_tails(tails: Sequence[str], true_tail: str, max_wrong: int | None, seed: int = 0) -> list[str]:
    """The wrong tails a fact is compared with: all other tails, or a seeded sample of `max_wrong`."""
    wrong = [t for t in tails if t != true_tail]
    if max_wrong is None or max_wrong >= len(wrong):
        return wrong
    rng = random.Random(f"{seed}:{true_tail}")  # the same sample for every model probed
    return sorted(rng.sample(wrong, max_wrong), key=wrong.index)


def probe_facts(model, tokenizer, facts: Iterable[dict], templates: dict[str, Sequence[str]] | None = None,
                batch_size: int = 32, label: str = "model", model_name: str = "model",
                corpus: str = "corpus", max_wrong: int | None = None) -> ProbeResult:
    """Compute both ratios for every fact (see the module docstring for the exact formulas)."""
    if max_wrong is not None and max_wrong < 1:
        raise UserError(f"max_wrong must be >= 1 (or None for all wrong tails), got {max_wrong}")

    rows = _facts_rows(facts)
    templates = dict(templates) if templates is not None else default_templates()
    check_templates(templates)
    missing = sorted({r["relation"] for r in rows} - set(templates))
    if missing:
        raise UserError(f"no probe templates for relation(s) {missing}; pass templates={{relation: [...]}} "
                        f"(known: {sorted(templates)})")
    tails: dict[str, list[str]] = {}
    for r in rows:
        tails.setdefault(r["relation"], [])
        if r["tail"] not in tails[r["relation"]]:
            tails[r["relation"]].append(r["tail"])
    for relation, ts in tails.items():
        if len(ts) < 2:
            raise UserError(f"relation '{relation}' has only one distinct tail; the comparison ratio needs "
                            "wrong tails from other facts of the same relation (use a world with >= 2 countries)")

    # One request per distinct prompt: its tails share the prompt's forward pass (score_shared).
    prompts: dict[str, list[str]] = {}  # prompt -> tails scored after it
    plan: list[tuple[int, int, str, str, str]] = []  # (fact index, template index, kind, tail, prompt)
    for i, r in enumerate(rows):
        for j, t in enumerate(templates[r["relation"]]):
            affirmative, negated = fill(t, r["head"], negated=False), fill(t, r["head"], negated=True)
            for tail in [r["tail"], *wrong_tails(tails[r["relation"]], r["tail"], max_wrong)]:
                plan.append((i, j, "affirmative", tail, affirmative))
            plan.append((i, j, "negated", r["tail"], negated))
    for *_, tail, prompt in plan:
        if tail not in prompts.setdefault(prompt, []):
            prompts[prompt].append(tail)
    scores = score_shared(model, tokenizer, list(prompts), [[f" {t}" for t in ts] for ts in prompts.values()],
                          batch_size=batch_size)
    by_prompt = {prompt: dict(zip(ts, row)) for (prompt, ts), row in zip(prompts.items(), scores)}
    logp: dict[tuple[int, int, str, str], float] = {(i, j, kind, tail): float(by_prompt[prompt][tail])
                                                    for i, j, kind, tail, prompt in plan}
    per_fact = []
    for i, r in enumerate(rows):
        comp_by_t, neg_by_t = [], []
        for j in range(len(templates[r["relation"]])):
            true = logp[(i, j, "affirmative", r["tail"])]
            wrong = [logp[(i, j, "affirmative", w)] for w in wrong_tails(tails[r["relation"]], r["tail"], max_wrong)]
            comp_by_t.append(statistics.fmean(true - w for w in wrong))
            neg_by_t.append(true - logp[(i, j, "negated", r["tail"])])
        per_fact.append({**r, "comparison": statistics.fmean(comp_by_t), "negation": statistics.fmean(neg_by_t),
                         "comparison_by_template": comp_by_t, "negation_by_template": neg_by_t})
    summary = {}
    for group in ["all", *tails]:
        chosen = [f for f in per_fact if group == "all" or f["relation"] == group]
        summary[group] = {ratio: _mean_std([f[ratio] for f in chosen]) for ratio in RATIOS}
    for f in per_fact:
        if not all(math.isfinite(f[k]) for k in RATIOS):
            raise RuntimeError(f"non-finite probe ratio for fact {f['head']!r}: the model produced NaN/inf scores")
    return ProbeResult(label=label, model=model_name, corpus=corpus,
                       templates={k: list(v) for k, v in templates.items()}, facts=per_fact, summary=summary,
                       max_wrong=max_wrong)


def plot_probes(results: Sequence[ProbeResult], out_png: str | Path, group: str = "all",
                title: str | None = None) -> Path:
    """Grouped bars (paper Figure 2 form): one group per result, bars = the two ratios, error bars = std."""
    if not results:
        raise UserError("no probe results to plot")
    for r in results:
        if group not in r.summary:
            raise UserError(f"probe result '{r.label}' has no group '{group}'; groups: {sorted(r.summary)}")
    plt = pyplot()
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(results) + 2), 4.2))
    xs = list(range(len(results)))
    for b, (ratio, color) in enumerate(zip(RATIOS, ("tab:blue", "tab:orange"))):
        means = [r.summary[group][ratio]["mean"] for r in results]
        stds = [r.summary[group][ratio]["std"] for r in results]
        ax.bar([x + (b - 0.5) * width for x in xs], means, width, yerr=stds, capsize=3, color=color,
               label=f"{ratio} ratio")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([r.label for r in results], rotation=15 if len(results) > 4 else 0)
    ax.set_xlabel("model / training corpus")
    ax.set_ylabel("log-likelihood ratio (nats)\nmean ± std over facts")
    ax.legend(fontsize=8)
    if title is None:
        models = ", ".join(dict.fromkeys(r.model for r in results))
        corpora = ", ".join(dict.fromkeys(r.corpus for r in results))
        scope = "all facts" if group == "all" else f"relation '{group}'"
        title = f"Comparison vs negation ratio ({scope}): {models} on {corpora}"
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, out_png)

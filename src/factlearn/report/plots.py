"""The report's figures. Probe, ablation and curve plots are drawn by factlearn.analyze; this module
only picks what to draw from a run's results and adds the score overview (paper Tables 1/3 as bars).
"""

from __future__ import annotations

from pathlib import Path

from factlearn.report.tables import column_title, metric_of


def _slug(*parts) -> str:
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)


def _ci_errors(row: dict, tasks: list[str], means: list[float]) -> list[list[float]] | None:
    """Asymmetric error bars [below, above] from each value's "ci" (none where a value has no interval)."""
    below, above = [], []
    for t, mean in zip(tasks, means):
        ci = row["values"][t].get("ci")
        below.append(max(0.0, mean - ci[0]) if ci else 0.0)
        above.append(max(0.0, ci[1] - mean) if ci else 0.0)
    return [below, above] if any(below) or any(above) else None


def plot_scores(results: dict, plots_dir: Path) -> list[dict]:
    """One grouped bar chart per model: x = tasks, one bar per (method, condition), error bar = the CI."""
    from factlearn.analyze.plotting import pyplot, save_figure

    plt = pyplot()
    tasks = results["table"]["tasks"]
    shots = f"{results['run_config']['num_fewshot']}-shot"
    figures = []
    for model in dict.fromkeys(r["model"] for r in results["table"]["rows"]):
        rows = [r for r in results["table"]["rows"] if r["model"] == model]
        fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(tasks) + 2), 4.4))
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            xs = [t + (i - (len(rows) - 1) / 2) * width for t in range(len(tasks))]
            means = [row["values"][t]["mean"] or 0.0 for t in tasks]
            label = row["condition"] if row["method"] == "base" else f"{row['condition']} ({row['method']})"
            ax.bar(xs, means, width, yerr=_ci_errors(row, tasks, means), capsize=2, label=label)
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels([f"{column_title(t)}\n{metric_of(t)}" for t in tasks], fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel(f"{shots} score\n(error bars: {results['ci_level'] * 100:g} % CI)")
        ax.set_title(f"{model}: {shots} scores by training corpus")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        path = save_figure(fig, plots_dir / f"scores_{_slug(model)}.png")
        figures.append({"file": str(path.relative_to(plots_dir.parent)), "kind": "scores",
                        "title": f"{shots} scores: {model}"})
    return figures


def plot_probe_summary(results: dict, plots_dir: Path) -> list[dict]:
    """Comparison vs negation ratios per model: one group per (method, condition), facts pooled over seeds."""
    from factlearn.analyze.probes import ProbeResult, RATIOS, _mean_std, plot_probes

    figures = []
    for model in dict.fromkeys(p["model"] for p in results["probes"]):
        groups: dict[tuple, list[ProbeResult]] = {}
        for p in results["probes"]:
            if p["model"] == model:
                groups.setdefault((p["method"], p["condition"]), []).append(ProbeResult.from_dict(p["result"]))
        pooled = []
        for (method, condition), found in groups.items():
            facts = [f for r in found for f in r.facts]
            label = condition if method == "base" else f"{condition}\n({method})"
            summary = {"all": {ratio: _mean_std([f[ratio] for f in facts]) for ratio in RATIOS}}
            pooled.append(ProbeResult(label=label, model=model, corpus=found[0].corpus, templates=found[0].templates,
                                      facts=facts, summary=summary))
        path = plot_probes(pooled, plots_dir / f"probes_{_slug(model)}.png",
                           title=f"{model}: comparison vs negation ratio (all facts{', pooled over seeds' if len(results['run_config']['seeds']) > 1 else ''})")
        figures.append({"file": str(path.relative_to(plots_dir.parent)), "kind": "probes",
                        "title": f"Probes: {model}"})
    return figures


def plot_ablations(results: dict, run_dir: Path, plots_dir: Path) -> list[dict]:
    """Accuracy vs number of layers reset to base, one figure per ablated model."""
    from factlearn.analyze.ablation import AblationResult
    from factlearn.analyze.ablation_plot import plot_ablation

    figures = []
    for a in results["ablations"]:
        name = _slug("ablation", a["model"], a["method"], a["condition"], f"seed{a['seed']}")
        title = f"Layer-wise ablation: {a['model']} {a['method']}, trained on {a['condition']} (seed {a['seed']})"
        path = plot_ablation(AblationResult.from_dict(a["result"]), plots_dir / f"{name}.png", title=title)
        figures.append({"file": str(path.relative_to(run_dir)), "kind": "ablation", "title": title})
    return figures


def plot_curves(results: dict, run_dir: Path, plots_dir: Path) -> list[dict]:
    """Training loss (and eval-in-the-loop metrics) per training cell, resets marked."""
    from factlearn.analyze.curves import plot_training_curves

    figures = []
    for t in results["training"]:
        log = run_dir / t["log"]
        if not log.is_file():
            continue
        name = _slug("curve", t["model"], t["method"], t["condition"], f"seed{t['seed']}")
        title = f"Training curve: {t['model']} {t['method']}, {t['condition']} (seed {t['seed']})"
        path = plot_training_curves(log, plots_dir / f"{name}.png", title=title)
        figures.append({"file": str(path.relative_to(run_dir)), "kind": "curve", "title": title})
    return figures


def _condition_label(c: dict) -> str:
    return c["condition"] if c["method"] == "full" else f"{c['condition']} ({c['method']})"


def plot_dose_curves(results: dict, plots_dir: Path) -> list[dict]:
    """Per model: score vs training sentences per fact, one panel per curve task, conditions overlaid,
    each point's interval as a band."""
    from factlearn.analyze.plotting import pyplot, save_figure

    plt = pyplot()
    figures = []
    pct = f"{results['ci_level'] * 100:g} %"
    for model in dict.fromkeys(c["model"] for c in results["curves"]):
        curves = [c for c in results["curves"] if c["model"] == model]
        tasks = list(dict.fromkeys(t for c in curves for b in c["budgets"] for t in b["tasks"]))
        cols = min(4, len(tasks))
        rows = -(-len(tasks) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            for c in curves:
                pts = [(b["sentences_per_fact"], b["tasks"][task]) for b in c["budgets"] if task in b["tasks"]]
                if not pts:
                    continue
                xs = [x for x, _ in pts]
                line, = ax.plot(xs, [v["value"] for _, v in pts], marker="o", label=_condition_label(c))
                ax.fill_between(xs, [v["ci"][0] for _, v in pts], [v["ci"][1] for _, v in pts],
                                color=line.get_color(), alpha=0.15)
            ax.set_title(f"{column_title(task)} ({metric_of(task)})", fontsize=9)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("training sentences per fact", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(tasks):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.suptitle(f"{model}: learning curves (bands: {pct} CI)")
        path = save_figure(fig, plots_dir / f"curves_budget_{_slug(model)}.png")
        figures.append({"file": str(path.relative_to(plots_dir.parent)), "kind": "dose",
                        "title": f"Score vs training budget: {model}"})
    return figures


def reasoning_of(tasks: dict) -> float | None:
    """The reasoning score of one curve point: the mean over the reasoning slots of the first form measured
    (the conclusions' slots and order, report/conclusions.REASONING_SLOTS)."""
    from factlearn.report.conclusions import REASONING_SLOTS

    values = [next(tasks[t]["value"] for t in forms if t in tasks) for _, forms in REASONING_SLOTS
              if any(t in tasks for t in forms)]
    return sum(values) / len(values) if values else None


def knowledge_axis(curves: list[dict], marks: list[dict]) -> str | None:
    """The knowledge task of one model's curves, as F3k reads it: QA, unless a curve's condition answers
    QA in the wrong form (report/forms.py), then MC cloze; None when the curves have neither."""
    from factlearn.data.schema import KNOWLEDGE_CONFIGS

    present = {t for c in curves for b in c["budgets"] for t in b["tasks"]}
    wrong_form = {m["task"] for m in marks if m["mark"] == "wrong form" and any(
        (c["model"], c["method"], c["condition"]) == (m["model"], m["method"], m["condition"]) for c in curves)}
    return next((t for t in KNOWLEDGE_CONFIGS if t in present and t not in wrong_form), None)


def plot_reasoning_vs_knowledge(results: dict, plots_dir: Path) -> list[dict]:
    """The paper's question in one picture: x = knowledge (QA, or MC cloze) at a budget, y = reasoning at the
    same budget, one line per condition, points labelled with their epochs."""
    from factlearn.analyze.plotting import pyplot, save_figure

    plt = pyplot()
    figures = []
    for model in dict.fromkeys(c["model"] for c in results["curves"]):
        curves = [c for c in results["curves"] if c["model"] == model]
        know = knowledge_axis(curves, results.get("marks") or [])
        if know is None:
            continue
        fig, ax = plt.subplots(figsize=(5.6, 4.6))
        for c in curves:
            pts = [(b["tasks"][know]["value"], reasoning_of(b["tasks"]), b["epochs"]) for b in c["budgets"]
                   if know in b["tasks"] and reasoning_of(b["tasks"]) is not None]
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_condition_label(c))
            for x, y, epochs in pts:
                ax.annotate(str(epochs), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"knowledge: {column_title(know)} ({metric_of(know)})")
        ax.set_ylabel("reasoning: mean over indirect, 2-hop, multiple choice")
        ax.set_title(f"{model}: reasoning vs knowledge (labels: epochs)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = save_figure(fig, plots_dir / f"reasoning_vs_knowledge_{_slug(model)}.png")
        figures.append({"file": str(path.relative_to(plots_dir.parent)), "kind": "dose",
                        "title": f"Reasoning vs knowledge: {model}"})
    return figures

"""The ablation figure: the tracked metric vs k for both sweeps, one panel per task."""

from __future__ import annotations

from pathlib import Path

from factlearn.analyze.ablation import AblationResult, headline_metric
from factlearn.analyze.plotting import pyplot, save_figure


def plot_ablation(result: AblationResult, out_png: str | Path, title: str | None = None) -> Path:
    """The headline metric vs k for both sweeps, one panel per task, with finetuned/base/embeddings/head references."""
    plt = pyplot()
    n = len(result.tasks)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    for ax, task in zip(axes[0], result.tasks):
        metric = headline_metric(task)
        for sweep, style, label in (("bottom_up", "-o", "remove Δ from first k layers (bottom-up)"),
                                    ("top_down", "-s", "remove Δ from last k layers (top-down)")):
            xs, ys = result.series(sweep, task, metric)
            ax.plot(xs, ys, style, ms=4, label=label)
        refs = (("all", "base model (all Δ removed)", "k"), ("embeddings", "Δ removed from embeddings only", "tab:purple"),
                ("head", "Δ removed from final norm + head only", "tab:brown"))
        for name, label, color in refs:
            if name in result.entries:
                ax.axhline(result.entries[name]["metrics"][task][metric], ls=":", color=color, lw=1.2, label=label)
        ax.set_xlabel(f"k (number of layers reset to base, of {result.num_layers})")
        ax.set_ylabel(f"{task} {metric}")
        ax.set_xticks(result.k_grid)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    limit = f", {result.limit} items/task" if result.limit else ""
    fig.suptitle(title or f"Layer-wise ablation of Δ: {result.model} on {result.corpus} "
                 f"({result.kind} finetune{limit})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out_png)

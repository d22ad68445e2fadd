"""Shared matplotlib set-up: a headless backend and atomic PNG saving.

Every analysis plot goes through `save_figure`, so a killed run never leaves a truncated PNG.
"""

from __future__ import annotations

from pathlib import Path

from factlearn.atomic import atomic_path


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display on servers/CI)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save `fig` as PNG atomically and close it (figures are not reused)."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path

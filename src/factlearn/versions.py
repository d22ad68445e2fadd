"""Versions of the software stack, recorded next to every result (results depend on them)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

STACK = ("factlearn", "torch", "transformers", "peft", "datasets", "accelerate")


def stack_versions() -> dict[str, str | None]:
    """Python, platform and the installed version of each stack package (None when not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in STACK:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out

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


# What changes a cell's numbers beyond its config: float sums reorder with the thread count, kernels
# differ by device and dtype, the CPU's vector unit picks the kernel (AVX2 and AVX-512 round differently),
# and library releases change kernels and defaults (docs/reproducibility.md).
NUMERICS_FIELDS = ("torch_threads", "device", "cpu", "dtype", "torch", "transformers")


def cpu_identity() -> str:
    """The kernel family torch dispatches to on this CPU, and the CPU's model name: `AVX512 (Intel(R) ...)`."""
    import torch

    name = ""
    try:
        with open("/proc/cpuinfo") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:  # not Linux: the vector unit alone still tells kernels apart
        pass
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability} ({name})" if name else capability


def numerics(dtype: str | None = None) -> dict:
    """The numerics of the current process for a cell's provenance (recorded, not part of its key)."""
    import os

    import torch

    device = "cpu"
    if torch.cuda.is_available():  # does not create a CUDA context
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        device = f"cuda:{torch.cuda.get_device_name(0)}" + (f" (visible {visible})" if visible else "")
    versions = stack_versions()
    return {"torch_threads": torch.get_num_threads(), "device": device, "cpu": cpu_identity(), "dtype": dtype,
            "torch": versions.get("torch"), "transformers": versions.get("transformers"),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}

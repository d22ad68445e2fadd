"""CPU memory tuning for training: page faults, not arithmetic, dominated a CPU step before these.

Both are measured in benchmarks/README.md ("What made training faster on CPU").
"""

from __future__ import annotations


def keep_freed_memory_on_cpu() -> bool:
    """Make glibc malloc keep large freed blocks for reuse instead of returning them to the OS.

    Why: by default every block over 32 MB (the tied embedding's gradient, the logits) is a fresh
    mmap each step and is unmapped when freed, so each step pays page faults to re-zero hundreds of
    MB. PyTorch's CPU tuning guide suggests jemalloc/tcmalloc via LD_PRELOAD for the same reason;
    this is the in-process equivalent (no library does it). Process-wide; a no-op off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold, limit = -1, -3, 1 << 30
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


def own_cpu_weights(model) -> None:
    """Copy CPU weights that may be views of the memory-mapped checkpoint into private memory.

    Why: the first optimizer step writes every weight, and writing a page of a private file mapping
    is a copy-on-write fault; copying up front is much cheaper than taking those faults one page at
    a time inside the first step. Tied weights stay tied (same Parameter object).
    """
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad and param.device.type == "cpu":
                param.data = param.data.clone()

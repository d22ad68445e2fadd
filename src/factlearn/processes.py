"""Child processes that must not outlive the run that started them.

A grid's worker processes and the ranks of a sharded training cell write into cell folders that only
their run owns; if `factlearn run` is SIGKILLed, they must die too, or they would keep training into
a folder the next run is about to replace. Linux can do this for us (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os

# Set in the environment of a sharded cell's ranks to the PID of their launcher (torchrun's agent):
# each rank dies with it.
DIE_WITH_PARENT_ENV = "FACTLEARN_DIE_WITH_PARENT"


def cpu_cores() -> int:
    """The cores this process may run on (its affinity), which child processes share."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a no-op elsewhere)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a worker still ends when its task queue closes


def die_with_parent_if_asked() -> None:
    """die_with_parent(), when the launcher asked for it in the environment (its PID in DIE_WITH_PARENT_ENV).

    The launcher may have died while this process was still starting, before it could ask; then its
    parent is no longer the launcher and it exits at once."""
    launcher = os.environ.get(DIE_WITH_PARENT_ENV)
    if not launcher:
        return
    die_with_parent()
    if str(os.getppid()) != launcher:
        os._exit(137)  # as if the signal had reached it

"""The exception types the CLI prints as one line, without a traceback (shown only under --debug).

UserError means "the user gave bad input": exit code 2, and every check on user input raises it with a
message that says what is wrong *and* how to fix it. MachineFailure means the machine, not the input,
stopped the work (a worker process killed by the kernel's out-of-memory killer): exit code 1.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a one-line message naming the problem and the fix."""

    def __init__(self, message: str):
        # Keep it one line: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))


class MachineFailure(Exception):
    """The machine stopped the work (a process was killed): a one-line message naming what died and the likely cause."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

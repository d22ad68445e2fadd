"""The one exception type that means "the user gave bad input".

The CLI turns a UserError into a single line on stderr and exit code 2, with no traceback, so every
check on user input raises this with a message that says what is wrong *and* how to fix it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a one-line message naming the problem and the fix."""

    def __init__(self, message: str):
        # Keep it one line: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))

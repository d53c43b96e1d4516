"""Errors meant for the person at the keyboard: one clear sentence and an exit status."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (bad file, missing key, missing device).

    The CLI prints ``str(error)`` as one line, without a traceback, and exits ``status``.
    """

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status

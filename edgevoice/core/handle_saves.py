"""When a new resumption handle is worth a write to the state directory.

The service sends a fresh handle every few seconds while nothing happens, and each names
the same conversation as the one before it. Saving every one costs a flash write and two
fsyncs each time: about 29,000 a day on a device idle at a handle every 3 s, for nothing a
restart could use. So:

- a handle that follows anything said, answered or done is saved at once: a restart must
  never resume from before it;
- a handle that only renews an unchanged conversation is saved at most once a
  :data:`IDLE_SAVE_EVERY_S`; in between it is kept in memory (a reconnect uses it);
- the newest handle is saved when its connection ends or the daemon stops.

So the handle on disk is never older than the last exchange, and at most a minute (plus
one update) older than the newest one. The service keeps earlier handles of a session
resumable; a stored one names the same conversation as the newest.
"""

from __future__ import annotations

IDLE_SAVE_EVERY_S = 60.0


class HandleSaves:
    """Decides which resumable handles go to disk (see the module docstring)."""

    def __init__(self, idle_save_every_s: float = IDLE_SAVE_EVERY_S) -> None:
        self._every_s = idle_save_every_s
        self._saved_t = float("-inf")
        # The conversation moved on since the saved handle (a new one names more).
        self._moved = True
        # A handle newer than the saved one is held in memory only.
        self._unsaved = False

    def conversation_moved(self) -> None:
        """Something was said, answered or done: the next handle names more than the saved one."""
        self._moved = True

    def offered(self, t: float) -> bool:
        """A new resumable handle arrived at ``t``: True to save it now."""
        if self._moved or t - self._saved_t >= self._every_s:
            self._moved = False
            self._unsaved = False
            self._saved_t = t
            return True
        self._unsaved = True
        return False

    def take_unsaved(self) -> bool:
        """True once if a handle newer than the saved one is waiting (the caller saves it)."""
        unsaved, self._unsaved = self._unsaved, False
        return unsaved

    def forgotten(self) -> None:
        """The stored handle was dropped: the next one is saved at once."""
        self._unsaved = False
        self._moved = True

"""A clock tests can move: monotonic time plus an offset.

The emulator paces replies with its clock, so a clock must keep advancing with real time;
:meth:`OffsetClock.advance` jumps it forward (e.g. past a resumption handle's lifetime).
"""

from __future__ import annotations

import threading
import time


class OffsetClock:
    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._offset += seconds

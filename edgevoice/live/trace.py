"""A JSON-lines trace of a run: every websocket frame (from the SDK door's tap) and
whatever else the caller records, each line whole whichever thread writes it.

Frames are observed on the event loop's thread while other records (button edges) come
from device threads: without the lock, two writes interleave now and then and corrupt a
line.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class TraceFile:
    def __init__(self, handle: IO[str], clock: Callable[[], float] = time.monotonic) -> None:
        self._handle = handle
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> TraceFile:
        """OSError if ``path`` cannot be written."""
        return cls(path.open("w", encoding="utf-8"))

    def write(self, record: dict[str, Any]) -> None:
        """One line, ``{"t": seconds since the start, **record}``; safe from any thread."""
        with self._lock:
            line = json.dumps({"t": round(self._clock() - self._start, 6), **record}) + "\n"
            if not self._handle.closed:
                self._handle.write(line)

    def frame(self, direction: str, frame: Any, _t: float = 0.0) -> None:
        """A frame observer (:func:`edgevoice.live.sdk.set_frame_observer`)."""
        self.write(frame_record(direction, frame))

    def close(self) -> None:
        with self._lock:
            self._handle.close()

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def frame_record(direction: str, frame: Any) -> dict[str, Any]:
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else str(frame)
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        message = {"unparsed": text[:1000]}
    return {"dir": direction, "msg": message}

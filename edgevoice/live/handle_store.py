"""The session resumption handle, kept on disk so a restarted daemon resumes the same
conversation.

A handle stays valid for two hours after its connection ended; the store records when it
was saved and when the daemon last knew the connection alive, and refuses a handle too old
to be worth trying. Writes are atomic (temporary file, fsync, rename): a power cut leaves
the old handle or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from edgevoice.atomic_file import write_atomically

log = logging.getLogger(__name__)

HANDLE_LIFETIME_S = 2 * 60 * 60
# Do not try a handle in its last minutes: the attempt would likely fail anyway.
SAFETY_MARGIN_S = 5 * 60
FILE_NAME = "session.json"


class HandleStore:
    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / FILE_NAME
        self._clock = clock

    def load(self) -> str | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            handle = data["handle"]
            last_alive = float(data.get("last_alive", data["saved_at"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable session file %s: %s", self.path, exc)
            return None
        if not isinstance(handle, str) or not handle:
            return None
        age = self._clock() - last_alive
        if age > HANDLE_LIFETIME_S - SAFETY_MARGIN_S or age < -60:
            log.info("stored session handle is %.0f min old: starting a new session", age / 60)
            self.clear()
            return None
        return handle

    def save(self, handle: str | None) -> None:
        if handle is None:
            self.clear()
            return
        now = self._clock()
        self._write({"handle": handle, "saved_at": now, "last_alive": now})

    def touch(self) -> None:
        """The connection was alive until now (called when it ends or the daemon stops)."""
        handle = self.load()
        if handle is not None:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            data["last_alive"] = self._clock()
            self._write(data)

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _write(self, data: dict[str, object]) -> None:
        write_atomically(self.path, json.dumps(data).encode("utf-8"))

"""The utterance ledger on disk, so a restarted daemon still answers what was said.

The core says when (a :class:`PersistLedger` action whenever the unanswered utterances or
the context change, and at stop); this module only writes and reads. Writes are atomic
(temporary file, fsync, rename; the temporary file is removed if the write fails): a
power cut leaves the old ledger or the new one, never half of one. A ledger older than
:data:`MAX_AGE_S` is not worth asking again and is dropped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from edgevoice.core.events import SavedCall, SavedLedger, SavedUtterance

log = logging.getLogger(__name__)

FILE_NAME = "ledger.json"
# Questions older than this when the daemon comes back are stale: nobody waits for them.
MAX_AGE_S = 10 * 60


class LedgerStore:
    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir / FILE_NAME
        self._clock = clock

    def load(self) -> SavedLedger | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            age = self._clock() - float(data["saved_at"])
            utterances = tuple(
                SavedUtterance(
                    int(item["number"]),
                    base64.b64decode(item["audio"], validate=True),
                    tuple(_load_call(call) for call in item.get("calls", ())),
                )
                for item in data["utterances"]
            )
            context = tuple(str(line) for line in data["context"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable ledger file %s: %s", self.path, exc)
            return None
        if age > MAX_AGE_S or age < -60:
            log.info("the stored ledger is %.0f min old: not asking its questions again", age / 60)
            self.clear()
            return None
        return SavedLedger(utterances, context)

    def save(self, ledger: SavedLedger) -> None:
        if not ledger.utterances and not ledger.context:
            self.clear()
            return
        data = {
            "saved_at": self._clock(),
            "utterances": [
                {
                    "number": u.number,
                    "audio": base64.b64encode(u.audio).decode("ascii"),
                    "calls": [
                        {"name": c.name, "args": c.args, "response": c.response, "scheduling": c.scheduling}
                        for c in u.calls
                    ],
                }
                for u in ledger.utterances
            ],
            "context": list(ledger.context),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(json.dumps(data).encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            tmp.replace(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _load_call(item: dict) -> SavedCall:
    response = item["response"]
    scheduling = item["scheduling"]
    if response is not None and not isinstance(response, dict):
        raise ValueError("a stored function result is not an object")
    return SavedCall(
        str(item["name"]),
        str(item["args"]),
        response,
        None if scheduling is None else str(scheduling),
    )

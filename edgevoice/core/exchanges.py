"""What was said, kept to tell a new session what it cannot know.

The exchange being answered (the user's and the model's words so far), the lines the
server's last resumption snapshot does not cover yet (``uncommitted``: told to a resumed
session), and the last few exchanges (told to a fresh session).
"""

from __future__ import annotations

from collections import deque

# Exchanges kept to brief a fresh session when a resume is impossible.
RECENT_EXCHANGES = 8


class Exchanges:
    def __init__(self) -> None:
        self._user: list[str] = []
        self._model: list[str] = []
        self.uncommitted: list[str] = []
        self.recent: deque[str] = deque(maxlen=RECENT_EXCHANGES)

    def heard_user(self, text: str) -> None:
        self._user.append(text)

    def heard_model(self, text: str) -> None:
        self._model.append(text)

    def drop_model_words(self) -> None:
        """The words of a turn the user cut into: they answer nothing."""
        self._model.clear()

    def drop_partial(self) -> None:
        """The connection is gone: the exchange in flight is asked again from the start."""
        self._user.clear()
        self._model.clear()

    @property
    def in_flight(self) -> str | None:
        if not self._user and not self._model:
            return None
        return f"User: {' '.join(self._user).strip()}\nAssistant: {''.join(self._model).strip()}"

    def finish(self) -> bool:
        """The exchange in flight was answered: keep it (False: there was nothing to keep)."""
        line = self.in_flight
        if line is None:
            return False
        self.drop_partial()
        self.uncommitted.append(line)
        self.recent.append(line)
        return True

    def note(self, line: str) -> None:
        """Something the model learned outside an exchange (a tool result)."""
        self.uncommitted.append(line)

    def committed(self) -> bool:
        """A resumption snapshot covers everything so far; True if that changed anything."""
        changed = bool(self.uncommitted)
        self.uncommitted.clear()
        return changed

    def briefing(self, *, resumed: bool) -> list[str]:
        """What a new connection must be told: what its snapshot lacks, or for a fresh
        session the recent conversation. The lines stay uncommitted until a snapshot."""
        lines = list(self.uncommitted) if resumed else list(self.recent)
        self.uncommitted = list(lines)
        return lines

    def saved(self) -> tuple[str, ...]:
        """What must survive a restart: the lines no snapshot covers, and the reply in flight."""
        in_flight = self.in_flight
        return tuple(self.uncommitted) + ((in_flight,) if in_flight else ())

    def restore(self, lines: tuple[str, ...]) -> None:
        for line in lines:
            self.uncommitted.append(line)
            self.recent.append(line)

"""What the model must say unasked (sans-IO): announcements and "timer ended" notices.

A bounded-age queue. Items go out one at a time, oldest first, only at a quiet moment (no
question, answer or tool call in flight) with the link up; the caller then plays the chime
(announcements only) and asks the model to speak. Offline, an announcement is a chime at
once and stays queued until the link is back, if it is still younger than ``max_age_s``;
older items are dropped (and said so in the journal), so a device that was offline for an
hour does not read out stale news.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

MAX_ANNOUNCEMENT_CHARS = 500


class NoticeKind(StrEnum):
    ANNOUNCEMENT = "announcement"
    TIMER = "timer"


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    text: str  # what the user should hear (an announcement) or learn (a timer ended)
    queued_t: float  # monotonic: when the news happened

    @property
    def chime(self) -> bool:
        """Announcements start with the chime; a timer's ring already drew attention."""
        return self.kind is NoticeKind.ANNOUNCEMENT

    def prompt(self) -> str:
        """The client_content text that makes the model say it."""
        if self.kind is NoticeKind.ANNOUNCEMENT:
            return (
                "(Announcement from the home, not from the user. Say exactly the following, "
                f"word for word, and nothing else:)\n{self.text}"
            )
        return f"(Device notice, not from the user: {self.text} Tell the user in one short sentence.)"


@dataclass(frozen=True)
class Queued:
    notice: Notice
    chime_now: bool  # offline: the chime alone now, the words later


@dataclass(frozen=True)
class Rejected:
    reason: str


class NoticeQueue:
    """Not thread-safe: the event loop owns it."""

    def __init__(self, max_age_s: float = 300.0, max_items: int = 20) -> None:
        self.max_age_s = max_age_s
        self.max_items = max_items
        self._items: deque[Notice] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> tuple[Notice, ...]:
        return tuple(self._items)

    def announce(self, text: str, now: float, *, link_up: bool) -> Queued | Rejected:
        """An announcement arrived (control socket, MQTT)."""
        text = " ".join(str(text).split())
        if not text:
            return Rejected("an announcement needs some text")
        if len(text) > MAX_ANNOUNCEMENT_CHARS:
            return Rejected(f"an announcement can have at most {MAX_ANNOUNCEMENT_CHARS} characters")
        if len(self._items) >= self.max_items:
            return Rejected(f"{self.max_items} announcements are already waiting")
        notice = Notice(NoticeKind.ANNOUNCEMENT, text, now)
        self._items.append(notice)
        return Queued(notice, chime_now=not link_up)

    def timer_ended(self, names: tuple[str, ...], ended_at: float) -> Notice:
        if len(names) == 1:
            text = f"the {names[0]} timer has ended."
        else:
            text = "these timers have ended: " + ", ".join(names) + "."
        notice = Notice(NoticeKind.TIMER, text, ended_at)
        self._items.append(notice)
        return notice

    def release(self, now: float, *, quiet: bool, link_up: bool) -> Notice | None:
        """The next item to speak now, or None (not a quiet moment, offline, or nothing
        young enough). Call :meth:`expire` first to learn what was dropped."""
        self.expire(now)
        if not (quiet and link_up) or not self._items:
            return None
        return self._items.popleft()

    def put_back(self, notice: Notice) -> None:
        """A released item could not be said after all (the user pressed meanwhile)."""
        self._items.appendleft(notice)

    def expire(self, now: float) -> list[Notice]:
        dropped = [n for n in self._items if now - n.queued_t >= self.max_age_s]
        for notice in dropped:
            self._items.remove(notice)
        return dropped

    def next_deadline(self) -> float | None:
        if not self._items:
            return None
        return min(n.queued_t for n in self._items) + self.max_age_s


__all__ = ["MAX_ANNOUNCEMENT_CHARS", "Notice", "NoticeKind", "NoticeQueue", "Queued", "Rejected"]

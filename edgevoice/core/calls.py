"""Function calls in flight: which are owed a response, on which connection, by when.

A call id is remembered after it ran, so the same call arriving twice (as ``toolCall`` and
again inside the model's turn) runs once. A call issued on a connection that is gone can
no longer be answered by id: its result waits in ``undelivered`` to reach the model as
text. After a result the model should speak about, the conversation is not idle until the
model's next turn ends or :data:`FOLLOW_UP_WAIT_S` has passed.

Side effects happen once per question: a question cut off (by a drop or a restart) is
asked again, and the model then calls the same functions again. The calls an unanswered
utterance's reply already ran are remembered with it (:class:`RanCall`, persisted with the
ledger); an identical call (same name, same arguments) for that utterance is answered at
once with the stored result (:func:`already_done`) instead of running twice. A call the
server cancelled before its result came was stopped, not done: it is forgotten, and the
question asked again runs it.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from edgevoice.core.events import SavedCall, ToolCall, ToolResult

# Call ids remembered to run a call that arrives twice once.
REMEMBERED_CALLS = 256
FOLLOW_UP_WAIT_S = 10.0


# The scheduling of an answer to a repeated call whose first result is unknown (it was
# still running at a restart): the ordinary one for an action that worked.
UNKNOWN_RESULT_SCHEDULING = "WHEN_IDLE"


def _canonical(value: Any) -> Any:
    # 2 and 2.0 are the same argument to a function; the model may send either.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def call_key(name: str, args: dict[str, Any]) -> tuple[str, str]:
    """What makes two calls the same side effect: the function and its arguments, as
    canonical JSON (keys sorted, integral floats as integers)."""
    return name, json.dumps(_canonical(args), sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class RanCall:
    """A function already run for an utterance; its result once known."""

    response: dict[str, Any] | None = None
    scheduling: str | None = None

    def saved(self, key: tuple[str, str]) -> SavedCall:
        return SavedCall(key[0], key[1], self.response, self.scheduling)

    @classmethod
    def restore(cls, saved: SavedCall) -> tuple[tuple[str, str], RanCall]:
        return (saved.name, saved.args), cls(saved.response, saved.scheduling)


def already_done(call: ToolCall, ran: RanCall, t: float) -> ToolResult:
    """The answer to ``call``, which repeats one already run for the same question."""
    if ran.response is None:
        response: dict[str, Any] = {
            "ok": True,
            "already_done": True,
            "note": "this was already requested for this question; it is not done again",
        }
        return ToolResult(call.id, call.name, response, UNKNOWN_RESULT_SCHEDULING, t)
    response = {**ran.response, "already_done": True}
    return ToolResult(call.id, call.name, response, ran.scheduling or UNKNOWN_RESULT_SCHEDULING, t)


@dataclass
class PendingCall:
    call: ToolCall
    link: int
    deadline: float
    # The utterance the call serves (its reply called it), to remember its result there.
    for_utterance: Any = None


class Calls:
    def __init__(self, deadline_s: float) -> None:
        self._deadline_s = deadline_s
        self._pending: dict[str, PendingCall] = {}
        self._seen: deque[str] = deque(maxlen=REMEMBERED_CALLS)
        self.undelivered: list[ToolResult] = []
        self.follow_up_until: float | None = None
        # The turn open when the result went back is not the follow-up.
        self._follow_up_skips_turn = False

    @property
    def busy(self) -> bool:
        return bool(self._pending or self.undelivered or self.follow_up_until is not None)

    def deadlines(self) -> list[float]:
        return [call.deadline for call in self._pending.values()] + (
            [self.follow_up_until] if self.follow_up_until is not None else []
        )

    def receive(self, call: ToolCall, link: int, t: float, for_utterance: Any = None) -> bool:
        """A call arrived; False if it already did (it must not run again)."""
        if call.id in self._pending or call.id in self._seen:
            return False
        self._seen.append(call.id)
        self._pending[call.id] = PendingCall(call, link, t + self._deadline_s, for_utterance)
        return True

    def cancel(self, ids: tuple[str, ...]) -> tuple[PendingCall, ...]:
        """The server withdrew calls; the ones still running (no result came for them)."""
        return tuple(self._pending.pop(i) for i in ids if i in self._pending)

    def take(self, call_id: str) -> PendingCall | None:
        """The call a result answers (None: cancelled or overdue meanwhile, nothing owed)."""
        return self._pending.pop(call_id, None)

    @property
    def running(self) -> int:
        """Calls started and still owed a result."""
        return len(self._pending)

    def unanswered_on(self, link: int) -> bool:
        return any(call.link == link for call in self._pending.values())

    def overdue(self, t: float) -> list[PendingCall]:
        return [call for call in self._pending.values() if t >= call.deadline]

    def responded(self, result: ToolResult, t: float, *, turn_open: bool) -> None:
        if result.scheduling != "SILENT":
            self.follow_up_until = t + FOLLOW_UP_WAIT_S
            self._follow_up_skips_turn = turn_open

    def expect_follow_up(self, t: float) -> None:
        """The model was asked to speak unasked: busy until its turn ends (or the wait passes)."""
        self.follow_up_until = t + FOLLOW_UP_WAIT_S
        self._follow_up_skips_turn = False

    def turn_complete(self) -> None:
        if self._follow_up_skips_turn:
            self._follow_up_skips_turn = False
        elif self.follow_up_until is not None and not self._pending:
            self.follow_up_until = None

    def tick(self, t: float) -> None:
        if self.follow_up_until is not None and t >= self.follow_up_until:
            self.follow_up_until = None

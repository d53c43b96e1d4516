"""The Live connection's life as a state machine (sans-IO, time passed in).

::

    CONNECTING --setup_complete--> UP --go_away--> SWITCHING
        |                           |                  |
        | attempt_failed            | left             | left
        v                           v                  v
    BACKING_OFF <-------------------+------------------+
        |  retry_due / network_changed
        v
    CONNECTING                       (any state) --stop--> STOPPED

Every way of leaving a connection (the server closed it, it stopped answering, the GoAway
switch, a fresh session, a bug while handling an event) goes through ``left`` and so
through BACKING_OFF: a connection that dies young counts against the next attempt, whatever
the server did, so no server behaviour can make the device reconnect in a loop. The first
retry after a connection that lived a while is immediate (a delay of zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgevoice.core.backoff import Backoff
from edgevoice.core.machine import Machine

# A connection that dies sooner than this after coming up counts as a failed attempt, so
# a server that accepts and then drops us at once is retried with backoff, not in a loop.
STABLE_LINK_S = 5.0


class LinkState(Enum):
    CONNECTING = "connecting"  # Connect sent, waiting for setupComplete
    UP = "up"  # setupComplete arrived: the conversation flows
    SWITCHING = "switching"  # up, but the server said GoAway: leave when quiet or at the deadline
    BACKING_OFF = "backing off"  # no connection: waiting before the next attempt
    STOPPED = "stopped"  # the daemon is stopping: no new connection


class LinkTrigger(Enum):
    SETUP_COMPLETE = "setup_complete"
    ATTEMPT_FAILED = "attempt_failed"
    GO_AWAY = "go_away"
    LEFT = "left"
    RETRY_DUE = "retry_due"
    STOP = "stop"


_S, _T = LinkState, LinkTrigger
LINK_TRANSITIONS: dict[LinkState, dict[LinkTrigger, LinkState]] = {
    _S.CONNECTING: {
        _T.SETUP_COMPLETE: _S.UP,
        _T.ATTEMPT_FAILED: _S.BACKING_OFF,
        _T.LEFT: _S.BACKING_OFF,
        _T.STOP: _S.STOPPED,
    },
    _S.UP: {_T.GO_AWAY: _S.SWITCHING, _T.LEFT: _S.BACKING_OFF, _T.STOP: _S.STOPPED},
    # A second GoAway only moves the deadline.
    _S.SWITCHING: {_T.GO_AWAY: _S.SWITCHING, _T.LEFT: _S.BACKING_OFF, _T.STOP: _S.STOPPED},
    _S.BACKING_OFF: {_T.RETRY_DUE: _S.CONNECTING, _T.STOP: _S.STOPPED},
    # The last connection's end still arrives while stopping: nothing follows it.
    _S.STOPPED: {_T.STOP: _S.STOPPED, _T.LEFT: _S.STOPPED},
}


@dataclass(frozen=True)
class Leaving:
    """What leaving a connection decided."""

    link: int
    was_open: bool  # a socket exists (connecting or up): the caller closes it
    was_up: bool
    retry_in: float


class Connection(Machine[LinkState, LinkTrigger]):
    """The connection number, the resumption handle and when to try again."""

    name = "connection"

    def __init__(self, backoff: Backoff, handle: str | None) -> None:
        super().__init__(LinkState.BACKING_OFF, LINK_TRANSITIONS)
        self._backoff = backoff
        self.handle = handle
        self.link = 0
        self.connect_handle: str | None = None  # the handle the current attempt resumes
        self.resumed = False
        self.up_t = 0.0
        self.retry_at: float | None = None
        self.switch_at: float | None = None
        self.failures = 0  # consecutive attempts that never came up
        self.young_deaths = 0  # consecutive connections that died soon after coming up
        self.ever_up = False
        self.offline_announced = False

    @property
    def up(self) -> bool:
        return self.state in (LinkState.UP, LinkState.SWITCHING)

    @property
    def connecting(self) -> bool:
        return self.state is LinkState.CONNECTING

    def connect(self) -> tuple[int, str | None]:
        """BACKING_OFF -> CONNECTING: the number and handle of the new attempt."""
        self.fire(LinkTrigger.RETRY_DUE)
        self.retry_at = None
        self.link += 1
        self.connect_handle = self.handle
        return self.link, self.handle

    def setup_complete(self, t: float, resumed: bool) -> None:
        self.fire(LinkTrigger.SETUP_COMPLETE)
        self.resumed = resumed
        self.up_t = t
        self.failures = 0
        self.switch_at = None

    def attempt_failed(self, t: float, retry_now: bool = False) -> float:
        """CONNECTING -> BACKING_OFF after an attempt that never came up; the delay."""
        self.fire(LinkTrigger.ATTEMPT_FAILED)
        if retry_now:
            delay = 0.0
        else:
            self.failures += 1
            delay = self._backoff.delay(self.failures)
        self.retry_at = t + delay
        return delay

    def go_away(self, t: float, time_left_s: float, margin_s: float) -> None:
        self.fire(LinkTrigger.GO_AWAY)
        margin = min(margin_s, time_left_s / 2)
        self.switch_at = t + max(0.0, time_left_s - margin)

    def leave(self, t: float, *, counts: bool = True) -> Leaving:
        """The one way out of a connection (closed by either side, or never set up).

        ``counts``: whether a young death counts against the next attempt (a fresh session
        the user's settings asked for does not)."""
        was_up = self.up
        was_open = was_up or self.connecting
        self.fire(LinkTrigger.LEFT)
        self.switch_at = None
        if self.state is LinkState.STOPPED:
            self.retry_at = None
            return Leaving(self.link, was_open, was_up, 0.0)
        if not was_up:
            self.retry_at = t
            return Leaving(self.link, was_open, was_up, 0.0)
        if counts and t - self.up_t < STABLE_LINK_S:
            self.young_deaths += 1
        elif t - self.up_t >= STABLE_LINK_S:
            self.young_deaths = 0
        # First retry at once; a connection that keeps dying young is retried ever later.
        delay = self._backoff.delay(self.young_deaths - 1) if counts else 0.0
        self.retry_at = t + delay
        return Leaving(self.link, was_open, was_up, delay)

    def retry_due(self, t: float) -> bool:
        return self.state is LinkState.BACKING_OFF and self.retry_at is not None and t >= self.retry_at

    def stop(self) -> None:
        """Any state -> STOPPED (the socket, if any, is the daemon's to close)."""
        self.fire(LinkTrigger.STOP)
        self.retry_at = None
        self.switch_at = None

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

Why the link went down (:class:`DownCause`) picks the schedule: a lost connection the
ordinary backoff; a refused quota, key or model its own slow plan
(:data:`edgevoice.core.backoff.RETRY_PLANS`), counted apart, until a connection comes up
or the user changes something (:meth:`Connection.retry_now`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgevoice.core.backoff import Backoff, RetryPlan, retry_plan
from edgevoice.core.events import DownCause
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
        # The cause of the last failure when it has a slow plan of its own (LOST otherwise),
        # how many failures in a row it caused, and the delay it asked for.
        self.cause = DownCause.LOST
        self.cause_failures = 0
        self.retry_in = 0.0

    @property
    def plan(self) -> RetryPlan:
        return retry_plan(self.cause)

    @property
    def long_backoff(self) -> bool:
        """Down for a cause that no quick retry cures (quota, key, model)."""
        return self.cause is not DownCause.LOST and not self.up

    def _planned_delay(self, cause: DownCause) -> float | None:
        """The delay ``cause``'s own plan asks for (None: the ordinary backoff applies)."""
        plan = retry_plan(cause)
        if plan.backoff is None:
            self.cause, self.cause_failures = DownCause.LOST, 0
            return None
        if cause is not self.cause:
            self.cause_failures = 0
        self.cause = cause
        self.cause_failures += 1
        return plan.delay(self.cause_failures, self._backoff)

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
        self.cause, self.cause_failures = DownCause.LOST, 0

    def attempt_failed(self, t: float, retry_now: bool = False, cause: DownCause = DownCause.LOST) -> float:
        """CONNECTING -> BACKING_OFF after an attempt that never came up; the delay."""
        self.fire(LinkTrigger.ATTEMPT_FAILED)
        if retry_now:
            delay = 0.0
        else:
            self.failures += 1
            planned = self._planned_delay(cause)
            delay = self._backoff.delay(self.failures) if planned is None else planned
        self.retry_at = t + delay
        self.retry_in = delay
        return delay

    def retry_now(self, t: float) -> bool:
        """The user changed something (the key, the model): a slow plan's wait is over and
        its count starts again. True if an attempt is due now."""
        if self.state is not LinkState.BACKING_OFF:
            return False
        self.cause, self.cause_failures = DownCause.LOST, 0
        self.failures = 0
        self.retry_at = t
        return True

    def go_away(self, t: float, time_left_s: float, margin_s: float) -> None:
        self.fire(LinkTrigger.GO_AWAY)
        margin = min(margin_s, time_left_s / 2)
        self.switch_at = t + max(0.0, time_left_s - margin)

    def leave(self, t: float, *, counts: bool = True, cause: DownCause = DownCause.LOST) -> Leaving:
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
            self.retry_in = 0.0
            return Leaving(self.link, was_open, was_up, 0.0)
        if counts and t - self.up_t < STABLE_LINK_S:
            self.young_deaths += 1
        elif t - self.up_t >= STABLE_LINK_S:
            self.young_deaths = 0
        # First retry at once; a connection that keeps dying young is retried ever later.
        delay = self._backoff.delay(self.young_deaths - 1) if counts else 0.0
        planned = self._planned_delay(cause) if counts else None
        if planned is not None:
            delay = max(delay, planned)
        self.retry_at = t + delay
        self.retry_in = delay
        return Leaving(self.link, was_open, was_up, delay)

    def retry_due(self, t: float) -> bool:
        return self.state is LinkState.BACKING_OFF and self.retry_at is not None and t >= self.retry_at

    def stop(self) -> None:
        """Any state -> STOPPED (the socket, if any, is the daemon's to close)."""
        self.fire(LinkTrigger.STOP)
        self.retry_at = None
        self.switch_at = None

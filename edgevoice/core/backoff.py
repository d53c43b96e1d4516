"""Reconnect delays: first retry at once, then exponential with jitter, capped.

Jitter spreads the reconnects of many devices after a shared outage (a router reboot takes
every device in the house down at once); the cap keeps an offline device checking often
enough that it comes back soon after the network does. Causes that no quick retry can
cure (quota, a refused key, a retired model) have their own slow schedule in
:data:`RETRY_PLANS`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from edgevoice.core.events import DownCause


class Backoff:
    def __init__(
        self,
        initial_s: float = 0.25,
        max_s: float = 30.0,
        multiplier: float = 2.0,
        jitter: float = 0.5,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.multiplier = multiplier
        self.jitter = jitter
        self._rng = rng or random.Random()

    def delay(self, failures: int) -> float:
        """Seconds to wait before the next attempt after ``failures`` consecutive failures."""
        if failures <= 0:
            return 0.0
        # The exponent is capped: after hours of failures 2 ** n would overflow a float.
        base = min(self.max_s, self.initial_s * self.multiplier ** min(failures - 1, 64))
        return base * (1.0 - self.jitter * self._rng.random())


# -- how long to wait, by why the link went down ------------------------------------------

@dataclass(frozen=True)
class RetryPlan:
    """How to retry after a link went down for one :class:`DownCause`.

    ``backoff`` is None for a cause that the ordinary reconnect backoff handles (a lost
    network comes back in seconds); otherwise the cause has its own, much slower schedule,
    because nothing the client does makes it pass sooner. ``status`` is what the user is
    shown while waiting (empty: the ordinary "offline, retrying").
    """

    status: str
    backoff: Backoff | None = None

    def delay(self, failures: int, ordinary: Backoff) -> float:
        """Seconds before the next attempt after ``failures`` consecutive failures."""
        own = self.backoff
        if own is None:
            return ordinary.delay(failures)
        # Never at once: the first retry waits the schedule's initial delay already.
        return own.delay(max(failures, 1))


RETRY_PLANS: dict[DownCause, RetryPlan] = {
    DownCause.LOST: RetryPlan(status=""),
    # The free tier resets at midnight Pacific; paid quotas per minute. Minutes, then up to
    # half an hour, and never a burst.
    DownCause.QUOTA_EXHAUSTED: RetryPlan(
        "quota exhausted", Backoff(initial_s=120.0, max_s=1800.0, multiplier=2.0, jitter=0.25)
    ),
    # An expired or revoked key stays so until someone renews it (a reload retries at once).
    DownCause.KEY_REJECTED: RetryPlan(
        "the Gemini API key was refused", Backoff(initial_s=900.0, max_s=3600.0, jitter=0.25)
    ),
    # A retired model id never comes back; an hourly try notices a service-side fix, and a
    # reload with a new live.model retries at once.
    DownCause.MODEL_NOT_FOUND: RetryPlan(
        "model not found", Backoff(initial_s=3600.0, max_s=6 * 3600.0, jitter=0.25)
    ),
    # A server frame the client will not buffer: the next connection may well get it again.
    DownCause.FRAME_TOO_LARGE: RetryPlan(
        "server sent an oversized frame", Backoff(initial_s=2.0, max_s=120.0, jitter=0.5)
    ),
}


def retry_plan(cause: DownCause | str) -> RetryPlan:
    """The plan for ``cause`` (an unknown cause is treated as a lost connection)."""
    try:
        return RETRY_PLANS[DownCause(cause)]
    except ValueError:
        return RETRY_PLANS[DownCause.LOST]

"""Reconnect delays: first retry at once, then exponential with jitter, capped.

Jitter spreads the reconnects of many devices after a shared outage (a router reboot takes
every device in the house down at once); the cap keeps an offline device checking often
enough that it comes back soon after the network does.
"""

from __future__ import annotations

import random


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

"""The push-to-talk button (gpiozero), bridged onto the event loop.

gpiozero calls ``when_pressed``/``when_released`` on its own thread (lgpio's callback
thread on a Pi, the driving thread with mock pins). The bridge stamps each edge with the
capture sample position at that instant and hands it to the loop thread-safely.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gpiozero import DigitalInputDevice
from gpiozero.exc import GPIOZeroError

from edgevoice.errors import UserError

# post(pressed, position, t): called on gpiozero's thread; must be thread-safe.
EdgeSink = Callable[[bool, int, float], None]
# stamp_and_post(post): calls post(position) under the capture hand-over lock.
Stamper = Callable[[Callable[[int], None]], None]


class PushToTalkButton:
    def __init__(
        self,
        pin: int,
        *,
        pull_up: bool,
        bounce_time_s: float | None,
        stamp_and_post: Stamper,
        on_edge: EdgeSink,
        pin_factory: object | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stamp_and_post = stamp_and_post
        self._on_edge = on_edge
        self._clock = clock
        try:
            # Not gpiozero's Button: its hold-time thread wakes ten times a second for ever
            # (a when_held we never use); this is the same pin, pull and debounce without it.
            self._button = DigitalInputDevice(
                pin, pull_up=pull_up, bounce_time=bounce_time_s or None, pin_factory=pin_factory
            )
        except (GPIOZeroError, OSError, ValueError) as exc:
            raise UserError(f"the push-to-talk button on BCM pin {pin} cannot be used: {exc}") from None
        self._button.when_activated = lambda: self._edge(True)
        self._button.when_deactivated = lambda: self._edge(False)

    @property
    def is_pressed(self) -> bool:
        return bool(self._button.is_active)

    def _edge(self, pressed: bool) -> None:
        t = self._clock()
        self._stamp_and_post(lambda position: self._on_edge(pressed, position, t))

    def close(self) -> None:
        self._button.close()

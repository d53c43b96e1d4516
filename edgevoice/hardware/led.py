"""The optional status LED: one gpiozero LED showing what the assistant is doing.

A PWM-capable pin gets smooth pulses (gpiozero ``PWMLED``); a plain pin gets blink
patterns (``LED``); no pin configured gives an object that does nothing, so callers never
check. gpiozero runs blinks and pulses in its own background thread; ``show`` returns at
once and may be called from any thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Final

from gpiozero import LED, PWMLED, PinPWMUnsupported
from gpiozero.pins import Factory

log = logging.getLogger(__name__)

LED_STATES: Final[tuple[str, ...]] = (
    "idle", "listening", "thinking", "speaking", "offline", "error", "ringing", "muted",
)

# state -> (method, keyword arguments). "off"/"on" take none.
_PWM_PATTERNS: Final[dict[str, tuple[str, dict[str, float]]]] = {
    "idle": ("off", {}),
    "listening": ("on", {}),
    "thinking": ("pulse", {"fade_in_time": 0.4, "fade_out_time": 0.4}),
    "speaking": ("pulse", {"fade_in_time": 1.2, "fade_out_time": 1.2}),  # slow breathing
    "offline": ("blink", {"on_time": 0.2, "off_time": 1.8}),
    "error": ("blink", {"on_time": 0.1, "off_time": 0.1}),
    # A timer rings: a fast even flash, in step with the beeps.
    "ringing": ("blink", {"on_time": 0.25, "off_time": 0.25}),
    # Microphone muted: a short wink every three seconds, unlike offline's 2 s blink.
    "muted": ("blink", {"on_time": 0.05, "off_time": 2.95}),
}
# Without PWM there is no pulse: thinking becomes a brisk blink, speaking steady on.
_PLAIN_PATTERNS: Final[dict[str, tuple[str, dict[str, float]]]] = {
    **_PWM_PATTERNS,
    "thinking": ("blink", {"on_time": 0.25, "off_time": 0.25}),
    "speaking": ("on", {}),
}


class StatusLed:
    """``show(state)`` with a state from ``LED_STATES``; ``close()`` releases the pin."""

    def __init__(self, pin: int | None, pwm: bool = True, pin_factory: Factory | None = None):
        self.pin = pin
        self._lock = threading.Lock()
        self._state: str | None = None
        self._device: LED | PWMLED | None = None
        if pin is None:
            return
        if pwm:
            try:
                self._device = PWMLED(pin, pin_factory=pin_factory)
            except PinPWMUnsupported:
                # PWMLED released the pin on failure; a plain LED can take it.
                log.info("GPIO%d has no PWM here; the status LED will blink instead of pulse", pin)
        if self._device is None:
            self._device = LED(pin, pin_factory=pin_factory)

    @property
    def pwm(self) -> bool:
        """Whether the LED pulses smoothly (PWM) rather than only switching."""
        return isinstance(self._device, PWMLED)

    @property
    def state(self) -> str | None:
        """The state last shown (None before the first ``show``)."""
        return self._state

    def show(self, state: str) -> None:
        if state not in LED_STATES:
            raise ValueError(f"unknown LED state {state!r}; known states: {', '.join(LED_STATES)}")
        with self._lock:
            if state == self._state:
                return  # restarting a blink or pulse would make it stutter
            self._state = state
            device = self._device
            if device is None:
                return
            method, kwargs = (_PWM_PATTERNS if self.pwm else _PLAIN_PATTERNS)[state]
            action: Any = getattr(device, method)
            action(**kwargs)

    def close(self) -> None:
        """Turn off and release the pin. Later ``show`` calls do nothing."""
        with self._lock:
            device, self._device = self._device, None
            if device is not None:
                device.close()

    def __repr__(self) -> str:
        kind = "none" if self.pin is None else ("pwm" if self.pwm else "on/off")
        return f"StatusLed(pin={self.pin!r}, {kind}, state={self._state!r})"

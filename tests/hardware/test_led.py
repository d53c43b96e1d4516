"""Status LED on gpiozero mock pins: steady states read back, blinks and pulses are seen
in the pin's recorded state history (waited for on a condition, never slept for)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator

import pytest
from gpiozero import LED
from gpiozero.pins.mock import MockFactory, MockPin, MockPWMPin, PinState

from edgevoice.hardware.led import LED_STATES, StatusLed

PIN = 27
WAIT_S = 5.0  # generous: only reached if the behaviour is missing


class _Watched:
    """Mixin: notify a condition whenever gpiozero changes the pin, so a test can wait."""

    def __init__(self, *args, **kwargs) -> None:
        self.changed = threading.Condition()
        super().__init__(*args, **kwargs)

    def _change_state(self, value):
        result = super()._change_state(value)
        with self.changed:
            self.changed.notify_all()
        return result


class WatchedPin(_Watched, MockPin):
    pass


class WatchedPWMPin(_Watched, MockPWMPin):
    pass


def wait_for_states(pin, predicate: Callable[[list[PinState]], bool]) -> list[PinState]:
    with pin.changed:
        assert pin.changed.wait_for(lambda: predicate(list(pin.states)), timeout=WAIT_S), (
            f"pin never showed the expected pattern; states: {pin.states}"
        )
        return list(pin.states)


def levels(states: list[PinState]) -> list[float]:
    return [float(s.state) for s in states]


def on_off_cycles(states: list[PinState]) -> int:
    values = levels(states)
    return sum(1 for a, b in itertools.pairwise(values) if a == 1 and b == 0)


def has_rise_and_fall(states: list[PinState]) -> bool:
    values = levels(states)
    partial = [v for v in values if 0 < v < 1]
    steps = [b - a for a, b in itertools.pairwise(values)]
    return len(partial) >= 4 and any(s > 0 for s in steps) and any(s < 0 for s in steps)


@pytest.fixture
def pwm_factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=WatchedPWMPin)
    yield factory
    factory.close()


@pytest.fixture
def plain_factory() -> Iterator[MockFactory]:
    factory = MockFactory(pin_class=WatchedPin)
    yield factory
    factory.close()


@pytest.fixture
def pwm_led(pwm_factory) -> Iterator[StatusLed]:
    led = StatusLed(PIN, pwm=True, pin_factory=pwm_factory)
    yield led
    led.close()


@pytest.fixture
def plain_led(plain_factory) -> Iterator[StatusLed]:
    led = StatusLed(PIN, pwm=True, pin_factory=plain_factory)
    yield led
    led.close()


def test_steady_states_read_back(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    assert pwm_led.pwm
    pwm_led.show("listening")
    assert pin.state == 1
    pwm_led.show("idle")
    assert pin.state == 0
    assert pwm_led.state == "idle"


def test_pwm_thinking_pulses_up_and_down(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    pwm_led.show("thinking")
    wait_for_states(pin, has_rise_and_fall)


def fade_in_steps(led: StatusLed, pin, state: str) -> int:
    """Distinct rising levels before the first full-on: gpiozero writes one per frame
    (25 fps), so this measures the fade length without reading a clock."""
    led.show("idle")
    pin.clear_states()
    led.show(state)
    values = levels(wait_for_states(pin, lambda s: 1.0 in levels(s)))
    return len({v for v in values[: values.index(1.0)] if 0 < v < 1})


def test_pwm_thinking_pulses_faster_than_speaking_breathes(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    assert fade_in_steps(pwm_led, pin, "speaking") > fade_in_steps(pwm_led, pin, "thinking") >= 5


def test_error_blinks_repeatedly(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    pwm_led.show("error")
    states = wait_for_states(pin, lambda s: on_off_cycles(s) >= 3)
    assert set(levels(states)) <= {0.0, 1.0}


def test_offline_blinks(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    pwm_led.show("offline")
    wait_for_states(pin, lambda s: on_off_cycles(s) >= 1)


def test_without_pwm_it_falls_back_to_blinking(plain_led, plain_factory):
    pin = plain_factory.pin(PIN)
    assert not plain_led.pwm
    plain_led.show("thinking")
    wait_for_states(pin, lambda s: on_off_cycles(s) >= 2)
    plain_led.show("speaking")
    assert pin.state == 1
    plain_led.show("idle")
    assert pin.state == 0


def test_plain_led_when_pwm_is_not_wanted(pwm_factory):
    led = StatusLed(PIN, pwm=False, pin_factory=pwm_factory)
    try:
        assert not led.pwm
        led.show("listening")
        assert pwm_factory.pin(PIN).state == 1
    finally:
        led.close()


def test_showing_the_same_state_again_does_not_restart_it(pwm_led, pwm_factory):
    pin = pwm_factory.pin(PIN)
    pwm_led.show("listening")
    before = len(pin.states)
    pwm_led.show("listening")
    assert len(pin.states) == before


def test_every_state_is_accepted_and_unknown_ones_rejected(pwm_led):
    for state in LED_STATES:
        pwm_led.show(state)
    with pytest.raises(ValueError, match="unknown LED state 'blinking'"):
        pwm_led.show("blinking")


def test_no_pin_is_a_quiet_no_op():
    led = StatusLed(None)
    for state in LED_STATES:
        led.show(state)
    assert led.state == LED_STATES[-1] and not led.pwm
    with pytest.raises(ValueError):
        led.show("nonsense")
    led.close()


def test_close_releases_the_pin_and_later_shows_do_nothing(pwm_factory):
    led = StatusLed(PIN, pin_factory=pwm_factory)
    led.show("error")
    led.close()
    led.show("listening")  # after shutdown: harmless
    # The pin is free again: another device can claim it.
    LED(PIN, pin_factory=pwm_factory).close()

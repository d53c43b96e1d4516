"""The push-to-talk button on a real gpiozero mock pin."""

from __future__ import annotations

import threading

from gpiozero.pins.mock import MockFactory

from edgevoice.hardware.button import PushToTalkButton


def test_edges_reach_the_sink_stamped_and_no_thread_polls():
    factory = MockFactory()
    before = set(threading.enumerate())
    edges: list[tuple[bool, int, float]] = []
    button = PushToTalkButton(
        17,
        pull_up=True,
        bounce_time_s=None,
        stamp_and_post=lambda post: post(1234),
        on_edge=lambda pressed, position, t: edges.append((pressed, position, t)),
        pin_factory=factory,
        clock=lambda: 5.0,
    )
    try:
        # gpiozero's Button would start a hold-time thread that wakes ten times a second.
        assert set(threading.enumerate()) == before
        pin = factory.pin(17)
        pin.drive_low()  # pulled up: low is pressed
        assert button.is_pressed
        pin.drive_high()
        assert not button.is_pressed
        assert edges == [(True, 1234, 5.0), (False, 1234, 5.0)]
    finally:
        button.close()
        factory.close()

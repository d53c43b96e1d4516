"""A capture device that does not block must not make the microphone thread spin.

ALSA's `null` PCM (real libasound, no sound card) returns every read at once: a loop
that trusts read() to block would deliver thousands of periods a second, keep a core
busy and flood the event loop. The microphone reads such a device at the clock's pace.
"""

from __future__ import annotations

import threading
import time

from edgevoice.audio.capture import MAX_PERIODS_AHEAD, Microphone
from edgevoice.audio.devices import open_capture

RATE = 16000
PERIOD = RATE * 20 // 1000


def open_null():
    device, _format = open_capture("null", rate=RATE, period_ms=20)
    return device


def test_a_device_that_returns_at_once_is_read_at_the_clocks_pace() -> None:
    delivered: list[int] = []
    enough = threading.Event()

    def on_frames(periods: list[tuple[int, bytes, float]]) -> None:
        delivered.extend(position for position, _pcm, _t in periods)
        if len(delivered) >= 25:
            enough.set()

    microphone = Microphone(open_null, rate=RATE, period_frames=PERIOD, on_frames=on_frames)
    started = time.monotonic()
    microphone.start()
    try:
        assert enough.wait(10), "the null device delivered nothing"
    finally:
        microphone.stop()
    elapsed = time.monotonic() - started
    # Never more audio than the clock allows (plus the periods it may run ahead).
    assert len(delivered) <= elapsed / 0.020 + MAX_PERIODS_AHEAD + 1, (len(delivered), elapsed)
    assert microphone.held_back > 0
    assert delivered == [i * PERIOD for i in range(len(delivered))]


def test_an_unpaced_simulated_microphone_may_run_ahead() -> None:
    # The simulator without --realtime runs as fast as the daemon can take.
    enough = threading.Event()
    count = [0]

    def on_frames(periods: list[tuple[int, bytes, float]]) -> None:
        count[0] += len(periods)
        if count[0] >= 200:
            enough.set()

    microphone = Microphone(open_null, rate=RATE, period_frames=PERIOD, on_frames=on_frames, paced=False)
    started = time.monotonic()
    microphone.start()
    try:
        assert enough.wait(10)
    finally:
        microphone.stop()
    # 200 periods are 4 s of audio; unpaced they arrive far sooner.
    assert time.monotonic() - started < 4.0
    assert microphone.held_back == 0

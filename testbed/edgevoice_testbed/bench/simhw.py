"""The simulated sound card and button of one benchmark worker, paced in real time.

Both clients get the same devices: real pyalsaaudio PCMs on libasound's file plugin
(``edgevoice_testbed.sim.devices``), paced by the clock, and a real gpiozero ``Button`` on a mock
pin pressed by the script's schedule. What this module adds is a start gate: the
microphone delivers nothing until the bench parent says "go", so that every worker starts
its conversation at the same moment, after all of them have reported READY.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from edgevoice.audio.alsa import open_pcm
from edgevoice_testbed.sim.devices import ButtonSchedule, SimulatedCapture, SimulatedPlayback

MIC_PCM = "edgevoice_mic"
# What open_pcm gives a capture PCM by default (the reference's).
CAPTURE_PERIODS = 4
SPEAKER_PCM = "edgevoice_speaker"


class GatedCapture:
    """A :class:`SimulatedCapture` that waits for ``gate`` before its first read.

    ``on_start(t)`` is called (capture thread) when the gate opens and the microphone
    timeline starts; ``on_end(t)`` once the capture has passed ``end_position``.

    The simulated card never loses audio (a late reader just catches up); ``overruns``
    counts the reads that came so late that a real card's buffer of ``buffer_frames``
    would have overflowed meanwhile.
    """

    def __init__(
        self,
        inner: SimulatedCapture,
        gate: threading.Event,
        *,
        end_position: int,
        on_start: Callable[[float], None],
        on_end: Callable[[float], None],
        buffer_frames: int,
    ) -> None:
        self.inner = inner
        self.buffer_frames = buffer_frames
        self.overruns = 0
        self._start_t = 0.0
        self._late = False
        self._gate = gate
        self._end_position = end_position
        self._on_start = on_start
        self._on_end = on_end
        self._started = False
        self._ended = False
        self._closed = False

    def read(self) -> tuple[int, bytes]:
        if not self._started:
            self._gate.wait()
            if self._closed:
                return 0, b""
            self._started = True
            self._start_t = time.monotonic()
            self._on_start(self._start_t)
        inner = self.inner
        # The newest period a real card would hold now, against the one this read takes.
        due_t = self._start_t + (inner.position + inner.period_frames) / inner.rate
        late = time.monotonic() - due_t > (self.buffer_frames - inner.period_frames) / inner.rate
        if late and not self._late:
            self.overruns += 1
        self._late = late
        result = self.inner.read()
        if not self._ended and self.inner.position >= self._end_position:
            self._ended = True
            self._on_end(time.monotonic())
        return result

    def edge_position_now(self) -> int:
        return self.inner.edge_position_now()

    def cut_short(self) -> None:
        self.inner.cut_short()

    def close(self) -> None:
        self._closed = True
        self._gate.set()  # a thread still waiting for the start must not hang
        self.inner.close()

    def shutdown(self) -> None:
        self.close()
        self.inner.shutdown()


class BenchDevices:
    """Opens the simulated devices for one client; holds the mock pin and the gate."""

    def __init__(
        self,
        *,
        presses: list[tuple[float, float]],
        duration_s: float,
        capture_rate: int,
        capture_period: int,
        playback_rate: int,
        playback_period: int,
        playback_periods: int,
        button_pin: int,
        pull_up: bool = True,
        on_start: Callable[[float], None],
        on_end: Callable[[float], None],
        capture_periods: int = CAPTURE_PERIODS,
        capture_read_ahead: int = 0,
    ) -> None:
        from gpiozero.pins.mock import MockFactory

        self.capture_periods = capture_periods
        self.schedule = ButtonSchedule(presses, capture_rate)
        self.capture_rate = capture_rate
        self.capture_period = capture_period
        self.playback_rate = playback_rate
        self.playback_period = playback_period
        self.playback_buffer_frames = playback_period * playback_periods
        self.playback_periods = playback_periods
        self.end_position = round(duration_s * capture_rate)
        self.pin_factory = MockFactory()
        # The simulated card drains at its sample rate, like a real one.
        self.paced_playback = True
        self.paced_capture = True
        # Periods the daemon's microphone may let gather while nobody speaks (as on a device).
        self.capture_read_ahead = capture_read_ahead
        self.button_pin = button_pin
        self._pin = self.pin_factory.pin(button_pin)
        self._pull_up = pull_up
        self.gate = threading.Event()
        self._on_start = on_start
        self._on_end = on_end
        self.capture: GatedCapture | None = None
        self.playback: SimulatedPlayback | None = None

    def drive_button(self, pressed: bool) -> None:
        if pressed == self._pull_up:
            self._pin.drive_low()
        else:
            self._pin.drive_high()

    def open_capture(self) -> GatedCapture:
        pcm, _format = open_pcm(
            "capture",
            MIC_PCM,
            rate=self.capture_rate,
            channels=1,
            period_frames=self.capture_period,
            periods=self.capture_periods,
        )
        inner = SimulatedCapture(
            pcm,
            rate=self.capture_rate,
            period_frames=self.capture_period,
            schedule=self.schedule,
            drive_button=self.drive_button,
            realtime=True,
            ready_for_press=lambda _timeout: True,
        )
        self.capture = GatedCapture(
            inner,
            self.gate,
            end_position=self.end_position,
            on_start=self._on_start,
            on_end=self._on_end,
            buffer_frames=self.capture_period * self.capture_periods,
        )
        return self.capture

    def open_playback(self) -> SimulatedPlayback:
        pcm, _format = open_pcm(
            "playback",
            SPEAKER_PCM,
            rate=self.playback_rate,
            channels=1,
            period_frames=self.playback_period,
            periods=self.playback_periods,
        )
        self.playback = SimulatedPlayback(
            pcm, rate=self.playback_rate, channels=1, buffer_frames=self.playback_buffer_frames, paced=True
        )
        return self.playback

    def shutdown(self) -> None:
        """Close the PCMs (a client's close() leaves simulated devices open for a restart)."""
        for device in (self.capture, self.playback):
            if device is not None:
                device.shutdown()

    def edge_position(self) -> int:
        assert self.capture is not None
        return self.capture.edge_position_now()


def counters(obj: Any, names: tuple[str, ...]) -> dict[str, int]:
    """The integer attributes ``names`` of ``obj`` that exist (for the worker's report)."""
    return {name: int(getattr(obj, name)) for name in names if hasattr(obj, name)}

"""The daemon's hardware seam: how it opens its sound card and reaches its pins.

In the gpiozero manner, the daemon is handed a small :class:`Devices` object and never
asks how the hardware is made. :class:`AlsaDevices` is the production one and the only
place that turns ``[audio]`` settings into opened PCMs; stand-ins for tests and the
simulator subclass it (so they open the same real libasound PCMs the same way) and put
their own clock between the card and the daemon through :meth:`AlsaDevices.wrap_capture`
and :meth:`AlsaDevices.wrap_playback`.
"""

from __future__ import annotations

from typing import Protocol

from edgevoice.audio.alsa import CaptureDevice, OpenedFormat, PlaybackDevice
from edgevoice.audio.capture import READ_AHEAD_ROOM_PERIODS
from edgevoice.audio.devices import open_capture as open_capture_device
from edgevoice.audio.devices import open_playback as open_playback_device
from edgevoice.config import AudioSettings

CAPTURE_RATE = 16000
PLAYBACK_RATE = 24000

# Four periods in the card, written two at a time while an answer plays: the speaker
# thread wakes 25 times a second instead of 50, with 40-80 ms queued to ride scheduling
# jitter. A barge-in drops what the card holds, so its depth costs no latency there, and
# an answer's first period is written alone, into an empty card.
PLAYBACK_PERIODS = 4
PLAYBACK_WRITE_PERIODS = 2

# A capture buffer adds no latency (a period is read as soon as it is complete), so it can
# be long: while nobody speaks the microphone lets it gather CAPTURE_READ_AHEAD periods
# (560 ms) and reads them in one go, with four periods of room to spare (fewer on a card
# that grants a smaller buffer: the microphone fits the read-ahead to what the card holds).
# A press still gets its own sample: the microphone reads what the card holds first. 32
# periods rather than 16 halved the idle wake-ups (capture 7.7 -> 3.5 a second, the loop
# 4.6 -> 2.5).
CAPTURE_PERIODS = 32
CAPTURE_READ_AHEAD = CAPTURE_PERIODS - READ_AHEAD_ROOM_PERIODS


class Devices(Protocol):
    """What the daemon needs from its hardware."""

    # gpiozero pin factory for the button and LED; None: gpiozero's default (the board's).
    pin_factory: object | None
    # False for a sink that plays instantly (a simulation): never feed it invented silence.
    paced_playback: bool
    # Periods the capture card may gather while nobody speaks (see Microphone); 0: off.
    capture_read_ahead: int
    # False for a simulated microphone that runs ahead of the clock on purpose; a real
    # device that does not block is read at the clock's pace.
    paced_capture: bool

    @property
    def playback_buffer_frames(self) -> int: ...

    def open_capture(self) -> CaptureDevice: ...

    def open_playback(self) -> PlaybackDevice: ...

    def edge_position(self) -> int | None:
        """The exact capture sample of the button edge being handled now, when the hardware
        knows it (a simulation does); None: the capture clock says."""
        ...


class AlsaDevices:
    """The board's sound card(s), opened at whatever format they accept, and its GPIO pins."""

    paced_playback = True
    paced_capture = True
    capture_read_ahead = CAPTURE_READ_AHEAD

    def __init__(self, audio: AudioSettings, pin_factory: object | None = None) -> None:
        self.audio = audio
        self.pin_factory = pin_factory

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(capture={self.audio.capture_device!r}, "
            f"playback={self.audio.playback_device!r})"
        )

    @property
    def capture_period_frames(self) -> int:
        return CAPTURE_RATE * self.audio.period_ms // 1000

    @property
    def playback_period_frames(self) -> int:
        return PLAYBACK_RATE * self.audio.period_ms // 1000

    @property
    def playback_buffer_frames(self) -> int:
        return self.playback_period_frames * PLAYBACK_PERIODS

    def open_capture(self) -> CaptureDevice:
        audio = self.audio
        device, opened = open_capture_device(
            audio.capture_device,
            rate=CAPTURE_RATE,
            period_ms=audio.period_ms,
            device_rate=audio.capture_device_rate,
            device_channels=audio.capture_device_channels,
            channel=audio.capture_channel,
            periods=CAPTURE_PERIODS,
        )
        return self.wrap_capture(device, opened)

    def open_playback(self) -> PlaybackDevice:
        audio = self.audio
        device, _opened = open_playback_device(
            audio.playback_device,
            rate=PLAYBACK_RATE,
            period_ms=audio.period_ms,
            periods=PLAYBACK_PERIODS,
            device_rate=audio.playback_device_rate,
            device_channels=audio.playback_device_channels,
            wrap=self.wrap_playback,
        )
        return device

    def wrap_capture(self, device: CaptureDevice, opened: OpenedFormat) -> CaptureDevice:
        """What the daemon reads from, given the opened (and converted) capture PCM."""
        return device

    def wrap_playback(self, pcm: PlaybackDevice, opened: OpenedFormat) -> PlaybackDevice:
        """What sits between the converter and the card (the card's own format)."""
        return pcm

    def edge_position(self) -> int | None:
        return None


__all__ = [
    "CAPTURE_PERIODS",
    "CAPTURE_RATE",
    "CAPTURE_READ_AHEAD",
    "PLAYBACK_PERIODS",
    "PLAYBACK_RATE",
    "PLAYBACK_WRITE_PERIODS",
    "AlsaDevices",
    "Devices",
]

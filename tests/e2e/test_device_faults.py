"""Overruns, underruns and an unplugged card, through the real libasound.

The card is the fussy simulated one (an ALSA I/O plugin under the file plugin), paced by
the clock like real hardware: a late reader really overruns (read() == -EPIPE), a writer
that lets it run dry really underruns (write() == -EPIPE), and while the "unplugged" file
exists every call fails with ENODEV, as a USB card pulled out does.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.alsa import CaptureDevice, OpenedFormat, PlaybackDevice
from edgevoice.core.events import DeviceState
from edgevoice.service.daemon import Daemon, no_tools
from edgevoice.service.devices import AlsaDevices
from edgevoice_testbed.sim.fussy import to_device_format
from tests.support.card_daemon import credentials, settings_for_card, use_simulated_card
from tests.support.daemon_watch import Watch


class LateOnce:
    """A capture device whose reader is late once (a stalled consumer): the card overruns."""

    def __init__(self, device: CaptureDevice) -> None:
        self._device = device
        self.be_late = threading.Event()

    def read(self) -> tuple[int, bytes]:
        if self.be_late.is_set():
            self.be_late.clear()
            threading.Event().wait(0.3)  # the late reader itself: longer than the card's buffer
        return self._device.read()

    def cut_short(self) -> None:
        self._device.cut_short()

    def close(self) -> None:
        self._device.close()


class CardWithALateReader(AlsaDevices):
    """The production way of opening the card, with a reader that can be made late."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.microphones: list[LateOnce] = []
        self.speakers: list[PlaybackDevice] = []

    def wrap_capture(self, device: CaptureDevice, opened: OpenedFormat) -> CaptureDevice:
        self.microphones.append(LateOnce(device))
        return self.microphones[-1]

    def open_playback(self) -> PlaybackDevice:
        self.speakers.append(super().open_playback())
        return self.speakers[-1]


async def test_overrun_underrun_and_unplugged_card(tmp_path: Path, emulator_factory, monkeypatch) -> None:
    mic = np.random.default_rng(4).integers(-6000, 6000, 16000 * 120).astype("<i2").tobytes()
    unplugged = tmp_path / "unplugged"
    use_simulated_card(
        tmp_path,
        monkeypatch,
        to_device_format(mic, 16000, 48000, 2),
        capture_rate=48000,
        capture_channels=2,
        playback_rate=48000,
        paced=True,
        unplug_file=unplugged,
    )
    emulator = await emulator_factory(
        pace=4.0, default={"input_transcript": "hello", "reply": "Hello there."}
    )
    settings = settings_for_card(tmp_path, emulator)
    pins = MockFactory()
    card = CardWithALateReader(settings.audio, pin_factory=pins)
    microphones, speakers = card.microphones, card.speakers

    daemon = Daemon(settings, card, credentials=credentials, tools=no_tools)
    watch = Watch(daemon)
    button = pins.pin(17)
    task = asyncio.create_task(daemon.run())

    def status() -> DeviceState | None:
        return daemon.conversation.status.state if daemon.conversation.status else None

    async def ask_and_wait_for_answer(answers: int) -> None:
        button.drive_low()
        start = daemon.microphone.frames_delivered
        await watch.until(lambda: daemon.microphone.frames_delivered >= start + 25)
        button.drive_high()
        await watch.until(lambda: len([r for r in emulator.replies if r.finished]) >= answers)
        await watch.until(lambda: status() == DeviceState.IDLE)

    try:
        await watch.until(lambda: daemon.conversation.link_up and status() == DeviceState.IDLE)
        await ask_and_wait_for_answer(1)

        # A late reader: the card overruns, the microphone counts it and carries on.
        microphones[-1].be_late.set()
        await watch.until(lambda: daemon.microphone.overruns >= 1)
        delivered = daemon.microphone.frames_delivered
        await watch.until(lambda: daemon.microphone.frames_delivered > delivered + 10)

        # The answer after a quiet spell: the card had run dry, the first write underran.
        await ask_and_wait_for_answer(2)
        assert sum(s.underruns for s in speakers) >= 1

        # Unplugged: both devices fail, the status says so, and the daemon keeps trying.
        unplugged.touch()
        await watch.until(lambda: status() == DeviceState.ERROR)
        assert (
            "microphone" in daemon.conversation.status.detail
            or "speaker" in daemon.conversation.status.detail
        )
        opened = len(microphones)
        unplugged.unlink()
        await watch.until(lambda: status() == DeviceState.IDLE and len(microphones) > opened, within=20)
        assert daemon.microphone.reopens >= 1

        # The conversation resumes on the returned card.
        await ask_and_wait_for_answer(3)
        assert emulator.utterances[-1].complete
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)

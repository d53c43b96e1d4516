"""The daemon's answers on speakers whose cards grant their own buffer and period.

Drivers have limits, and libasound gives the nearest buffer and period a card allows,
not the ones the daemon asks for (80 ms in 20 ms periods). The card here is the fussy
simulated one under the real libasound and pyalsaaudio, paced by the clock: whatever it
grants, the answer must come out whole, in order and without a gap.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.alsa import PlaybackDevice
from edgevoice.core.events import DeviceState
from edgevoice.service.daemon import Daemon, no_tools
from edgevoice.service.devices import AlsaDevices
from tests.support.card_daemon import credentials, settings_for_card, use_simulated_card
from tests.support.daemon_watch import Watch

PERIOD_BYTES = 480 * 2  # 20 ms at 24 kHz mono


class KeptSpeakers(AlsaDevices):
    """The production card, with the opened speakers kept for their counters."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.speakers: list[PlaybackDevice] = []

    def open_playback(self) -> PlaybackDevice:
        self.speakers.append(super().open_playback())
        return self.speakers[-1]


@pytest.mark.parametrize(
    ("card", "granted_frames"),
    [
        ({}, 4 * 480),
        ({"playback_buffer_bytes": (16 * PERIOD_BYTES, 1 << 22)}, 16 * 480),
        ({"playback_period_bytes": (2048, 1 << 20)}, None),
    ],
    ids=["the buffer asked for", "a card that grants 16 periods", "a card whose periods are 43 ms"],
)
async def test_an_answer_plays_whole_on_the_buffer_and_period_the_card_grants(
    tmp_path: Path, emulator_factory, monkeypatch, card: dict[str, object], granted_frames: int | None
) -> None:
    speaker_file = use_simulated_card(tmp_path, monkeypatch, bytes(2 * 16000 * 30), paced=True, **card)
    emulator = await emulator_factory(
        pace=4.0, default={"input_transcript": "hello", "reply": "Here is an answer of a few words."}
    )
    settings = settings_for_card(tmp_path, emulator)
    pins = MockFactory()
    devices = KeptSpeakers(settings.audio, pin_factory=pins)
    daemon = Daemon(settings, devices, credentials=credentials, tools=no_tools)
    watch = Watch(daemon)
    button = pins.pin(17)
    task = asyncio.create_task(daemon.run())

    def idle() -> bool:
        status = daemon.conversation.status
        return status is not None and status.state == DeviceState.IDLE

    try:
        await watch.until(lambda: daemon.conversation.link_up and idle())
        button.drive_low()
        start = daemon.microphone.frames_delivered
        await watch.until(lambda: daemon.microphone.frames_delivered >= start + 10)
        button.drive_high()
        await watch.until(lambda: bool(emulator.replies) and emulator.replies[-1].finished)
        await watch.until(idle)
        speaker = daemon.speaker
        counted_on = speaker.buffer_frames
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)

    [speaker_device] = devices.speakers
    if granted_frames is not None:
        assert counted_on == granted_frames
    # Every sample of the answer, in order, and nothing between them: a gap would have
    # put silence in the card, a misjudged buffer lost or repeated audio.
    assert speaker_file.read_bytes() == emulator.replies[-1].audio
    assert speaker_device.underruns == 0  # type: ignore[attr-defined]

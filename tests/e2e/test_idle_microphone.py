"""The daemon's microphone while nobody speaks, on a card paced like real hardware.

While idle the microphone lets periods gather in the card and reads them together. The
card here is the fussy simulated one (the real libasound and pyalsaaudio, paced by the
clock, a level-triggered poll as a kernel PCM has): the daemon idles through several
stretches, then someone presses and speaks, and the service must receive the
microphone's samples exactly, nothing lost to an overrun. Also on a card whose periods
are longer than the daemon asks for, as many drivers' are.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edgevoice.core.events import DeviceState
from edgevoice.service.daemon import Daemon, no_tools
from edgevoice.service.devices import CAPTURE_READ_AHEAD, AlsaDevices
from tests.support.card_daemon import credentials, settings_for_card, use_simulated_card
from tests.support.daemon_watch import Watch

PERIOD_BYTES = 320 * 2  # 20 ms at 16 kHz mono


@pytest.mark.parametrize(
    ("card", "read_ahead"),
    [
        ({}, CAPTURE_READ_AHEAD),
        # Many USB and I2S drivers have a least period: this one's is 64 ms, not 20.
        ({"capture_period_bytes": (2048, 1 << 20)}, CAPTURE_READ_AHEAD),
    ],
    # A card too small to read ahead (under 160 ms) is tests/audio/test_granted_buffers.py's:
    # here, beside the whole daemon on a loaded machine, 120 ms is not always enough room
    # for a thread without real-time scheduling (one overrun in two CI runs).
    ids=["the buffer asked for", "a card whose periods are 64 ms"],
)
async def test_an_utterance_after_an_idle_spell_is_the_microphone_sample_for_sample(
    tmp_path: Path, emulator_factory, monkeypatch, card: dict[str, object], read_ahead: int
) -> None:
    # Noise: any sample lost, repeated or moved shows in the comparison.
    mic = np.random.default_rng(7).integers(-8000, 8000, 16000 * 60).astype("<i2").tobytes()
    use_simulated_card(tmp_path, monkeypatch, mic, paced=True, **card)
    emulator = await emulator_factory(
        pace=4.0, default={"input_transcript": "hello", "reply": "Hello there."}
    )
    settings = settings_for_card(tmp_path, emulator)
    pins = MockFactory()
    devices = AlsaDevices(settings.audio, pin_factory=pins)
    daemon = Daemon(settings, devices, credentials=credentials, tools=no_tools)
    watch = Watch(daemon)
    button = pins.pin(17)
    task = asyncio.create_task(daemon.run())
    try:
        await watch.until(
            lambda: daemon.conversation.link_up
            and daemon.conversation.status is not None
            and daemon.conversation.status.state == DeviceState.IDLE
        )
        microphone = daemon.microphone
        assert microphone.read_ahead_now == read_ahead
        # Idle through several stretches of read-ahead.
        start = microphone.frames_delivered
        await watch.until(lambda: microphone.frames_delivered >= start + 3 * max(read_ahead, 2) + 10)

        button.drive_low()
        start = microphone.frames_delivered
        await watch.until(lambda: microphone.frames_delivered >= start + 25)
        button.drive_high()
        await watch.until(lambda: bool(emulator.utterances) and emulator.utterances[-1].complete)
        heard = emulator.utterances[-1].audio
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)

    assert microphone.overruns == 0
    # The pre-roll and the held button's audio: one unbroken stretch of the microphone.
    assert len(heard) >= 25 * PERIOD_BYTES
    offset = mic.find(heard)
    assert offset >= 0 and offset % 2 == 0, "the service got audio the microphone never gave in that order"

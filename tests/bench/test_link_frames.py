"""The link's own frames carry an utterance to the server intact, and the probe times them
(that the frames are byte for byte the SDK's is guarded in tests/live/test_sdk.py)."""

from __future__ import annotations

import asyncio
import os

from edgevoice.config import LiveSettings
from edgevoice.core.events import Connect, LinkUp, SendActivityEnd, SendActivityStart, SendAudio
from edgevoice.live.link import LiveLink
from edgevoice_testbed.bench.probe import Probe
from edgevoice_testbed.emulator import Emulator, Scenario


async def test_an_utterance_sent_by_the_link_reaches_the_server_intact():
    events: list[object] = []
    up = asyncio.Event()

    def post(event: object) -> None:
        events.append(event)
        if isinstance(event, LinkUp):
            up.set()

    async def credentials() -> str:
        return "test-key"

    pcm = [os.urandom(640) for _ in range(3)]
    async with Emulator(Scenario.model_validate({"voice": "tone", "pace": "fast"})) as emulator:
        probe = Probe()
        link = LiveLink(
            LiveSettings(base_url=emulator.base_url),
            credentials=credentials,
            post=post,
            ssl_context=emulator.client_ssl_context(),
            metrics=probe,
        )
        task = asyncio.create_task(link.run())
        link.connect(Connect(1, None))
        await asyncio.wait_for(up.wait(), 10)
        link.send(SendActivityStart(1, 1))
        for period, frame in enumerate(pcm):
            # The capture side's report of each period, as the daemon makes it.
            probe.audio_captured(period * 320, (period + 1) * 320, 0.0)
            link.send(SendAudio(1, frame, period * 320))
        probe.released(0.0)
        link.send(SendActivityEnd(1, 1))
        await emulator.wait_for(lambda e: bool(e.utterances) and e.utterances[0].complete)
        await link.shutdown()
        await asyncio.wait_for(task, 10)
        utterance = emulator.utterances[0]
        assert utterance.audio == b"".join(pcm)
        assert utterance.rate == 16000
        # The link reported each frame by its capture positions: each met its period.
        assert len(probe.series["capture_to_wire_ms"]) == 3
        assert len(probe.series["release_to_activity_end_ms"]) == 1
        assert not emulator.errors

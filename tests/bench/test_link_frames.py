"""The Live link writes audio and activity frames itself: they must stay the SDK's frames
(the same guard lives in tests/live/test_sdk.py; this one also checks the probe's figures)."""

from __future__ import annotations

import asyncio
import os

import pytest
from google.genai import live, types

from edgevoice.config import LiveSettings
from edgevoice.core.events import Connect, LinkUp, SendActivityEnd, SendActivityStart, SendAudio
from edgevoice.live import sdk
from edgevoice.live.link import ACTIVITY_END_FRAME, ACTIVITY_START_FRAME, LiveLink, audio_frame
from edgevoice.live.sdk import INPUT_MIME
from edgevoice_testbed.bench.probe import Probe
from edgevoice_testbed.emulator import Emulator, Scenario


class RecordingSocket:
    """The far end of the SDK's websocket: keeps every frame written to it."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send(self, frame: str) -> None:
        self.frames.append(frame)


class _Client:
    vertexai = False


def sdk_frames(**kwargs: object) -> str:
    socket = RecordingSocket()
    session = live.AsyncSession(api_client=_Client(), websocket=socket)
    asyncio.run(session.send_realtime_input(**kwargs))
    return socket.frames[0]


def test_the_audio_frame_is_byte_for_byte_the_sdks():
    for size in (0, 1, 2, 640, 641, 9600):
        pcm = os.urandom(size)
        assert audio_frame(pcm) == sdk_frames(audio=types.Blob(data=pcm, mime_type=INPUT_MIME))


def test_activity_frames_are_the_sdks():
    assert sdk_frames(activity_start=types.ActivityStart()) == ACTIVITY_START_FRAME
    assert sdk_frames(activity_end=types.ActivityEnd()) == ACTIVITY_END_FRAME


def test_the_sdk_session_keeps_its_websocket_where_the_link_writes():
    socket = RecordingSocket()
    session = live.AsyncSession(api_client=_Client(), websocket=socket)
    assert session._ws is socket


def test_an_sdk_whose_session_lost_its_websocket_attribute_is_refused_loudly():
    class Session:
        def __init__(self, api_client: object, websocket: object) -> None:
            self.websocket = websocket

    class ChangedLive:
        ws_connect = live.ws_connect
        AsyncSession = Session

    with pytest.raises(sdk.SdkMismatch, match=r"google-genai 9\.9\.9 .*_ws"):
        sdk.check_sdk(ChangedLive, "9.9.9")


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
        for frame in pcm:
            link.send(SendAudio(1, frame, 0.0))
        link.send(SendActivityEnd(1, 1, 0.0))
        await emulator.wait_for(lambda e: bool(e.utterances) and e.utterances[0].complete)
        await link.shutdown()
        await asyncio.wait_for(task, 10)
        utterance = emulator.utterances[0]
        assert utterance.audio == b"".join(pcm)
        assert utterance.rate == 16000
        assert len(probe.series["capture_to_wire_ms"]) == 3
        assert len(probe.series["release_to_activity_end_ms"]) == 1
        assert not emulator.errors

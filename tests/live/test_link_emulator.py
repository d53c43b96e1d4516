"""LiveLink against the emulator (real SDK, real TLS): a whole turn with a NON_BLOCKING call,
a resumption handle, a GoAway and a close, as events the core can act on."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from edgevoice.config import LiveSettings
from edgevoice.core.events import (
    Connect,
    DownCause,
    GoAway,
    LinkDown,
    LinkUp,
    ResumptionUpdate,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendToolResponses,
    ServerAudio,
    ToolCallsReceived,
    ToolResult,
    TurnComplete,
)
from edgevoice.live.link import LiveLink
from edgevoice_testbed.emulator import Emulator, Scenario
from tests.live.test_link import TIMEOUT, Events

SET_LIGHT = {
    "name": "set_light",
    "description": "Switch a light.",
    "parameters": {
        "type": "OBJECT",
        "properties": {"entity": {"type": "STRING"}, "on": {"type": "BOOLEAN"}},
        "required": ["entity"],
    },
}
LIGHT_TURN = {
    "input_transcript": "Turn on the kitchen light",
    "reply": "Okay, turning on the kitchen light.",
    "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    "follow_up": "The kitchen light is on.",
}


def scenario(**fields: Any) -> Scenario:
    return Scenario.model_validate({"voice": "tone", "pace": "fast", **fields})


async def credentials() -> str:
    return "test-key"


async def start(emulator: Emulator, events: Events, **live: Any) -> tuple[LiveLink, asyncio.Task[None]]:
    link = LiveLink(
        LiveSettings(base_url=emulator.base_url, **live),
        credentials=credentials,
        post=events.post,
        function_declarations=[SET_LIGHT],
        ssl_context=emulator.client_ssl_context(),
    )
    task = asyncio.create_task(link.run())
    link.connect(Connect(1, None))
    await events.first(LinkUp)
    return link, task


def speak(link: LiveLink, frames: int = 5) -> None:
    link.send(SendActivityStart(1, 1))
    for _ in range(frames):
        link.send(SendAudio(1, os.urandom(640), 0))
    link.send(SendActivityEnd(1, 1))


@pytest.mark.parametrize("model", ["gemini-3.8-live", "gemini-2.5-flash-native-audio-preview-12-2025"])
async def test_a_turn_with_a_non_blocking_call(model):
    events = Events()
    async with Emulator(scenario(turns=[LIGHT_TURN])) as emulator:
        link, task = await start(emulator, events, model=model)
        speak(link)
        received = await events.first(ToolCallsReceived)
        (call,) = received.calls
        assert (call.name, call.args) == ("set_light", {"entity": "kitchen light", "on": True})
        await events.first(TurnComplete)
        # Each audio chunk is numbered in the order received: how the speaker names it.
        chunks = [audio.chunk for audio in events.of(ServerAudio)]
        assert chunks == list(range(1, len(chunks) + 1)) and chunks
        link.send(SendToolResponses(1, (ToolResult(call.id, call.name, {"ok": True}, "WHEN_IDLE", 0.0),)))
        await emulator.wait_for(lambda e: bool(e.tool_responses))
        await events.first(ResumptionUpdate, lambda u: u.resumable and u.handle)
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)
        (response,) = emulator.tool_responses
        assert (response.id, response.known, response.scheduling) == (call.id, True, "WHEN_IDLE")
        setup = emulator.connections[0].setup
        assert not emulator.errors
    (declaration,) = setup["tools"][0]["functionDeclarations"]
    assert declaration["behavior"] == "NON_BLOCKING"


async def test_goaway_then_close_are_reported_as_they_happen():
    events = Events()
    async with Emulator(scenario()) as emulator:
        link, task = await start(emulator, events)
        emulator.inject_fault("goaway:1")
        goaway = await events.first(GoAway)
        assert goaway.time_left_s == 1.0
        down = await events.first(LinkDown)
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)
    assert (down.code, down.cause) == (1011, DownCause.LOST)


async def test_a_dropped_tcp_connection_is_1006_and_lost():
    events = Events()
    async with Emulator(scenario()) as emulator:
        link, task = await start(emulator, events)
        emulator.inject_fault("drop")
        down = await events.first(LinkDown)
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)
    assert (down.code, down.cause) == (1006, DownCause.LOST)

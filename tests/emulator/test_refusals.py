"""What the real service refuses, refused the same way: a raw websocket client (not the
SDK, which would not send some of these) asserts each close code and reason."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edgevoice_testbed.emulator import Emulator
from tests.emulator.helpers import FRAME, b64, scenario

pytestmark = pytest.mark.asyncio
TEST_TIMEOUT = 20
MODEL_2_5 = "models/gemini-2.5-flash-native-audio-preview-12-2025"
MODEL_3_8 = "models/gemini-3.8-live"
MODEL_3_1 = "models/gemini-3.1-flash-live-preview"
INVALID_ARGUMENT = "Request contains an invalid argument."
NOT_SUPPORTED = "Operation is not implemented, or supported, or enabled."
MANUAL = {"automaticActivityDetection": {"disabled": True}}
LIGHT = {"name": "set_light", "args": {"entity": "kitchen"}}


def url_of(emu: Emulator, version: str = "v1beta") -> str:
    return (emu.base_url.replace("https", "wss") + f"/ws/google.ai.generativelanguage."
            f"{version}.GenerativeService.BidiGenerateContent")


async def open_raw(emu: Emulator, setup: dict[str, Any]) -> ClientConnection:
    ws = await ws_connect(url_of(emu), ssl=emu.client_ssl_context(),
                          additional_headers={"x-goog-api-key": "k"})
    await ws.send(json.dumps({"setup": setup}))
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            await ws.recv()
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def until(ws: ClientConnection, key: str, inner: str | None = None) -> list[dict[str, Any]]:
    messages = []
    while True:
        message = json.loads(await ws.recv())
        messages.append(message)
        if key in message and (inner is None or message[key].get(inner)):
            return messages


def audio() -> str:
    return json.dumps({"realtimeInput": {"audio": {"data": b64(FRAME),
                                                   "mimeType": "audio/pcm;rate=16000"}}})


@pytest.mark.parametrize(("setup", "name", "path"), [
    ({"model": MODEL_3_8, "colour": "blue"}, "colour", "setup"),
    ({"model": MODEL_3_8, "generationConfig": {"responseModalities": ["AUDIO"], "vibe": 1}},
     "vibe", "setup.generation_config"),
    ({"model": MODEL_3_8, "realtime_input_config": {"automatic_activity_detection": {
        "disabled": False, "padding_ms": 5}}},
     "paddingMs", "setup.realtime_input_config.automatic_activity_detection"),
])
async def test_an_unknown_setup_field_closes_1007_naming_it(setup, name, path):
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, setup)
        code, reason = await closed_with(ws)
    full = f"Invalid JSON payload received. Unknown name \"{name}\" at '{path}': Cannot find field."
    # A close frame carries at most 123 bytes of reason; a long path is cut.
    assert (code, reason) == (1007, full.encode()[:123].decode())
    assert f'"{name}"' in reason
    assert not emu.connections[0].accepted


async def test_a_model_google_does_not_serve_closes_1008_not_found():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": "models/gemini-2.0-flash-live-001"})
        code, reason = await closed_with(ws)
    assert code == 1008
    assert reason == ("models/gemini-2.0-flash-live-001 is not found for API version v1beta, "
                      "or is not supported for bidiGenerateContent")


async def test_a_scenario_can_add_a_model_id_mapped_to_a_family():
    sc = scenario(models={"my-tuned-live": "gemini-3.1-flash-live"})
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        ws = await open_raw(emu, {"model": "models/my-tuned-live"})
        assert "setupComplete" in json.loads(await ws.recv())
        await ws.close()
    assert emu.connections[0].family == "gemini-3.1-flash-live"


@pytest.mark.parametrize(("extra", "field"), [
    ({"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
     "generation_config.thinking_config"),
    ({"generationConfig": {"enableAffectiveDialog": True}},
     "generation_config.enable_affective_dialog"),
    ({"proactivity": {"proactiveAudio": False}}, "proactivity.proactive_audio=false"),
    ({"generationConfig": {"responseModalities": ["TEXT"]}}, "response_modalities TEXT"),
])
async def test_fields_3_8_refuses_close_1007(extra, field):
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_8, **extra})
        code, reason = await closed_with(ws)
    assert (code, reason) == (
        1007, f"{INVALID_ARGUMENT} {field} is not supported by {MODEL_3_8}.")


async def test_the_same_fields_pass_on_2_5():
    setup = {"model": MODEL_2_5, "generationConfig": {
        "thinkingConfig": {"thinkingBudget": 0}, "enableAffectiveDialog": True,
        "responseModalities": ["TEXT"]}, "proactivity": {"proactiveAudio": False}}
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, setup)
        assert "setupComplete" in json.loads(await ws.recv())
        await ws.close()


async def test_audio_before_activity_start_under_manual_detection_closes_1007():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_8, "realtimeInputConfig": MANUAL})
        assert "setupComplete" in json.loads(await ws.recv())
        await ws.send(audio())
        assert await closed_with(ws) == (1007, INVALID_ARGUMENT)
    assert emu.connections[0].stray_audio_frames == 1


async def test_activity_signals_with_automatic_detection_on_close_1007():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_8})
        assert "setupComplete" in json.loads(await ws.recv())
        await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        code, _reason = await closed_with(ws)
    assert code == 1007


async def test_realtime_input_during_a_synchronous_call_closes_1008_on_2_5():
    sc = scenario(turns=[{"reply": "done", "tool_calls": [LIGHT]}])
    setup = {"model": MODEL_2_5, "realtimeInputConfig": MANUAL,
             "tools": [{"functionDeclarations": [{"name": "set_light"}]}]}  # BLOCKING by default
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        ws = await open_raw(emu, setup)
        for key in ("activityStart", None, "activityEnd"):
            await ws.send(json.dumps({"realtimeInput": {key: {}}}) if key else audio())
        messages = await until(ws, "toolCall")
        # The reply waits for the synchronous call: nothing was said yet.
        assert not any("modelTurn" in m.get("serverContent", {}) for m in messages)
        await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        assert await closed_with(ws) == (1008, NOT_SUPPORTED)


async def test_realtime_input_during_a_synchronous_call_cancels_it_on_3_8():
    sc = scenario(turns=[{"reply": "done", "tool_calls": [LIGHT]}])
    setup = {"model": MODEL_3_8, "realtimeInputConfig": MANUAL,
             "tools": [{"functionDeclarations": [{"name": "set_light", "behavior": "BLOCKING"}]}]}
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        ws = await open_raw(emu, setup)
        for key in ("activityStart", None, "activityEnd"):
            await ws.send(json.dumps({"realtimeInput": {key: {}}}) if key else audio())
        call = (await until(ws, "toolCall"))[-1]["toolCall"]["functionCalls"][0]
        await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
        cancelled = (await until(ws, "toolCallCancellation"))[-1]
        assert cancelled["toolCallCancellation"]["ids"] == [call["id"]]
        await ws.close()


async def test_client_content_after_the_first_model_turn_closes_1007_on_3_1():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_1, "realtimeInputConfig": MANUAL})
        assert "setupComplete" in json.loads(await ws.recv())
        content = {"clientContent": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                                     "turnComplete": True}}
        await ws.send(json.dumps(content))  # before any model turn: taken
        messages = await until(ws, "serverContent", "turnComplete")
        assert not any("usageMetadata" in m for m in messages)  # 3.1 sends none
        await ws.send(json.dumps(content))
        assert await closed_with(ws) == (1007, INVALID_ARGUMENT)


async def test_every_server_message_is_a_binary_frame():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_8, "realtimeInputConfig": MANUAL})
        frames = [await ws.recv(decode=False)]
        for key in ("activityStart", None, "activityEnd"):
            await ws.send(json.dumps({"realtimeInput": {key: {}}}) if key else audio())
        while b"turnComplete" not in frames[-1]:
            frames.append(await ws.recv(decode=False))
        await ws.close()
    assert all(isinstance(frame, bytes) for frame in frames)
    assert emu.sent[0].raw == frames[0].decode()


async def test_quota_answers_the_upgrade_with_429():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(faults=["quota:60"])) as emu:
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(url_of(emu), ssl=emu.client_ssl_context())
    assert refused.value.response.status_code == 429
    assert b"RESOURCE_EXHAUSTED" in refused.value.response.body


async def test_slow_pongs_come_as_late_as_asked():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(pong_delay_s=1.0)) as emu:
        ws = await open_raw(emu, {"model": MODEL_3_8})
        await ws.recv()
        started = time.monotonic()
        await (await ws.ping())
        assert time.monotonic() - started >= 1.0
        await ws.close()

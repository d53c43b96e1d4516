"""The emulator against the real google-genai SDK over real TLS websockets.

Every test here is also a fact about the SDK the daemon relies on (what it sends, what it
raises); the fault tests double as the table of SDK exceptions per fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import ssl

import pytest
import websockets
from google import genai
from google.genai import errors, types
from websockets.asyncio.client import connect as ws_connect

from edgevoice_testbed.emulator import Emulator, OffsetClock
from edgevoice_testbed.emulator.voice import ToneVoice
from tests.emulator.helpers import (
    FRAME,
    MODEL,
    TEST_KEY,
    audio_of,
    b64,
    client_for,
    handles_of,
    live_config,
    receive_turn,
    receive_until,
    scenario,
    speak,
    transcript_of,
)

pytestmark = pytest.mark.asyncio
TEST_TIMEOUT = 30
LONG_REPLY = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"] * 6)
LIGHT_TURN = {
    "input_transcript": "Turn on the kitchen light",
    "reply": "Okay, turning on the kitchen light.",
    "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    "follow_up": "The kitchen light is on.",
}


def is_handle(message: types.LiveServerMessage) -> bool:
    update = message.session_resumption_update
    return bool(update and update.resumable and update.new_handle)


# --- connection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api_version", [None, "v1beta", "v1alpha"])
async def test_sdk_connects_over_tls_and_its_setup_is_recorded(api_version):
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = client_for(emu, api_version=api_version)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            messages = await receive_until(session, is_handle)
        record = emu.connections[0]
        assert record.accepted and record.api_version == (api_version or "v1")
        assert record.model == f"models/{MODEL}"
        assert record.setup["realtimeInputConfig"]["automaticActivityDetection"] == {"disabled": True}
        declaration = record.setup["tools"][0]["functionDeclarations"][0]
        assert (declaration["name"], declaration["behavior"]) == ("set_light", "NON_BLOCKING")
        assert "inputAudioTranscription" in record.setup
        assert "contextWindowCompression" in record.setup
        assert record.api_key_present
        assert record.api_key_fingerprint == hashlib.sha256(TEST_KEY.encode()).hexdigest()[:8]
        recorded = repr(emu.connections) + repr(emu.received) + repr(emu.sent)
        assert TEST_KEY not in recorded
        assert len(handles_of(messages)) == 1
        await emu.wait_for(lambda e: e.connections[0].closed_t is not None)
        assert (record.closed_by, record.close_code) == ("client", 1000)


@pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")
async def test_an_ephemeral_token_uses_the_constrained_method():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = genai.Client(
            api_key="auth_tokens/ephemeral-1",
            http_options=types.HttpOptions(
                base_url=emu.base_url,
                api_version="v1alpha",
                async_client_args={"ssl": emu.client_ssl_context()},
            ),
        )
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await receive_until(session, is_handle)
        record = emu.connections[0]
        assert (record.method, record.auth_scheme, record.accepted) == (
            "BidiGenerateContentConstrained",
            "token",
            True,
        )
        assert "ephemeral-1" not in repr(record)


async def test_an_utterance_is_answered_like_the_live_api():
    reply = "Okay, turning on the kitchen light."
    turns = [{"input_transcript": "Turn on the kitchen light", "reply": reply}]
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(turns=turns)) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await receive_until(session, is_handle)
            await speak(session, frames=5)
            messages = await receive_turn(session)
            after = await receive_until(session, lambda m: m.session_resumption_update)
        contents = [m.server_content for m in messages if m.server_content]
        assert contents[0].input_transcription.text == "Turn on the kitchen light"
        parts = [p for c in contents if c.model_turn for p in c.model_turn.parts]
        assert {p.inline_data.mime_type for p in parts} == {"audio/pcm;rate=24000"}
        assert audio_of(messages) == emu.replies[0].audio == ToneVoice().render(reply)
        assert transcript_of(messages) == reply
        flags = [
            ("generation" if c.generation_complete else "turn")
            for c in contents
            if c.generation_complete or c.turn_complete
        ]
        assert flags == ["generation", "turn"]
        assert messages[-1].server_content.turn_complete
        assert messages[-1].usage_metadata.total_token_count > 0
        assert is_handle(after[-1])
        utterance = emu.utterances[0]
        assert (utterance.audio, utterance.rate, utterance.frames) == (FRAME * 5, 16000, 5)


async def test_barge_in_interrupts_the_reply():
    sc = scenario(
        pace=1.0, chunk_ms=100, turns=[{"reply": LONG_REPLY}, {"input_transcript": "stop", "reply": "ok"}]
    )
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            await receive_until(session, lambda m: bool(audio_of([m])))
            await speak(session)
            interrupted = await receive_turn(session)
            second = await receive_turn(session)
        flags = [m.server_content for m in interrupted if m.server_content]
        assert flags[-2].interrupted and flags[-1].turn_complete
        assert not any(c.generation_complete for c in flags)
        assert emu.replies[0].interrupted and emu.replies[0].chunks < 20
        assert audio_of(second) == ToneVoice().render("ok")
        assert is_handle(second[0])  # the interrupted turn left a resumable state
        assert second[1].server_content.input_transcription.text == "stop"


async def test_a_camel_case_client_is_understood_and_answered_in_camel_case():
    sc = scenario(turns=[LIGHT_TURN], default={"reply": "noted"})
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        url = (
            emu.base_url.replace("https", "wss") + "/ws/google.ai.generativelanguage."
            "v1beta.GenerativeService.BidiGenerateContent"
        )
        async with ws_connect(
            url, ssl=emu.client_ssl_context(), additional_headers={"x-goog-api-key": "k"}
        ) as ws:
            await ws.send(
                json.dumps(
                    {
                        "setup": {
                            "model": f"models/{MODEL}",
                            "generationConfig": {"responseModalities": ["AUDIO"]},
                            "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
                            "sessionResumption": {},
                            "tools": [{"functionDeclarations": [
                                {"name": "set_light", "behavior": "NON_BLOCKING"}]}],
                        }
                    }
                )
            )
            await ws.send(json.dumps({"realtimeInput": {"activityStart": {}}}))
            await ws.send(
                json.dumps(
                    {"realtimeInput": {"audio": {"data": b64(FRAME), "mimeType": "audio/pcm;rate=16000"}}}
                )
            )
            await ws.send(json.dumps({"realtimeInput": {"activityEnd": {}}}))
            received = []
            while not any(m.get("serverContent", {}).get("turnComplete") for m in received):
                received.append(json.loads(await ws.recv()))
            call = next(m["toolCall"]["functionCalls"][0] for m in received if "toolCall" in m)
            await ws.send(
                json.dumps(
                    {
                        "toolResponse": {
                            "functionResponses": [
                                {
                                    "id": call["id"],
                                    "name": "set_light",
                                    "response": {"ok": True},
                                    "scheduling": "SILENT",
                                }
                            ]
                        }
                    }
                )
            )
            await ws.send(
                json.dumps(
                    {
                        "clientContent": {
                            "turns": [{"role": "user", "parts": [{"text": "hi"}]}],
                            "turnComplete": True,
                        }
                    }
                )
            )
            while sum(bool(m.get("serverContent", {}).get("turnComplete")) for m in received) < 2:
                received.append(json.loads(await ws.recv()))
        keys = {key for message in received for key in message}
        assert keys <= {
            "setupComplete",
            "serverContent",
            "toolCall",
            "sessionResumptionUpdate",
            "usageMetadata",
        }
        assert emu.tool_responses[0].known and emu.tool_responses[0].scheduling == "SILENT"
        assert [r.kind for r in emu.replies] == ["reply", "client"]


async def test_client_content_is_remembered_and_a_complete_turn_answered():
    sc = scenario(default={"input_transcript": "?", "reply": "the default reply"})
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            note = types.Content(role="user", parts=[types.Part(text="set_light said: done")])
            await session.send_client_content(turns=note, turn_complete=False)
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="Is it on?")]), turn_complete=True
            )
            reply = await receive_turn(session)
        assert audio_of(reply) == ToneVoice().render("the default reply")
        assert [e.kind for e in emu.history] == ["client_content", "client_content", "model"]
        assert emu.history[0].data == [{"parts": [{"text": "set_light said: done"}], "role": "user"}]
        assert emu.utterances == [] and emu.replies[0].kind == "client"


# --- tools ---------------------------------------------------------------------------------------


async def run_tool_turn(scheduling: str, pace: float | str) -> tuple[Emulator, list]:
    sc = scenario(pace=pace, chunk_ms=100, turns=[dict(LIGHT_TURN, reply=LONG_REPLY)])
    async with Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            messages = await receive_until(session, lambda m: m.tool_call is not None)
            call = messages[-1].tool_call.function_calls[0]
            assert (call.name, call.args) == ("set_light", {"entity": "kitchen light", "on": True})
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(
                        id=call.id,
                        name=call.name,
                        response={"result": "ok"},
                        scheduling=types.FunctionResponseScheduling(scheduling),
                    )
                ]
            )
            rest = await receive_until(session, is_handle)
        return emu, messages + rest


async def test_interrupt_scheduling_speaks_the_follow_up_at_once():
    async with asyncio.timeout(TEST_TIMEOUT):
        emu, messages = await run_tool_turn("INTERRUPT", pace=3.0)
    assert [(r.text, r.interrupted) for r in emu.replies] == [
        (LONG_REPLY, True),
        ("The kitchen light is on.", False),
    ]
    contents = [m.server_content for m in messages if m.server_content]
    interrupted_at = next(i for i, c in enumerate(contents) if c.interrupted)
    assert contents[interrupted_at + 1].turn_complete
    follow_up = audio_of([m for m in messages if m.server_content in contents[interrupted_at:]])
    assert follow_up == ToneVoice().render("The kitchen light is on.")
    assert emu.tool_responses[0].scheduling == "INTERRUPT"


async def test_when_idle_scheduling_waits_for_the_reply():
    async with asyncio.timeout(TEST_TIMEOUT):
        emu, messages = await run_tool_turn("WHEN_IDLE", pace=16.0)
    assert [(r.text, r.interrupted) for r in emu.replies] == [
        (LONG_REPLY, False),
        ("The kitchen light is on.", False),
    ]
    assert emu.tool_responses[0].t < emu.replies[0].end_t <= emu.replies[1].start_t
    assert audio_of(messages) == emu.replies[0].audio + emu.replies[1].audio


async def test_silent_scheduling_is_remembered_not_spoken():
    async with asyncio.timeout(TEST_TIMEOUT):
        emu, _ = await run_tool_turn("SILENT", pace="fast")
    assert [r.text for r in emu.replies] == [LONG_REPLY]
    assert [e.kind for e in emu.history] == ["user", "tool_call", "model", "tool_response"]
    assert emu.history[-1].data == {"id": "function-call-1", "response": {"result": "ok"}}


async def test_a_response_for_an_unknown_call_is_recorded_and_ignored():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id="function-call-77", name="set_light", response={"ok": True})
                ]
            )
            await emu.wait_for(lambda e: e.tool_responses)
            await speak(session)
            await receive_turn(session)
        assert emu.tool_responses[0].known is False and emu.errors == []


# --- resumption ----------------------------------------------------------------------------------


async def test_resuming_restores_history_and_an_older_handle_restores_older_state():
    turns = [{"input_transcript": "first", "reply": "one"}, {"input_transcript": "second", "reply": "two"}]
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(turns=turns)) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            first_handle = handles_of(await receive_until(session, is_handle))[0]
            await speak(session)
            await receive_turn(session)
            later_handle = handles_of(await receive_until(session, is_handle))[0]
        config = live_config(handle=later_handle)
        async with client.aio.live.connect(model=MODEL, config=config) as session:
            await receive_until(session, is_handle)
            assert [(e.kind, e.text) for e in emu.history] == [("user", "first"), ("model", "one")]
            await speak(session)
            assert audio_of(await receive_turn(session)) == ToneVoice().render("two")
        async with client.aio.live.connect(model=MODEL, config=live_config(handle=first_handle)) as session:
            await receive_until(session, is_handle)
            assert emu.history == []
            await speak(session)
            assert audio_of(await receive_turn(session)) == ToneVoice().render("one")
        assert [c.resumed_handle for c in emu.connections] == [None, later_handle, first_handle]
        assert len({c.session_id for c in emu.connections}) == 1


async def test_an_utterance_cut_by_a_drop_is_answered_once_after_resuming():
    turns = [{"reply": "one"}, {"reply": "two"}, {"reply": "three"}]
    sc = scenario(turns=turns, faults=["drop@utterance:2:frame:2"])
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            await receive_turn(session)
            handle = handles_of(await receive_until(session, is_handle))[-1]
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await speak(session)  # dropped after its second frame
            with pytest.raises(errors.APIError) as raised:
                await receive_forever(session)
            assert raised.value.code == 1006
            # Sending on the dead session raises websockets' exception, not the SDK's.
            with pytest.raises(websockets.exceptions.ConnectionClosedError):
                await speak(session)
        async with client.aio.live.connect(model=MODEL, config=live_config(handle=handle)) as session:
            await speak(session)  # the client re-sends utterance 2
            assert audio_of(await receive_turn(session)) == ToneVoice().render("two")
        assert [(u.turn, u.complete) for u in emu.utterances] == [(1, True), (2, False), (2, True)]
        assert len(emu.fired_faults) == 1


async def test_unknown_handle_makes_connect_raise_1007():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = client_for(emu)
        with pytest.raises(errors.APIError) as raised:
            async with client.aio.live.connect(model=MODEL, config=live_config(handle="nope")):
                pass
        assert raised.value.code == 1007
        assert raised.value.details == "invalid session resumption handle"
        assert emu.connections[0].accepted is False


async def test_a_refused_resume_makes_connect_raise_1007_with_the_services_reason():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(faults=["refuse_resume"])) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            handle = handles_of(await receive_until(session, is_handle))[0]
        await emu.wait_for(lambda e: not e.connections[0].is_open)
        with pytest.raises(errors.APIError) as raised:
            async with client.aio.live.connect(model=MODEL, config=live_config(handle=handle)):
                pass
        assert raised.value.code == 1007
        assert raised.value.details == "Request contains an invalid argument."
        assert emu.connections[1].accepted is False


async def test_expired_handle_makes_connect_raise_1007():
    clock = OffsetClock()
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(), clock=clock) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            handle = handles_of(await receive_until(session, is_handle))[0]
        await emu.wait_for(lambda e: not e.connections[0].is_open)
        clock.advance(2 * 3600 + 1)
        with pytest.raises(errors.APIError) as raised:
            async with client.aio.live.connect(model=MODEL, config=live_config(handle=handle)):
                pass
        assert raised.value.code == 1007


async def test_resume_while_the_old_socket_is_open_raises_1011_then_works_once_closed():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as old:
            handle = handles_of(await receive_until(old, is_handle))[0]
            with pytest.raises(errors.APIError) as raised:
                async with client.aio.live.connect(model=MODEL, config=live_config(handle=handle)):
                    pass
            assert raised.value.code == 1011
        await emu.wait_for(lambda e: not e.connections[0].is_open)
        async with client.aio.live.connect(model=MODEL, config=live_config(handle=handle)):
            pass
        assert [c.accepted for c in emu.connections] == [True, False, True]


# --- faults: what the SDK raises -----------------------------------------------------------------


async def receive_forever(session) -> list[types.LiveServerMessage]:
    """What a long-lived receiver does: call receive() again after every turn."""
    messages = []
    while True:
        async for message in session.receive():
            messages.append(message)


@pytest.mark.parametrize(
    "fault,code,details",
    [
        ("drop@utterance:1:frame:3", 1006, "abnormal closure [internal]"),
        ("close:1011@reply:1:chunk:1", 1011, "Internal error encountered."),
        ("close:1000@reply:1:chunk:2", 1000, ""),
        ("close:1008@utterance:1:frame:1", 1008, "Operation is not permitted."),
    ],
)
async def test_receive_raises_api_error_with_the_close_code(fault, code, details):
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario(faults=[fault])) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await speak(session)
            with pytest.raises(errors.APIError) as raised:
                await receive_forever(session)
        assert (raised.value.code, raised.value.details) == (code, details)
        assert [f.fault for f in emu.fired_faults] == [fault]


async def test_goaway_is_delivered_then_the_connection_closes():
    sc = scenario(faults=["goaway:0.2@reply:1:chunk:1"])
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            turn = await receive_turn(session)
            assert [m.go_away.time_left for m in turn if m.go_away] == ["0.2s"]
            assert turn[-1].server_content.turn_complete  # it kept answering
            with pytest.raises(errors.APIError) as raised:
                await receive_forever(session)
        assert raised.value.code == 1011
        await emu.wait_for(lambda e: not e.connections[0].is_open)
        assert emu.connections[0].closed_by == "server"


async def test_refuse_drops_then_rejects_handshakes_until_the_window_ends():
    clock = OffsetClock()
    sc = scenario(faults=["refuse:30@utterance:1:frame:1"])
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc, clock=clock) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            with contextlib.suppress(websockets.exceptions.ConnectionClosed):
                await speak(session)
            with pytest.raises(errors.APIError) as raised:
                await receive_forever(session)
            assert raised.value.code == 1006
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with client.aio.live.connect(model=MODEL, config=live_config()):
                pass
        assert refused.value.response.status_code == 503
        assert emu.rejected_handshakes[0][2] == 503
        clock.advance(30)
        async with client.aio.live.connect(model=MODEL, config=live_config()):
            pass
        assert emu.connections[-1].accepted


async def test_stall_keeps_the_socket_open_and_silent():
    sc = scenario(pace=1.0, chunk_ms=100, default={"reply": LONG_REPLY}, faults=["stall@reply:1:chunk:1"])
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            receiver = asyncio.create_task(receive_forever(session))
            await speak(session)
            await emu.wait_for(lambda e: e.fired_faults)
            sent = len(emu.sent)
            await speak(session)  # a hung server answers nothing, not even a barge-in
            # setup + two utterances of 7 frames each have all arrived: had the server
            # wanted to answer, it would have by now.
            await emu.wait_for(lambda e: len(e.received) == 1 + 2 * 7)
            assert len(emu.sent) == sent and not receiver.done()
            assert emu.connections[0].is_open
            receiver.cancel()
        await emu.wait_for(lambda e: not e.connections[0].is_open)
        assert emu.connections[0].closed_by == "client"


async def test_delay_postpones_the_reply():
    sc = scenario(faults=["delay:300@utterance:1:frame:1"])
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            await receive_turn(session)
        first_chunk = next(f.t for f in emu.sent if "modelTurn" in (f.message or {}).get("serverContent", {}))
        assert first_chunk - emu.utterances[0].end_t >= 0.3


async def test_programmatic_fault_fires_on_the_live_connection():
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await receive_until(session, is_handle)
            emu.inject_fault("close:1013")
            with pytest.raises(errors.APIError) as raised:
                await receive_forever(session)
        assert raised.value.code == 1013


@pytest.mark.parametrize(
    "text,exception,match",
    [
        ("{nope", ValueError, "Failed to parse response"),
        ('{"server_content": {"turn_complete": true}}', TypeError, "not supported between"),
        ('{"fooBar": {}}', TypeError, "not supported between"),
    ],
)
async def test_malformed_server_frames_make_the_sdk_raise(text, exception, match):
    sc = scenario(default={"reply": "hi", "inject": [{"when": "after_chunk:1", "text": text}]})
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            with pytest.raises(exception, match=match):
                await receive_forever(session)
        assert any(frame.raw == text for frame in emu.sent)


# --- lifecycle -----------------------------------------------------------------------------------


async def test_shutdown_closes_live_and_stalled_connections_with_1001():
    sc = scenario(faults=["stall@utterance:1:frame:1"])
    emu = Emulator(sc)
    async with asyncio.timeout(TEST_TIMEOUT):
        await emu.start()
        client = client_for(emu)
        async with (
            client.aio.live.connect(model=MODEL, config=live_config()) as stalled,
            client.aio.live.connect(model=MODEL, config=live_config()) as idle,
        ):
            await speak(stalled)
            await emu.wait_for(lambda e: e.fired_faults)
            receivers = [asyncio.create_task(receive_forever(s)) for s in (stalled, idle)]
            await emu.aclose()
            for receiver in receivers:
                with pytest.raises(errors.APIError) as raised:
                    await receiver
                assert raised.value.code == 1001
    assert all(not c.is_open for c in emu.connections)
    assert emu.errors == []


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="espeak-ng is not installed")
async def test_espeak_voice_end_to_end():
    import numpy as np

    sc = scenario(voice="espeak", default={"reply": "The kitchen light is on."})
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(sc) as emu:
        client = client_for(emu)
        async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
            await speak(session)
            received = audio_of(await receive_turn(session))
    samples = np.frombuffer(received, dtype="<i2")
    assert received == emu.replies[0].audio and 0.8 < len(samples) / 24000 < 4
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300


def client_with_context(emu: Emulator, context: ssl.SSLContext) -> genai.Client:
    return genai.Client(
        api_key=TEST_KEY,
        http_options=types.HttpOptions(base_url=emu.base_url, async_client_args={"ssl": context}),
    )


async def test_tls_is_real_a_client_must_trust_the_written_ca(tmp_path):
    async with asyncio.timeout(TEST_TIMEOUT), Emulator(scenario()) as emu:
        untrusting = client_with_context(emu, ssl.create_default_context())
        with pytest.raises(ssl.SSLCertVerificationError):
            async with untrusting.aio.live.connect(model=MODEL, config=live_config()):
                pass
        path = emu.write_ca(tmp_path / "ca.pem")
        trusting = client_with_context(emu, ssl.create_default_context(cafile=str(path)))
        async with trusting.aio.live.connect(model=MODEL, config=live_config()):
            pass
        assert [c.accepted for c in emu.connections] == [True]

"""The emulator's protocol engine, driven without sockets: frames and time in, actions out."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevoice_testbed.emulator.faults import parse_fault
from edgevoice_testbed.emulator.protocol import (
    Abort,
    Close,
    Connection,
    EmulatorCore,
    SendFrame,
    SendRaw,
)
from edgevoice_testbed.emulator.scenario import Scenario
from edgevoice_testbed.emulator.voice import ToneVoice

PATH = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
KEY = {"x-goog-api-key": "k-123"}
FRAME = base64.b64encode(bytes(640)).decode()
# A 2.5 model: NON_BLOCKING only where declared, INTERRUPT at once, usageMetadata sent.
MODEL = "models/gemini-2.5-flash-native-audio-preview-12-2025"
SERVER_KEYS = {
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
}


def make_scenario(**fields: Any) -> Scenario:
    data: dict[str, Any] = {"voice": "tone", "pace": "fast"}
    data.update(fields)
    return Scenario.model_validate(data)


def setup_message(
    handle: str | None = None,
    resumption: bool = True,
    explicit: bool = True,
    transcription: bool = True,
    modality: str = "AUDIO",
) -> dict[str, Any]:
    setup: dict[str, Any] = {
        "model": MODEL,
        "generationConfig": {"responseModalities": [modality]},
        "realtimeInputConfig": {"automatic_activity_detection": {"disabled": explicit}},
        "tools": [{"functionDeclarations": [{"name": "set_light", "behavior": "NON_BLOCKING"}]}],
    }
    if transcription:
        setup["inputAudioTranscription"] = {}
        setup["outputAudioTranscription"] = {}
    if resumption:
        setup["sessionResumption"] = {"handle": handle} if handle else {}
    return {"setup": setup}


class Harness:
    """Drives one EmulatorCore with a hand-moved clock."""

    def __init__(self, scenario: Scenario | None = None):
        self.core = EmulatorCore(scenario or make_scenario(), ToneVoice().render)
        self.t = 100.0

    def connect(self, headers: dict[str, str] | None = None, path: str = PATH) -> Client:
        return Client(self, self.core.open_connection(path, KEY if headers is None else headers, self.t))


class Client:
    def __init__(self, harness: Harness, connection: Connection):
        self.h = harness
        self.conn = connection
        self.actions: list[Any] = []

    def send(self, message: dict[str, Any] | str | bytes) -> list[Any]:
        data = message if isinstance(message, str | bytes) else json.dumps(message)
        self.conn.receive(data, self.h.t)
        return self.poll()

    def poll(self) -> list[Any]:
        actions = self.conn.poll(self.h.t)
        self.actions.extend(actions)
        return actions

    def run(self, limit: float = 60.0) -> list[Any]:
        """Advance time deadline by deadline until nothing is scheduled (or ``limit`` s)."""
        collected = self.poll()
        end = self.h.t + limit
        while (deadline := self.conn.next_deadline()) is not None and deadline <= end:
            self.h.t = max(self.h.t, deadline)
            collected += self.poll()
        return collected

    def setup(self, **kwargs: Any) -> list[Any]:
        return self.send(setup_message(**kwargs))

    def utterance(self, frames: int = 3, snake: bool = True, end: bool = True) -> list[Any]:
        key = "realtime_input" if snake else "realtimeInput"
        mime = "mime_type" if snake else "mimeType"
        out = self.send({key: {"activityStart": {}}})
        for _ in range(frames):
            out += self.send({key: {"audio": {"data": FRAME, mime: "audio/pcm;rate=16000"}}})
        if end:
            out += self.send({key: {"activityEnd": {}}})
        return out

    def respond(
        self, call_id: str, scheduling: str | None = "WHEN_IDLE", name: str = "set_light"
    ) -> list[Any]:
        response: dict[str, Any] = {"id": call_id, "name": name, "response": {"ok": True}}
        if scheduling is not None:
            response["scheduling"] = scheduling
        return self.send({"tool_response": {"functionResponses": [response]}})


def messages(actions: list[Any]) -> list[dict[str, Any]]:
    return [action.message for action in actions if isinstance(action, SendFrame)]


def kinds(actions: list[Any]) -> list[str]:
    """A compact name per action: 'chunk', 'turnComplete', 'handle', 'Close:1007', ..."""
    names = []
    for action in actions:
        if isinstance(action, Close):
            names.append(f"Close:{action.code}")
        elif isinstance(action, Abort):
            names.append("Abort")
        elif isinstance(action, SendRaw):
            names.append("raw")
        else:
            message = action.message
            if "serverContent" in message:
                content = message["serverContent"]
                if "modelTurn" in content:
                    names.append("chunk")
                else:
                    names.extend(
                        key
                        for key in (
                            "inputTranscription",
                            "outputTranscription",
                            "interrupted",
                            "generationComplete",
                            "turnComplete",
                        )
                        if key in content
                    )
            elif "sessionResumptionUpdate" in message:
                update = message["sessionResumptionUpdate"]
                names.append("handle" if update.get("resumable") else "not_resumable")
            else:
                names.append(next(iter(message)))
    return names


def audio(actions: list[Any]) -> bytes:
    data = b""
    for message in messages(actions):
        for part in message.get("serverContent", {}).get("modelTurn", {}).get("parts", []):
            if "inlineData" in part:
                data += base64.b64decode(part["inlineData"]["data"])
    return data


def handles(actions: list[Any]) -> list[str]:
    return [
        m["sessionResumptionUpdate"]["newHandle"]
        for m in messages(actions)
        if m.get("sessionResumptionUpdate", {}).get("newHandle")
    ]


def calls(actions: list[Any]) -> list[dict[str, Any]]:
    return [call for m in messages(actions) for call in m.get("toolCall", {}).get("functionCalls", [])]


REPLY = "one two three four five six seven eight"


# --- setup ---------------------------------------------------------------------------------------


def test_setup_is_answered_with_setup_complete_and_a_first_handle():
    client = Harness().connect()
    out = client.setup()
    assert kinds(out) == ["setupComplete", "handle"]
    assert client.conn.record.accepted
    assert client.conn.record.setup["realtimeInputConfig"] == {
        "automaticActivityDetection": {"disabled": True}
    }


def test_without_session_resumption_no_handle_is_sent():
    client = Harness().connect()
    assert kinds(client.setup(resumption=False)) == ["setupComplete"]
    client.utterance()
    assert "handle" not in kinds(client.run()) and "not_resumable" not in kinds(client.actions)


@pytest.mark.parametrize(
    "first",
    [
        {"realtime_input": {"activityStart": {}}},
        {"clientContent": {"turns": [], "turnComplete": True}},
    ],
)
def test_a_first_frame_other_than_setup_closes_1007(first):
    client = Harness().connect()
    out = client.send(first)
    assert out == [Close(1007, "The first message must be setup.")]
    assert not client.conn.record.accepted


def test_invalid_json_closes_1007_and_is_recorded():
    harness = Harness()
    client = harness.connect()
    client.setup()
    out = client.send("{not json")
    assert kinds(out) == ["Close:1007"]
    assert harness.core.received[-1].raw == "{not json"
    assert harness.core.received[-1].message is None


def test_unknown_top_level_key_is_named_in_the_close_reason():
    client = Harness().connect()
    client.setup()
    (close,) = client.send({"realtimeInput": {}, "bogusField": 1})
    assert close.code == 1007 and '"bogusField"' in close.reason


def test_a_second_setup_closes_1007():
    client = Harness().connect()
    client.setup()
    assert kinds(client.setup()) == ["Close:1007"]


def test_bad_base64_audio_closes_1007():
    client = Harness().connect()
    client.setup()
    client.send({"realtimeInput": {"activityStart": {}}})
    out = client.send({"realtimeInput": {"audio": {"data": "***", "mimeType": "audio/pcm"}}})
    assert kinds(out) == ["Close:1007"]


def test_binary_frames_carrying_json_are_read():
    client = Harness().connect()
    out = client.send(json.dumps(setup_message()).encode())
    assert kinds(out) == ["setupComplete", "handle"]


def test_explicit_activity_without_disabling_automatic_detection_closes_1007():
    client = Harness().connect()
    client.setup(explicit=False)
    (close,) = client.send({"realtimeInput": {"activityStart": {}}})
    assert close.code == 1007 and "automatic activity detection" in close.reason


def test_missing_api_key_is_refused_after_the_setup_frame_with_1008():
    harness = Harness()
    client = harness.connect(headers={})
    (close,) = client.setup()
    assert close.code == 1008 and "unregistered callers" in close.reason
    assert harness.core.connections[0].api_key_present is False


def test_the_api_key_is_fingerprinted_never_stored():
    harness = Harness()
    client = harness.connect(headers={"x-goog-api-key": "secret-value-42"})
    client.setup()
    record = harness.core.connections[0]
    assert record.api_key_present
    assert record.api_key_fingerprint == hashlib.sha256(b"secret-value-42").hexdigest()[:8]
    assert "secret-value-42" not in repr(harness.core.connections) + repr(harness.core.received)


def test_a_key_in_the_query_is_accepted_but_never_recorded():
    harness = Harness()
    client = harness.connect(headers={}, path=PATH + "?key=query-secret")
    assert kinds(client.setup()) == ["setupComplete", "handle"]
    harness.core.refuse_until = harness.t + 1
    harness.core.check_handshake(PATH + "?key=query-secret", harness.t)
    recorded = repr(harness.core.connections) + repr(harness.core.rejected_handshakes)
    assert "query-secret" not in recorded and harness.core.connections[0].api_key_present


def test_constrained_method_takes_an_ephemeral_token():
    harness = Harness()
    constrained = PATH.replace("BidiGenerateContent", "BidiGenerateContentConstrained")
    good = harness.connect({"authorization": "Token auth_tokens/abc123xyz"}, constrained)
    assert kinds(good.setup()) == ["setupComplete", "handle"]
    assert harness.core.connections[0].auth_scheme == "token"
    bad = harness.connect({"x-goog-api-key": "k"}, constrained)
    assert kinds(bad.setup()) == ["Close:1008"]


@pytest.mark.parametrize(
    "path,status",
    [
        (PATH, None),
        (PATH.replace(".v1.", ".v1beta."), None),
        (PATH.replace(".v1.", ".v1alpha.") + "?key=x", None),
        ("/ws/google.ai.generativelanguage.v2.GenerativeService.BidiGenerateContent", 404),
        ("/", 404),
    ],
)
def test_handshake_accepts_every_api_version_and_nothing_else(path, status):
    reject = Harness().core.check_handshake(path, 0.0)
    assert (reject.status if reject else None) == status


# --- utterances and replies ---------------------------------------------------------------------


def test_an_utterance_is_answered_in_the_documented_order():
    harness = Harness(make_scenario(turns=[{"input_transcript": "hi there", "reply": REPLY}], chunk_ms=100))
    client = harness.connect()
    client.setup()
    out = client.utterance(frames=4) + client.run()
    expected_audio = ToneVoice().render(REPLY)
    chunk_count = -(-len(expected_audio) // 4800)
    assert kinds(out) == (
        ["inputTranscription", "not_resumable"]
        + ["chunk"] * chunk_count
        + ["generationComplete", "turnComplete", "handle"]
    )
    assert audio(out) == expected_audio == harness.core.replies[0].audio
    chunks = [m for m in messages(out) if "modelTurn" in m.get("serverContent", {})]
    parts = [c["serverContent"]["modelTurn"]["parts"][0]["inlineData"] for c in chunks]
    assert {len(base64.b64decode(p["data"])) for p in parts[:-1]} == {4800}
    assert (
        chunks[0]["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["mimeType"]
        == "audio/pcm;rate=24000"
    )
    transcript = "".join(c["serverContent"].get("outputTranscription", {}).get("text", "") for c in chunks)
    assert transcript == REPLY
    assert messages(out)[0]["serverContent"]["inputTranscription"] == {"text": "hi there"}
    turn_complete = next(m for m in messages(out) if m.get("serverContent", {}).get("turnComplete"))
    usage = turn_complete["usageMetadata"]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["responseTokenCount"]
    utterance = harness.core.utterances[0]
    assert (utterance.turn, utterance.frames, utterance.rate) == (1, 4, 16000)
    assert utterance.complete
    assert utterance.audio == bytes(640 * 4)
    assert harness.core.replies[0].finished and not harness.core.replies[0].interrupted


def test_reply_chunks_are_paced_faster_than_real_time():
    harness = Harness(make_scenario(default={"reply": REPLY}, pace=4.0, chunk_ms=200))
    client = harness.connect()
    client.setup()
    start = harness.t
    out = client.utterance()
    assert kinds(out).count("chunk") == 1  # the rest waits for its time
    assert client.conn.next_deadline() == pytest.approx(start + 0.05)
    harness.t = start + 0.05
    assert kinds(client.poll()) == ["chunk"]
    client.run()
    sent_times = [f.t for f in harness.core.sent if "modelTurn" in (f.message or {}).get("serverContent", {})]
    assert [round(b - a, 6) for a, b in itertools.pairwise(sent_times)] == [0.05] * (len(sent_times) - 1)


def test_reply_delay_holds_back_generation():
    harness = Harness(make_scenario(default={"input_transcript": "hm", "reply": "ok", "reply_delay_ms": 700}))
    client = harness.connect()
    client.setup()
    start = harness.t
    assert kinds(client.utterance()) == ["inputTranscription"]
    assert client.conn.next_deadline() == pytest.approx(start + 0.7)


def test_audio_outside_an_utterance_is_recorded_but_discarded():
    harness = Harness()
    client = harness.connect()
    client.setup()
    client.send({"realtimeInput": {"audio": {"data": FRAME, "mimeType": "audio/pcm;rate=16000"}}})
    assert harness.core.connections[0].stray_audio_frames == 1
    assert harness.core.utterances == [] and len(harness.core.received) == 2


def test_audio_frames_can_be_left_out_of_the_frame_recordings():
    harness = Harness(make_scenario(default={"reply": REPLY}))
    harness.core.record_audio_frames = False
    client = harness.connect()
    client.setup()
    client.utterance(frames=4)
    client.run()
    assert len(harness.core.received) == 3  # setup, activityStart, activityEnd
    assert not any("modelTurn" in f.message.get("serverContent", {}) for f in harness.core.sent)
    assert harness.core.utterances[0].audio == bytes(640 * 4)
    assert harness.core.replies[0].audio == ToneVoice().render(REPLY)


def test_legacy_media_chunks_and_other_rates_are_accepted():
    harness = Harness()
    client = harness.connect()
    client.setup()
    client.send({"realtimeInput": {"activityStart": {}}})
    client.send(
        {
            "realtimeInput": {
                "mediaChunks": [{"data": FRAME, "mimeType": "audio/pcm;rate=48000"}, {"data": FRAME}]
            }
        }
    )
    client.send({"realtimeInput": {"activityEnd": {}}})
    assert (harness.core.utterances[0].frames, harness.core.utterances[0].rate) == (2, 48000)


def test_snake_and_camel_spellings_are_equivalent():
    def run(snake: bool) -> list[str]:
        client = Harness(make_scenario(default={"reply": REPLY})).connect()
        client.setup()
        return kinds(client.utterance(snake=snake) + client.run())

    assert run(snake=True) == run(snake=False)
    assert "turnComplete" in run(snake=False)


def test_text_modality_answers_with_text_parts():
    client = Harness(make_scenario(default={"reply": REPLY})).connect()
    client.setup(modality="TEXT")
    out = client.utterance() + client.run()
    texts = [
        part["text"]
        for m in messages(out)
        for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
    ]
    assert "".join(texts) == REPLY and audio(out) == b""


def test_client_content_joins_history_and_turn_complete_gets_the_default_reply():
    harness = Harness(make_scenario(default={"reply": "noted"}))
    client = harness.connect()
    client.setup()
    turns = [{"role": "user", "parts": [{"text": "the light is on"}]}]
    out = client.send({"client_content": {"turns": turns, "turn_complete": False}})
    assert "chunk" not in kinds(out)
    out = client.send({"clientContent": {"turns": turns, "turnComplete": True}}) + client.run()
    assert "chunk" in kinds(out) and harness.core.replies[0].kind == "client"
    assert [e.kind for e in harness.core.history][:2] == ["client_content", "client_content"]
    assert harness.core.history[0].data == turns


def test_proto3_style_omits_false_resumable():
    client = Harness(make_scenario(resumption_update_style="proto3")).connect()
    client.setup()
    out = client.utterance() + client.run()
    assert {"sessionResumptionUpdate": {}} in messages(out)


# --- barge-in ------------------------------------------------------------------------------------


def test_activity_start_during_a_reply_interrupts_it():
    harness = Harness(make_scenario(pace=1.0, turns=[{"reply": REPLY}, {"reply": "second"}]))
    client = harness.connect()
    client.setup()
    client.utterance()
    harness.t += 0.25
    client.poll()
    out = client.send({"realtimeInput": {"activityStart": {}}})
    assert kinds(out) == ["interrupted", "turnComplete", "handle"]
    first = harness.core.replies[0]
    assert first.interrupted and first.finished and 0 < first.chunks < 8
    assert first.audio == ToneVoice().render(REPLY)[: len(first.audio)]
    client.send({"realtimeInput": {"activityEnd": {}}})
    out = client.run()
    assert harness.core.replies[1].text == "second" and harness.core.replies[1].turn == 2
    assert kinds(out)[-2:] == ["turnComplete", "handle"]
    model_entries = [e for e in harness.core.history if e.kind == "model"]
    assert [(e.text, e.interrupted) for e in model_entries] == [(REPLY, True), ("second", False)]


def test_activity_start_after_the_reply_is_no_barge_in():
    harness = Harness()
    client = harness.connect()
    client.setup()
    client.utterance()
    client.run()
    assert "interrupted" not in kinds(client.send({"realtimeInput": {"activityStart": {}}}))


# --- tool calls -----------------------------------------------------------------------------------

LIGHT_TURN = {
    "input_transcript": "Turn on the kitchen light",
    "reply": REPLY,
    "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    "follow_up": "The kitchen light is on.",
}


def light_harness(**fields: Any) -> tuple[Harness, Client]:
    harness = Harness(make_scenario(turns=[LIGHT_TURN], **fields))
    client = harness.connect()
    client.setup()
    return harness, client


def test_tool_call_goes_out_before_the_reply_and_blocks_resumption():
    harness, client = light_harness()
    out = client.utterance() + client.run()
    assert kinds(out)[:3] == ["inputTranscription", "not_resumable", "toolCall"]
    assert calls(out) == [
        {"id": "function-call-1", "name": "set_light", "args": {"entity": "kitchen light", "on": True}}
    ]
    assert kinds(out)[-2:] == ["turnComplete", "not_resumable"]
    assert harness.core.tool_calls[0].declared


def test_when_idle_follow_up_waits_for_the_current_reply():
    harness, client = light_harness(pace=1.0)
    client.utterance()
    harness.t += 0.1
    client.poll()
    out = client.respond("function-call-1", "WHEN_IDLE")
    assert "interrupted" not in kinds(out)
    out = client.run()
    assert [r.text for r in harness.core.replies] == [REPLY, "The kitchen light is on."]
    assert not harness.core.replies[0].interrupted
    assert kinds(out).count("turnComplete") == 2 and kinds(out)[-1] == "handle"


def test_interrupt_follow_up_cuts_the_reply_at_once():
    harness, client = light_harness(pace=1.0)
    client.utterance()
    harness.t += 0.1
    client.poll()
    out = client.respond("function-call-1", "INTERRUPT")
    assert kinds(out)[:4] == ["interrupted", "turnComplete", "not_resumable", "chunk"]
    client.run()
    assert harness.core.replies[0].interrupted
    assert harness.core.replies[1].kind == "follow_up" and harness.core.replies[1].finished


def test_silent_response_is_remembered_not_spoken():
    harness, client = light_harness()
    client.utterance()
    client.run()
    out = client.respond("function-call-1", "SILENT") + client.run()
    assert kinds(out) == ["handle"]
    assert len(harness.core.replies) == 1
    assert harness.core.history[-1].kind == "tool_response"
    assert harness.core.tool_responses[0].scheduling == "SILENT"


def test_scheduling_inside_the_response_is_honoured_like_the_guide_shows():
    harness, client = light_harness()
    client.utterance()
    client.run()
    client.send(
        {
            "toolResponse": {
                "functionResponses": [
                    {
                        "id": "function-call-1",
                        "name": "set_light",
                        "response": {"result": "ok", "scheduling": "SILENT"},
                    }
                ]
            }
        }
    )
    client.run()
    assert len(harness.core.replies) == 1


def test_response_for_an_unknown_id_is_recorded_and_ignored():
    harness, client = light_harness()
    client.utterance()
    client.run()
    out = client.respond("function-call-999", "INTERRUPT")
    assert out == [] and harness.core.tool_responses[0].known is False
    assert harness.core.history[-1].kind == "model"


def test_turn_follow_up_waits_for_every_call_of_the_turn():
    turn = dict(
        LIGHT_TURN,
        tool_calls=[
            {"name": "set_light", "args": {"entity": "a"}, "id": "a"},
            {"name": "set_light", "args": {"entity": "b"}, "id": "b", "when": "after_reply"},
        ],
    )
    harness = Harness(make_scenario(turns=[turn]))
    client = harness.connect()
    client.setup()
    out = client.utterance() + client.run()
    assert [c["id"] for c in calls(out)] == ["a", "b"]
    assert kinds(out).index("toolCall", 3) < kinds(out).index("generationComplete")
    client.respond("a")
    assert len(harness.core.replies) == 1
    client.respond("b")
    client.run()
    assert [r.text for r in harness.core.replies] == [REPLY, "The kitchen light is on."]


def test_call_level_follow_up_speaks_per_call():
    turn = {
        "reply": "ok",
        "tool_calls": [
            {"name": "set_light", "id": "x", "follow_up": "x done"},
            {"name": "set_light", "id": "y", "follow_up": "y done"},
        ],
    }
    harness = Harness(make_scenario(turns=[turn]))
    client = harness.connect()
    client.setup()
    client.utterance()
    client.run()
    client.respond("y")
    client.run()
    client.respond("x")
    client.run()
    assert [r.text for r in harness.core.replies] == ["ok", "y done", "x done"]


def test_calls_placed_after_a_chunk_go_out_right_after_it():
    turn = {
        "input_transcript": "do it",
        "reply": REPLY,
        "tool_calls": [{"name": "set_light", "when": "after_chunk:2"}],
        "inject": [{"when": "after_chunk:1", "text": '{"bogus": 1}'}],
    }
    client = Harness(make_scenario(turns=[turn], chunk_ms=100)).connect()
    client.setup()
    out = client.utterance() + client.run()
    sequence = kinds(out)
    assert sequence[2:7] == ["chunk", "raw", "chunk", "toolCall", "chunk"]
    assert [a.data for a in out if isinstance(a, SendRaw)] == ['{"bogus": 1}']


def test_placements_past_a_short_reply_still_happen_before_generation_complete():
    turn = {"reply": "ok", "tool_calls": [{"name": "set_light", "when": "after_chunk:9"}]}
    client = Harness(make_scenario(turns=[turn])).connect()
    client.setup()
    sequence = kinds(client.utterance() + client.run())
    assert sequence.index("toolCall") < sequence.index("generationComplete")


def test_binary_injection_is_sent_as_bytes():
    turn = {
        "reply": "ok",
        "inject": [{"when": "before_reply", "binary_base64": base64.b64encode(b"\x00\xff").decode()}],
    }
    client = Harness(make_scenario(turns=[turn])).connect()
    client.setup()
    out = client.utterance() + client.run()
    assert [a.data for a in out if isinstance(a, SendRaw)] == [b"\x00\xff"]


def test_cancel_after_a_delay():
    turn = dict(LIGHT_TURN, cancel={"after_ms": 500})
    harness = Harness(make_scenario(turns=[turn]))
    client = harness.connect()
    client.setup()
    start = harness.t
    client.utterance()
    out = client.run()
    cancellation = next(m for m in messages(out) if "toolCallCancellation" in m)
    assert cancellation == {"toolCallCancellation": {"ids": ["function-call-1"]}}
    assert harness.core.tool_calls[0].cancelled_t == pytest.approx(start + 0.5)
    assert kinds(out)[-1] == "handle"  # nothing outstanding any more
    client.respond("function-call-1", "INTERRUPT")
    assert harness.core.tool_responses[0].known is False
    assert len(harness.core.replies) == 1  # the turn's follow-up died with its call


def test_cancel_on_barge_in():
    turn = dict(LIGHT_TURN, cancel={"on_barge_in": True})
    harness = Harness(make_scenario(pace=1.0, turns=[turn]))
    client = harness.connect()
    client.setup()
    client.utterance()
    harness.t += 0.1
    client.poll()
    out = client.send({"realtimeInput": {"activityStart": {}}})
    assert kinds(out)[:3] == ["interrupted", "turnComplete", "toolCallCancellation"]


# --- resumption ----------------------------------------------------------------------------------


def test_resume_restores_history_and_turn_counter():
    scenario = make_scenario(
        turns=[{"input_transcript": "first", "reply": "one"}, {"input_transcript": "second", "reply": "two"}]
    )
    harness = Harness(scenario)
    client = harness.connect()
    client.setup()
    out = client.utterance() + client.run()
    handle = handles(out)[-1]
    client.conn.connection_lost(harness.t, 1000, "", "client")
    resumed = harness.connect()
    assert kinds(resumed.setup(handle=handle)) == ["setupComplete", "handle"]
    assert [e.text for e in harness.core.history if e.kind == "user"] == ["first"]
    resumed.utterance()
    resumed.run()
    assert harness.core.replies[-1].text == "two" and harness.core.utterances[-1].turn == 2
    assert harness.core.connections[1].resumed_handle == handle
    assert harness.core.connections[1].session_id == harness.core.connections[0].session_id


def test_resume_from_an_older_handle_loses_later_turns():
    harness = Harness(make_scenario(turns=[{"input_transcript": "first", "reply": "one"}]))
    client = harness.connect()
    first_handle = handles(client.setup())[0]
    client.utterance()
    client.run()
    client.conn.connection_lost(harness.t, 1000, "", "client")
    resumed = harness.connect()
    resumed.setup(handle=first_handle)
    assert harness.core.history == []
    resumed.utterance()
    resumed.run()
    assert harness.core.replies[-1].text == "one"


def test_handles_share_history_and_only_the_newest_are_kept():
    harness = Harness(make_scenario(handles_kept_per_session=3))
    client = harness.connect()
    client.setup()
    for _ in range(6):
        client.utterance()
        client.run()
    issued = handles(client.actions)
    assert len(issued) == 7 and harness.core.handles_kept == 3
    snapshots = [harness.core._handles[h].snapshot for h in issued[-3:]]
    # Each snapshot holds the newest node of one shared history, not a copy of it.
    assert snapshots[1]._history_tail.previous.previous is snapshots[0]._history_tail
    client.conn.connection_lost(harness.t, 1000, "", "client")
    forgotten = harness.connect()
    forgotten.setup(handle=issued[0])
    assert forgotten.conn.record.close_code == 1007
    resumed = harness.connect()
    assert kinds(resumed.setup(handle=issued[-2]))[0] == "setupComplete"
    assert [e.kind for e in harness.core.history].count("user") == 5


def test_expired_handles_are_dropped_from_memory():
    harness = Harness(make_scenario(handle_ttl_s=10))
    old = harness.connect()
    old.setup()
    old.conn.connection_lost(harness.t, 1000, "", "client")
    harness.t += 11
    client = harness.connect()
    client.setup()
    for _ in range(300):  # enough stores to trigger a sweep
        client.utterance()
        client.run()
    assert all(entry.connection_id != old.conn.record.id
               for entry in harness.core._handles.values())


@pytest.mark.parametrize("handle", ["nonsense", ""])
def test_unknown_handle_closes_1007_without_setup_complete(handle):
    harness = Harness()
    client = harness.connect()
    out = client.setup(handle=handle or None)
    if handle:
        assert out == [Close(1007, "invalid session resumption handle")]
        assert not client.conn.record.accepted
    else:
        assert kinds(out) == ["setupComplete", "handle"]


def test_handle_expires_two_hours_after_its_connection_ended():
    harness = Harness()
    client = harness.connect()
    handle = handles(client.setup())[0]
    harness.t += 3 * 3600  # an open connection keeps its handles valid
    client.conn.connection_lost(harness.t, 1000, "", "client")
    harness.t += 7200 - 1
    ok = harness.connect()
    assert kinds(ok.setup(handle=handle)) == ["setupComplete", "handle"]
    ok.conn.connection_lost(harness.t, 1000, "", "client")
    harness.t += 7200 + 1
    assert kinds(harness.connect().setup(handle=handle)) == ["Close:1007"]


def test_resume_while_the_old_socket_is_open_closes_1011():
    harness = Harness()
    old = harness.connect()
    handle = handles(old.setup())[0]
    (close,) = harness.connect().setup(handle=handle)
    assert close.code == 1011
    old.conn.connection_lost(harness.t, 1006, "", "lost")
    assert kinds(harness.connect().setup(handle=handle)) == ["setupComplete", "handle"]


def test_handles_are_not_issued_while_calls_are_outstanding():
    _, client = light_harness()
    out = client.utterance() + client.run()
    assert handles(out) == []
    out = client.respond("function-call-1", "WHEN_IDLE") + client.run()
    assert len(handles(out)) == 1


# --- faults --------------------------------------------------------------------------------------


def test_drop_fires_right_after_the_kth_frame_of_the_nth_utterance_once():
    harness = Harness(make_scenario(faults=["drop@utterance:2:frame:3"]))
    client = harness.connect()
    handle = handles(client.setup())[0]
    client.utterance(frames=5)
    client.run()
    client.send({"realtimeInput": {"activityStart": {}}})
    for frame_number in (1, 2):
        assert client.send({"realtimeInput": {"audio": {"data": FRAME}}}) == [], frame_number
    assert client.send({"realtimeInput": {"audio": {"data": FRAME}}}) == [Abort()]
    assert [f.fault for f in harness.core.fired_faults] == ["drop@utterance:2:frame:3"]
    client.conn.connection_lost(harness.t, 1006, "", "abort")
    # Re-sent after a resume, utterance 2 is still utterance 2 and the fault does not refire.
    resumed = harness.connect()
    resumed.setup(handle=handles(client.actions)[-1])
    out = resumed.utterance(frames=5) + resumed.run()
    assert harness.core.utterances[-1].turn == 2 and "turnComplete" in kinds(out)
    assert handle != handles(client.actions)[-1]


def test_close_after_a_reply_chunk():
    harness = Harness(
        make_scenario(default={"reply": REPLY}, chunk_ms=100, faults=["close:1011@reply:1:chunk:2"])
    )
    client = harness.connect()
    client.setup()
    out = client.utterance() + client.run()
    assert kinds(out)[-3:] == ["chunk", "chunk", "Close:1011"]
    assert out[-1].reason == "Internal error encountered."


def test_goaway_warns_then_closes_after_its_time():
    harness = Harness(make_scenario(faults=["goaway:5@utterance:1:frame:1"]))
    client = harness.connect()
    client.setup()
    start = harness.t
    out = client.utterance()
    assert messages(out)[0] == {"goAway": {"timeLeft": "5s"}}
    assert "turnComplete" in kinds(out)  # it keeps working meanwhile
    assert kinds(client.run()) == ["Close:1011"] and harness.t == pytest.approx(start + 5)


def test_refuse_drops_and_refuses_handshakes_for_a_while():
    harness = Harness(make_scenario(faults=["refuse:3@utterance:1:frame:1"]))
    client = harness.connect()
    client.setup()
    start = harness.t
    assert client.utterance(end=False) == [Abort()]
    assert harness.core.check_handshake(PATH, start + 2.9).status == 503
    assert harness.core.check_handshake(PATH, start + 3.0) is None


def test_stall_silences_the_connection_but_keeps_it_open():
    harness = Harness(make_scenario(default={"reply": REPLY}, chunk_ms=100, faults=["stall@reply:1:chunk:1"]))
    client = harness.connect()
    client.setup()
    out = client.utterance() + client.run()
    assert kinds(out)[-1] == "chunk" and kinds(out).count("chunk") == 1
    assert client.utterance() + client.run() == []
    assert not client.conn.finished and client.conn.next_deadline() is None


def test_delay_postpones_the_next_reply():
    harness = Harness(make_scenario(faults=["delay:1500@utterance:1:frame:1"]))
    client = harness.connect()
    client.setup()
    start = harness.t
    client.utterance()
    assert client.conn.next_deadline() == pytest.approx(start + 1.5)


def test_restart_is_left_to_the_simulate_command():
    harness = Harness(make_scenario(faults=["restart@utterance:1:frame:1"]))
    client = harness.connect()
    client.setup()
    assert "turnComplete" in kinds(client.utterance() + client.run())


def test_injected_fault_without_time_fires_now_or_at_the_next_setup():
    harness = Harness()
    harness.core.inject_fault(parse_fault("close:1000"), harness.t)  # no connection yet
    client = harness.connect()
    assert kinds(client.setup()) == ["setupComplete", "handle", "Close:1000"]
    other = harness.connect()
    other.setup()
    harness.core.inject_fault(parse_fault("goaway:10"), harness.t)
    assert messages(other.poll()) == [{"goAway": {"timeLeft": "10s"}}]


# --- robustness ----------------------------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "activityStart",
                    "activity_end",
                    "audio",
                    "data",
                    "mimeType",
                    "id",
                    "functionResponses",
                    "turns",
                    "turnComplete",
                    "x",
                ]
            ),
            children,
            max_size=3,
        )
    ),
    max_leaves=10,
)
_client_frames = st.one_of(
    st.builds(lambda body: {"realtimeInput": body}, _json_values),
    st.builds(lambda body: {"toolResponse": body}, _json_values),
    st.builds(lambda body: {"clientContent": body}, _json_values),
    st.just({"realtimeInput": {"activityStart": {}}}),
    st.just({"realtimeInput": {"audio": {"data": FRAME}}}),
    st.just({"realtimeInput": {"activityEnd": {}}}),
    st.builds(
        lambda i: {
            "toolResponse": {"functionResponses": [{"id": f"function-call-{i}", "scheduling": "INTERRUPT"}]}
        },
        st.integers(0, 3),
    ),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.tuples(_client_frames, st.floats(0, 2)), max_size=12))
def test_arbitrary_client_frames_never_crash_the_engine(frames):
    harness = Harness(make_scenario(pace=2.0, turns=[LIGHT_TURN]))
    client = harness.connect()
    client.setup()
    for message, pause in frames:
        client.send(message)
        harness.t += pause
        client.poll()
        if client.conn.closing:
            break
    client.run()
    for action in client.actions:
        if isinstance(action, SendFrame):
            assert set(action.message) <= SERVER_KEYS
            assert json.loads(action.text) == action.message
        elif isinstance(action, Close):
            assert action.code == 1007

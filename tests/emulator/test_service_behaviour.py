"""The emulated service's behaviour per model family, with automatic activity detection,
typed prompts that call functions, and the real service's habits (sans-IO, fake clock)."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from edgevoice_testbed.emulator.faults import parse_fault
from tests.emulator.test_protocol import (
    FRAME,
    Harness,
    calls,
    handles,
    kinds,
    make_scenario,
    messages,
)

MODEL_2_5 = "models/gemini-2.5-flash-native-audio-preview-12-2025"
MODEL_3_8 = "models/gemini-3.8-live"
MODEL_3_1 = "models/gemini-3.1-flash-live-preview"
LIGHT_TURN = {"input_transcript": "lights", "reply": "Turning them on.",
              "tool_calls": [{"name": "turn_on_the_lights"}], "follow_up": "They are on."}


def setup(model: str = MODEL_3_8, *, manual: bool = False, functions: list[Any] | None = None,
          detection: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "inputAudioTranscription": {},
                            "outputAudioTranscription": {}, "sessionResumption": {}}
    if manual:
        body["realtimeInputConfig"] = {"automaticActivityDetection": {"disabled": True}}
    elif detection is not None:
        body["realtimeInputConfig"] = {"automaticActivityDetection": detection}
    if functions:
        body["tools"] = [{"functionDeclarations": [
            f if isinstance(f, dict) else {"name": f} for f in functions]}]
    body.update(extra)
    return {"setup": body}


def pcm(seconds: float, amplitude: float, rate: int = 16000) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 220 * t) * amplitude * 32767).astype("<i2").tobytes()


def audio_frame(data: bytes) -> dict[str, Any]:
    return {"realtime_input": {"audio": {"data": base64.b64encode(data).decode(),
                                         "mime_type": "audio/pcm;rate=16000"}}}


def text_prompt(text: str) -> dict[str, Any]:
    return {"client_content": {"turns": [{"role": "user", "parts": [{"text": text}]}],
                               "turn_complete": True}}


def stream(client: Any, data: bytes, frame_s: float = 0.02) -> list[Any]:
    """Send ``data`` in frames of ``frame_s`` like a microphone (time is not moved)."""
    size = int(16000 * frame_s) * 2
    out = []
    for start in range(0, len(data), size):
        out += client.send(audio_frame(data[start:start + size]))
    return out


# -- automatic activity detection -----------------------------------------------------------


def test_speech_then_silence_is_answered_with_input_transcription():
    harness = Harness(make_scenario(turns=[{"input_transcript": "hello there", "reply": "hi"}]))
    client = harness.connect()
    client.send(setup())
    out = stream(client, pcm(0.3, 0.0) + pcm(0.6, 0.3) + pcm(1.0, 0.0)) + client.run()
    assert kinds(out)[:2] == ["inputTranscription", "not_resumable"]
    assert messages(out)[0]["serverContent"]["inputTranscription"]["text"] == "hello there"
    assert "turnComplete" in kinds(out)
    utterance = harness.core.utterances[0]
    assert utterance.complete and 0.6 <= len(utterance.audio) / 32000 <= 0.6 + 0.85


def test_silence_alone_is_never_answered():
    harness = Harness(make_scenario())
    client = harness.connect()
    client.send(setup())
    assert stream(client, pcm(3.0, 0.0)) + client.run() == []
    assert harness.core.utterances == []


def test_a_whole_file_in_one_blob_is_answered_once():
    harness = Harness(make_scenario(default={"reply": "hi"}))
    client = harness.connect()
    client.send(setup())
    out = client.send(audio_frame(pcm(0.5, 0.3) + pcm(1.0, 0.0))) + client.run()
    assert kinds(out).count("turnComplete") == 1 and len(harness.core.utterances) == 1


def test_silence_duration_setting_is_honoured():
    harness = Harness(make_scenario(default={"reply": "hi"}))
    client = harness.connect()
    client.send(setup(detection={"silenceDurationMs": 2000}))
    out = stream(client, pcm(0.5, 0.3) + pcm(1.5, 0.0)) + client.run()
    assert "turnComplete" not in kinds(out)  # a 1.5 s pause is not the end yet
    out = stream(client, pcm(0.6, 0.0)) + client.run()
    assert "turnComplete" in kinds(out)


def test_start_sensitivity_low_ignores_quiet_sound_that_high_takes():
    quiet = pcm(0.5, 0.01) + pcm(1.0, 0.0)  # about -43 dBFS
    for sensitivity, answered in (("START_SENSITIVITY_HIGH", True),
                                  ("START_SENSITIVITY_LOW", False)):
        harness = Harness(make_scenario(default={"reply": "hi"}))
        client = harness.connect()
        client.send(setup(detection={"startOfSpeechSensitivity": sensitivity}))
        out = stream(client, quiet) + client.run()
        assert ("turnComplete" in kinds(out)) is answered, sensitivity


def test_prefix_padding_rejects_speech_shorter_than_it():
    harness = Harness(make_scenario(default={"reply": "hi"}))
    client = harness.connect()
    client.send(setup(detection={"prefixPaddingMs": 300}))
    out = stream(client, pcm(0.2, 0.3) + pcm(1.0, 0.0)) + client.run()
    assert harness.core.utterances == [] and "turnComplete" not in kinds(out)


def test_audio_stream_end_flushes_speech_in_progress():
    harness = Harness(make_scenario(default={"reply": "hi"}))
    client = harness.connect()
    client.send(setup())
    stream(client, pcm(0.5, 0.3))
    out = client.send({"realtime_input": {"audioStreamEnd": True}}) + client.run()
    assert "turnComplete" in kinds(out)


def test_speech_over_a_reply_interrupts_it():
    harness = Harness(make_scenario(pace=1.0, default={"reply": " ".join(["word"] * 40)}))
    client = harness.connect()
    client.send(setup())
    stream(client, pcm(0.5, 0.3) + pcm(1.0, 0.0))
    harness.t += 0.5
    client.poll()
    out = stream(client, pcm(0.5, 0.3))
    assert "interrupted" in kinds(out)


# -- typed prompts and declared functions ---------------------------------------------------


def test_a_typed_prompt_leads_to_a_declared_function_call():
    harness = Harness(make_scenario(text_turns=[{**LIGHT_TURN, "match": "turn on"}]))
    client = harness.connect()
    client.send(setup(MODEL_2_5, functions=[{"name": "turn_on_the_lights",
                                             "behavior": "NON_BLOCKING"}]))
    out = client.send(text_prompt("Turn on the lights please")) + client.run()
    assert [c["name"] for c in calls(out)] == ["turn_on_the_lights"]
    out = client.respond(calls(out)[0]["id"], name="turn_on_the_lights") + client.run()
    assert harness.core.replies[-1].text == "They are on."


def test_usage_metadata_counts_a_typed_turn():
    harness = Harness(make_scenario(default={"reply": "fine thanks"}))
    client = harness.connect()
    client.send(setup(MODEL_2_5))
    out = client.send(text_prompt("Hello, how are you?")) + client.run()
    usage = next(m["usageMetadata"] for m in messages(out) if "usageMetadata" in m)
    assert usage["promptTokenCount"] == 5 and usage["totalTokenCount"] > 5


def test_an_undeclared_function_is_never_called_and_the_skip_is_recorded():
    harness = Harness(make_scenario(turns=[LIGHT_TURN]))
    client = harness.connect()
    client.send(setup(manual=True, functions=["set_light"]))
    out = client.utterance() + client.run()
    assert calls(out) == [] and harness.core.replies[0].text == "Turning them on."
    skipped = harness.core.skipped_calls[0]
    assert (skipped.name, skipped.declared) == ("turn_on_the_lights", ("set_light",))


def test_the_first_alternative_whose_functions_are_declared_is_played():
    set_light = {"reply": "Kitchen on.", "tool_calls": [{"name": "set_light"}]}
    plain = {"reply": "I cannot do that here."}
    harness = Harness(make_scenario(turns=[{**LIGHT_TURN, "alternatives": [set_light, plain]}]))
    declared = harness.connect()
    declared.send(setup(manual=True, functions=["set_light"]))
    out = declared.utterance() + declared.run()
    assert [c["name"] for c in calls(out)] == ["set_light"]
    bare = harness.connect()
    bare.send(setup(manual=True))
    bare.utterance()
    bare.run()
    assert harness.core.replies[-1].text == "I cannot do that here."


def test_a_reply_waits_for_its_synchronous_call():
    harness = Harness(make_scenario(turns=[LIGHT_TURN]))
    client = harness.connect()
    client.send(setup(MODEL_2_5, manual=True, functions=["turn_on_the_lights"]))
    out = client.utterance() + client.run()
    assert "toolCall" in kinds(out) and "chunk" not in kinds(out)
    out = client.respond(calls(out)[0]["id"], name="turn_on_the_lights") + client.run()
    assert kinds(out).count("chunk") > 0 and "turnComplete" in kinds(out)


# -- families -------------------------------------------------------------------------------


def test_3_1_cancels_a_synchronous_call_12_s_after_new_input():
    harness = Harness(make_scenario(turns=[LIGHT_TURN]))
    client = harness.connect()
    client.send(setup(MODEL_3_1, manual=True, functions=["turn_on_the_lights"]))
    call_id = calls(client.utterance() + client.run(limit=1))[0]["id"]
    client.send({"realtime_input": {"activityStart": {}}})
    harness.t += 11.9
    assert "toolCallCancellation" not in kinds(client.poll())
    harness.t += 0.2
    out = client.poll()
    assert messages(out)[0] == {"toolCallCancellation": {"ids": [call_id]}}


def test_interrupt_waits_for_the_user_on_3_8_and_not_on_2_5():
    for model, spoken_during_speech in ((MODEL_3_8, False), (MODEL_2_5, True)):
        turn = {**LIGHT_TURN, "reply": ""}
        harness = Harness(make_scenario(turns=[turn]))
        client = harness.connect()
        client.send(setup(model, manual=True, functions=[
            {"name": "turn_on_the_lights", "behavior": "NON_BLOCKING"}]))
        call_id = calls(client.utterance() + client.run())[0]["id"]
        client.send({"realtime_input": {"activityStart": {}}})
        out = client.respond(call_id, "INTERRUPT", name="turn_on_the_lights") + client.run()
        assert ("chunk" in kinds(out)) is spoken_during_speech, model
        client.send({"realtime_input": {"activityEnd": {}}})
        client.run()
        texts = [r.text for r in harness.core.replies][1:]
        # 3.8 speaks the result once the user has finished, before its answer to them.
        assert texts == ["They are on.", "Hello! How can I help?"], model


def test_transparent_resumption_carries_the_message_index_except_on_3_1():
    for model, expected in ((MODEL_3_8, True), (MODEL_3_1, False)):
        harness = Harness(make_scenario())
        client = harness.connect()
        out = client.send(setup(model, manual=True, sessionResumption={"transparent": True}))
        update = next(m["sessionResumptionUpdate"] for m in messages(out)
                      if "sessionResumptionUpdate" in m)
        assert ("lastConsumedClientMessageIndex" in update) is expected, model


# -- habits ---------------------------------------------------------------------------------


def test_duplicate_calls_come_as_tool_call_and_as_model_turn_parts():
    harness = Harness(make_scenario(turns=[{**LIGHT_TURN, "duplicate_calls": True}]))
    client = harness.connect()
    client.send(setup(manual=True, functions=["turn_on_the_lights"]))
    out = client.utterance() + client.run()
    call = calls(out)[0]
    parts = [part for m in messages(out)
             for part in m.get("serverContent", {}).get("modelTurn", {}).get("parts", [])
             if "functionCall" in part]
    assert parts == [{"functionCall": call}]


def test_no_turn_complete_ends_with_generation_complete_only():
    harness = Harness(make_scenario(default={"reply": "hi", "turn_complete": False}))
    client = harness.connect()
    client.send(setup(manual=True))
    out = client.utterance() + client.run()
    assert "generationComplete" in kinds(out) and "turnComplete" not in kinds(out)
    assert handles(out)  # the session goes on: a handle follows


def test_silent_turn_fault_gives_turn_complete_with_no_content():
    harness = Harness(make_scenario(default={"reply": "hi"}))
    client = harness.connect()
    client.send(setup(manual=True))
    harness.core.inject_fault(parse_fault("silent_turn"), harness.t)
    out = client.utterance() + client.run()
    assert [k for k in kinds(out) if k not in ("handle", "not_resumable")] == ["turnComplete"]
    out = client.utterance() + client.run()
    assert "chunk" in kinds(out)  # one turn only


def test_untriggered_goaway_fires_s_seconds_into_the_first_session_and_closes_1008():
    harness = Harness(make_scenario(faults=["goaway:30:1008"]))
    client = harness.connect()
    client.send(setup(manual=True))
    harness.t += 29.9
    assert "goAway" not in kinds(client.poll())
    harness.t += 0.1
    assert messages(client.poll()) == [{"goAway": {"timeLeft": "30s"}}]
    harness.t += 30
    closing = client.poll()
    assert closing[-1].code == 1008 and closing[-1].reason == "The operation was aborted."


def test_a_text_only_session_gets_a_goaway_closing_1011_deadline_expired():
    harness = Harness(make_scenario(faults=["goaway:5"]))
    client = harness.connect()
    client.send(setup(MODEL_2_5, generationConfig={"responseModalities": ["TEXT"]}))
    client.send(text_prompt("hi"))
    out = client.run(limit=20)
    assert "goAway" in kinds(out)
    assert out[-1].code == 1011
    assert out[-1].reason == "Deadline expired before operation could complete."


def test_frequent_updates_are_not_resumable_while_the_model_speaks():
    harness = Harness(make_scenario(pace=1.0, default={"reply": " ".join(["word"] * 30)},
                                    resumption_updates_every_s=1.0))
    client = harness.connect()
    client.send(setup(manual=True))
    client.utterance()
    during = []
    for _ in range(3):
        harness.t += 1.0
        during += client.poll()
    assert kinds(during).count("not_resumable") >= 3
    client.run(limit=30)
    harness.t += 1.0
    assert "handle" in kinds(client.poll())


def test_a_scenario_with_an_unknown_family_is_refused_at_load():
    from edgevoice_testbed.emulator.scenario import Scenario, ScenarioError

    with pytest.raises(ScenarioError, match="unknown family 'gemini-9'"):
        Scenario.from_data({"models": {"x": "gemini-9"}})


def test_fault_syntax_for_the_habits():
    assert str(parse_fault("goaway:50:1008")) == "goaway:50:1008"
    with pytest.raises(ValueError, match="slow_pong takes 0 to 60"):
        parse_fault("slow_pong:90")
    json.dumps(FRAME)  # the shared frame stays importable


# -- a resume refused (live-models.md: refused with 1007 after a 1011 "Deadline expired") --


def test_a_refused_resume_closes_1007_at_setup_and_the_session_is_gone_for_good():
    harness = Harness(make_scenario(faults=["refuse_resume"]))
    first = harness.connect()
    first.send(setup(manual=True))  # a fresh session is not a resume: not refused
    first.utterance()
    first.run()
    handle = handles(first.actions)[-1]
    first.conn.connection_lost(harness.t, 1011, "Deadline expired", "server")
    refused = harness.connect()
    out = refused.send(setup(manual=True, sessionResumption={"handle": handle}))
    assert [(a.code, a.reason) for a in out] == [(1007, "Request contains an invalid argument.")]
    assert not refused.conn.record.accepted and refused.conn.record.resumed_handle == handle
    assert [(f.connection_id, f.fault) for f in harness.core.fired_faults] == [(2, "refuse_resume")]
    # Fires once, and takes the session with it: the same handle again is unknown.
    refused.conn.connection_lost(harness.t, 1007, "", "server")
    again = harness.connect()
    assert again.send(setup(manual=True, sessionResumption={"handle": handle}))[0].reason == (
        "invalid session resumption handle")
    again.conn.connection_lost(harness.t, 1007, "", "server")
    fresh = harness.connect()
    assert kinds(fresh.send(setup(manual=True)))[0] == "setupComplete"


def test_a_refused_resume_armed_at_its_trigger_with_its_own_code_and_reason():
    spec = {"kind": "refuse_resume", "value": 1011, "when": "reply:1:chunk:1",
            "reason": "Internal error encountered."}
    harness = Harness(make_scenario(faults=[spec]))
    client = harness.connect()
    client.send(setup(manual=True))
    handle = handles(client.actions)[0]
    client.conn.connection_lost(harness.t, 1006, "", "lost")
    # Not armed yet: this resume works.
    resumed = harness.connect()
    assert kinds(resumed.send(setup(manual=True, sessionResumption={"handle": handle})))[0] == (
        "setupComplete")
    resumed.utterance()
    resumed.run()
    handle = handles(resumed.actions)[-1]
    resumed.conn.connection_lost(harness.t, 1006, "", "lost")
    (close,) = harness.connect().send(setup(manual=True, sessionResumption={"handle": handle}))
    assert (close.code, close.reason) == (1011, "Internal error encountered.")


def test_a_refused_resume_injected_without_a_trigger_waits_for_the_next_resume():
    harness = Harness()
    client = harness.connect()
    handle = handles(client.send(setup(manual=True)))[0]
    harness.core.inject_fault(parse_fault("refuse_resume:1008"), harness.t)
    assert not client.poll() and client.conn.record.close_code is None  # nothing now
    client.conn.connection_lost(harness.t, 1000, "", "client")
    (close,) = harness.connect().send(setup(manual=True, sessionResumption={"handle": handle}))
    assert close.code == 1008


def test_refuse_resume_syntax():
    assert parse_fault("refuse_resume").code == 1007
    assert str(parse_fault("refuse_resume:1011@reply:2:chunk:1")) == "refuse_resume:1011@reply:2:chunk:1"
    with pytest.raises(ValueError, match="not a close code a server can send"):
        parse_fault("refuse_resume:1006")
    with pytest.raises(ValueError, match="CODE of refuse_resume must be a whole number"):
        parse_fault("refuse_resume:soon")

"""Key normalisation, fault specs, scenario files and voices."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevoice.errors import UserError
from edgevoice_testbed.emulator import Fault, Scenario, ScenarioError, Trigger, parse_fault
from edgevoice_testbed.emulator.voice import EspeakVoice, ToneVoice, VoiceError, parse_wav
from edgevoice_testbed.emulator.wire import (
    duration_string,
    normalise,
    rate_from_mime,
    snake_to_camel,
)

# --- wire ----------------------------------------------------------------------------------------


def test_normalise_camelises_keys_recursively():
    snake = {
        "realtime_input": {"audio": {"mime_type": "audio/pcm", "data": "AA=="}},
        "setup": {
            "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
            "context_window_compression": {"sliding_window": {"target_tokens": 5}},
        },
    }
    assert normalise(snake) == {
        "realtimeInput": {"audio": {"mimeType": "audio/pcm", "data": "AA=="}},
        "setup": {
            "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
            "contextWindowCompression": {"slidingWindow": {"targetTokens": 5}},
        },
    }


def test_normalise_keeps_user_data_keys():
    message = {
        "tool_response": {
            "function_responses": [{"id": "1", "response": {"entity_id": "light.kitchen", "is_on": True}}]
        },
        "tools": [
            {
                "function_declarations": [
                    {
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"entity_id": {"type": "STRING", "min_length": 1}},
                            "property_ordering": ["entity_id"],
                        }
                    }
                ]
            }
        ],
    }
    result = normalise(message)
    assert result["toolResponse"]["functionResponses"][0]["response"] == {
        "entity_id": "light.kitchen",
        "is_on": True,
    }
    parameters = result["tools"][0]["functionDeclarations"][0]["parameters"]
    assert parameters["properties"] == {"entity_id": {"type": "STRING", "minLength": 1}}
    assert parameters["propertyOrdering"] == ["entity_id"]


_keys = st.from_regex(r"[a-z]{1,5}(_[a-z]{1,5}){0,3}", fullmatch=True)
_docs = st.recursive(
    st.integers() | st.text(max_size=3),
    lambda inner: st.dictionaries(_keys, inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)


@given(_docs)
def test_normalise_is_idempotent(document):
    once = normalise(document)
    assert normalise(once) == once


@given(_keys)
def test_snake_to_camel_leaves_no_underscore(key):
    camel = snake_to_camel(key)
    assert "_" not in camel and camel.lower() == key.replace("_", "")


@pytest.mark.parametrize(
    "mime,rate",
    [
        ("audio/pcm;rate=16000", 16000),
        ("audio/pcm; rate=48000", 48000),
        ("audio/pcm", None),
        (None, None),
        ("audio/pcm;rate=x", None),
    ],
)
def test_rate_from_mime(mime, rate):
    assert rate_from_mime(mime) == rate


def test_duration_string():
    assert [duration_string(s) for s in (10, 0.5, 1.25)] == ["10s", "0.5s", "1.25s"]


# --- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("drop@utterance:2:frame:10", Fault("drop", None, Trigger("utterance", 2, 10))),
        ("close:1011@reply:1:chunk:3", Fault("close", 1011, Trigger("reply", 1, 3))),
        ("goaway:5", Fault("goaway", 5)),
        ("refuse:2.5@utterance:1:frame:1", Fault("refuse", 2.5, Trigger("utterance", 1, 1))),
        ("stall@reply:2:chunk:1", Fault("stall", None, Trigger("reply", 2, 1))),
        ("delay:1500", Fault("delay", 1500)),
        ("restart@utterance:3:frame:5", Fault("restart", None, Trigger("utterance", 3, 5))),
        ("  DROP  ", Fault("drop")),
        ("refuse_resume", Fault("refuse_resume")),
        ("refuse_resume:1011@reply:1:chunk:2", Fault("refuse_resume", 1011, Trigger("reply", 1, 2))),
    ],
)
def test_parse_fault(spec, expected):
    fault = parse_fault(spec)
    assert fault == expected
    assert parse_fault(str(fault)) == fault


def test_fault_units():
    assert parse_fault("delay:1500").seconds == 1.5
    assert parse_fault("goaway:5").seconds == 5.0
    assert parse_fault("close:4000").code == 4000


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "empty"),
        ("explode", "unknown kind 'explode'"),
        ("close", "close needs a value (close:CODE)"),
        ("close:abc", "CODE of close must be a number"),
        ("close:1006", "not a close code a server can send"),
        ("close:999", "not a close code a server can send"),
        ("goaway:-1", "must be a finite number >= 0"),
        ("drop:5", "drop takes no value"),
        ("drop@", "nothing after '@'"),
        ("drop@utterance:2", "expected utterance:N:frame:K or reply:N:chunk:K"),
        ("drop@utterance:0:frame:1", "N and K count from 1"),
        ("drop@reply:1:frame:1", "expected utterance:N:frame:K"),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError) as raised:
        parse_fault(spec)
    assert message in str(raised.value)
    if spec:
        assert repr(spec) in str(raised.value)


_fault_specs = st.one_of(
    st.just("drop"),
    st.just("stall"),
    st.just("restart"),
    st.builds("close:{}".format, st.sampled_from([1000, 1001, 1007, 1008, 1011, 3000, 4999])),
    st.builds("goaway:{}".format, st.integers(0, 600)),
    st.builds("refuse:{}".format, st.integers(0, 60)),
    st.builds("delay:{}".format, st.integers(0, 10000)),
    st.just("refuse_resume"),
    st.builds("refuse_resume:{}".format, st.sampled_from([1007, 1008, 1011, 4000])),
).flatmap(
    lambda head: st.one_of(
        st.just(head),
        st.builds(lambda n, k: f"{head}@utterance:{n}:frame:{k}", st.integers(1, 99), st.integers(1, 999)),
        st.builds(lambda n, k: f"{head}@reply:{n}:chunk:{k}", st.integers(1, 99), st.integers(1, 99)),
    )
)


@given(_fault_specs)
def test_fault_specs_round_trip(spec):
    assert str(parse_fault(spec)) == spec


# --- scenarios -----------------------------------------------------------------------------------


def test_packaged_default_scenario():
    scenario = Scenario.default()
    (turn,) = scenario.turns
    assert turn.input_transcript == "Turn on the kitchen light"
    (call,) = turn.tool_calls
    assert (call.name, call.args) == ("set_light", {"entity": "kitchen light", "on": True})
    assert turn.reply == "Okay, turning on the kitchen light."
    assert turn.follow_up == "The kitchen light is on."
    assert scenario.turn_for(2) is scenario.default_turn and scenario.default_turn.reply
    assert {turn.reply, turn.follow_up, scenario.default_turn.reply} <= scenario.spoken_texts()
    # The call follows the client's declarations: Google's examples declare turn_on_the_lights.
    assert [alt.tool_calls[0].name for alt in turn.alternatives if alt.tool_calls] == [
        "turn_on_the_lights"]
    typed = scenario.text_turn_for("Turn on the lights please")
    assert [call.name for call in typed.tool_calls] == ["turn_on_the_lights"]
    assert scenario.text_turn_for("Hello, how are you?") is scenario.default_turn
    every_reply = {t.reply for t in [*scenario.turns, *scenario.text_turns, scenario.default_turn]}
    assert every_reply <= scenario.spoken_texts()


def test_scenario_object_faults_and_defaults():
    scenario = Scenario.model_validate(
        {
            "faults": [
                "drop@utterance:2:frame:10",
                {"kind": "close", "value": 1008, "when": "reply:1:chunk:2", "reason": "policy"},
            ]
        }
    )
    assert scenario.faults[1] == Fault("close", 1008, Trigger("reply", 1, 2), "policy")
    assert scenario.voice == "espeak" and scenario.pace == 4.0 and scenario.chunk_ms == 200
    assert scenario.handle_ttl_s == 7200
    assert Scenario().turn_for(1) == Scenario().default_turn


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "scenario.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.mark.parametrize(
    "data,message",
    [
        (
            {"turns": [{"reply": "x", "tool_calls": [{"name": "a", "when": "later"}]}]},
            "turns[0].tool_calls[0].when: 'later' is not a placement",
        ),
        ({"turns": [{"reply": 5}]}, "turns[0].reply: Input should be a valid string"),
        ({"turns": [{"replly": "typo"}]}, "turns[0].replly: Extra inputs are not permitted"),
        ({"faults": ["drop@utterance:x"]}, "faults[0]: bad fault 'drop@utterance:x'"),
        ({"pace": "slow"}, "pace: pace must be a number > 0"),
        ({"voice": "robot"}, "voice: Input should be 'espeak' or 'tone'"),
        ({"default": {"cancel": {"after_ms": 5}}}, "default: cancel without tool_calls"),
        (
            {"turns": [{"inject": [{"text": "a", "binary_base64": "AA=="}]}]},
            "turns[0].inject[0]: inject needs exactly one of text or binary_base64",
        ),
        ([], "the top level must be a JSON object"),
        ("{oops", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
    ],
)
def test_bad_scenario_file_gives_one_clear_message(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(ScenarioError) as raised:
        Scenario.load(path)
    text = str(raised.value)
    assert text.startswith(f"scenario {path}: ") and message in text
    assert "\n" not in text and isinstance(raised.value, UserError)


def test_missing_scenario_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.load(tmp_path / "absent.json")


# --- voices --------------------------------------------------------------------------------------


def test_tone_voice_is_deterministic_and_sized_by_words():
    voice = ToneVoice()
    pcm = voice.render("one two")
    assert pcm == ToneVoice().render("one two")
    # Per word: 80 ms + 20 ms per letter of tone, then 30 ms of silence; 2 bytes per sample.
    assert len(pcm) == 2 * (int(24000 * 0.14) + int(24000 * 0.03)) * 2
    assert voice.render("one") != voice.render("two") and voice.render("  ") == b""


def test_parse_wav_reads_a_streamed_header():
    pcm = struct.pack("<4h", 1, -1, 2, -2)
    fmt = struct.pack("<HHIIHH", 1, 1, 22050, 44100, 2, 16)
    data = (
        b"RIFF"
        + struct.pack("<I", 0x7FFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", 0x7FFFF000)
        + pcm
    )
    assert parse_wav(data) == (22050, 1, pcm)
    with pytest.raises(VoiceError):
        parse_wav(b"not a wav")


def test_missing_espeak_program_is_a_voice_error():
    with pytest.raises(VoiceError, match="failed"):
        EspeakVoice(program="/nonexistent/espeak-ng").render("hello")


@pytest.mark.skipif(not EspeakVoice.available(), reason="espeak-ng is not installed")
def test_espeak_voice_renders_24khz_speech():
    import numpy as np

    pcm = EspeakVoice().render("-Okay, turning on the kitchen light.")
    samples = np.frombuffer(pcm, dtype="<i2")
    assert 1.0 < len(samples) / 24000 < 5.0
    assert np.sqrt(np.mean(samples.astype(np.float64) ** 2)) > 300  # speech, not silence

"""The conversation on each model family the device supports, end to end: a push-to-talk
turn that calls a function, the next question asked while the call runs, a drop in the
middle of an utterance. No question is lost on any family; on 3.1 (synchronous calls
only) no realtime input goes out while a call is unanswered."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav

FAMILIES = [
    "gemini-3.8-live",
    "gemini-3.1-flash-live-preview",
    "gemini-2.5-flash-native-audio-preview-12-2025",
]
TURNS = [
    {
        "input_transcript": "turn on the kitchen light",
        "reply": "Sure.",
        "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    },
    {"input_transcript": "what time is it", "reply": "Half past seven."},
    {"input_transcript": "and the weather", "reply": "Sunny all day."},
]
PRESSES = [(0.2, 0.8), (1.5, 2.1), (5.0, 6.0)]


def realtime_frames(emulator, connection_id: int, start: float, end: float) -> list:
    return [
        f
        for f in emulator.received
        if f.connection_id == connection_id
        and f.message
        and "realtimeInput" in f.message
        and start < f.t < end
    ]


@pytest.mark.parametrize("model", FAMILIES)
async def test_no_question_is_lost_on_any_family(tmp_path: Path, emulator_factory, model: str) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 8.0)
    emulator = await emulator_factory(pace=1.0, turns=TURNS)
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=PRESSES,
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides={
                "audio": {"preroll_ms": 0},
                "live": {"model": model},
                "home": {"simulated": {"latency_s": 1.0}},
            },
            emulator=emulator,
            faults=["drop@utterance:3:frame:10"],
            timeout_s=60,
        )
    )
    assert {c.model for c in emulator.connections} == {f"models/{model}"}
    # Every question reached the server whole (the third again after the drop), in order.
    asked = [u.audio for u in emulator.utterances if u.complete]
    spoken = [mic[round(a * RATE) : round(b * RATE)].tobytes() for a, b in PRESSES]
    assert asked == spoken
    # And each was answered.
    answers = [line for line in result.transcript if line.startswith("assistant: ")]
    assert answers == ["assistant: Sure.", "assistant: Half past seven.", "assistant: Sunny all day."]
    [call] = emulator.tool_calls
    [response] = emulator.tool_responses
    assert response.id == call.id and response.response["ok"] is True
    if model.startswith("gemini-3.1"):
        # Synchronous calls only: nothing realtime while the call waited for its answer;
        # the second question went out after it.
        assert realtime_frames(emulator, call.connection_id, call.t, response.t) == []
        second = next(u for u in emulator.utterances if u.audio == spoken[1])
        assert second.start_t > response.t


LONG = "Once upon a time there was a light in a kitchen that wanted to shine all night long."


@pytest.mark.parametrize("model", FAMILIES)
async def test_barge_in_goaway_and_a_restart_lose_nothing_on_any_family(
    tmp_path: Path, emulator_factory, model: str
) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 10.0)
    turns = [
        {"input_transcript": "tell me a story", "reply": LONG},
        {"input_transcript": "stop, what time is it", "reply": "Half past seven, and a fine evening."},
        {"input_transcript": "thanks", "reply": "You are welcome."},
    ]
    emulator = await emulator_factory(pace=1.0, turns=turns, faults=["goaway:5"])
    presses = [(0.2, 0.8), (2.0, 2.6), (7.0, 7.6)]
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=presses,
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides={"audio": {"preroll_ms": 0}, "live": {"model": model}},
            emulator=emulator,
            state_dir=tmp_path / "state",
            # The daemon restarts as the third answer starts.
            faults=["restart@reply:3:chunk:1"],
            timeout_s=60,
        )
    )
    assert len(result.daemons) == 2
    spoken = [mic[round(a * RATE) : round(b * RATE)].tobytes() for a, b in presses]
    asked = [u.audio for u in emulator.utterances if u.complete]
    # Each question reached the server whole; only the one cut by the restart twice.
    assert [spoken.index(a) for a in asked] in ([0, 1, 2, 2], [0, 1, 2])
    # The story was cut by the press; the other two were answered.
    assert emulator.replies[0].interrupted
    answers = [line for line in result.transcript if line.startswith("assistant: ")]
    assert "assistant: Half past seven, and a fine evening." in answers
    assert answers[-1] == "assistant: You are welcome."
    # GoAway: the device left in time and resumed, no close from the server.
    assert any(f.fault.startswith("goaway") for f in emulator.fired_faults)
    assert len(emulator.connections) >= 3  # the first, after the GoAway, after the restart
    assert all(c.closed_by != "server" for c in emulator.connections)

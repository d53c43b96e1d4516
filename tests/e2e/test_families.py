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

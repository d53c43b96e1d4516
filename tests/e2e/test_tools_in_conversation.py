"""Tools through the whole daemon: the conversation never waits for a device."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevoice.service.daemon import STREAMING_READ_PERIODS
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav

SLOW_HOME = {"home": {"simulated": {"latency_s": 2.0}}, "audio": {"preroll_ms": 0}}


def audio_frame_times(emulator, connection_id: int) -> list[float]:
    return [
        f.t
        for f in emulator.received
        if f.connection_id == connection_id and f.message and "audio" in f.message.get("realtimeInput", {})
    ]


async def test_a_2_s_call_while_the_user_talks_and_the_answer_plays(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 8.0)
    emulator = await emulator_factory(
        pace=1.0,
        turns=[
            {
                "input_transcript": "turn on the kitchen light",
                "reply": "Sure.",
                "tool_calls": [
                    {
                        "name": "set_light",
                        "args": {"entity": "kitchen light", "on": True},
                        "when": "before_reply",
                    }
                ],
            },
            {
                "input_transcript": "and tell me a story",
                "reply": "Once upon a time there was a light in a kitchen that wanted to shine all night.",
            },
        ],
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            # The second question is asked while the light is still switching (2 s), and
            # its answer starts playing before the light has answered.
            presses=[(0.2, 0.8), (1.6, 2.2)],
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides=SLOW_HOME,
            emulator=emulator,
        )
    )
    [call] = emulator.tool_calls
    [response] = emulator.tool_responses
    # The response came back afterwards, matching id and name, with the policy's scheduling.
    assert (response.id, response.name, response.scheduling) == (call.id, "set_light", "WHEN_IDLE")
    assert response.known and response.response["ok"] is True
    assert response.t - call.t >= 2.0
    # While the call ran, the second question streamed: a frame per read (two 20 ms periods).
    second = emulator.utterances[1]
    assert call.t < second.start_t and second.end_t < response.t
    frames = [
        t for t in audio_frame_times(emulator, second.connection_id) if second.start_t <= t <= second.end_t
    ]
    assert len(frames) >= 0.8 * (second.end_t - second.start_t) / (0.02 * STREAMING_READ_PERIODS)
    assert np.diff(frames).max() < 0.1
    # Its answer started while the call was still running, and played whole, in order.
    story = emulator.replies[1]
    assert story.start_t < response.t and not story.interrupted and story.finished
    output = (tmp_path / "out.wav").read_bytes()
    position = 0
    for offset in range(0, len(story.audio), 9600):
        found = output.find(story.audio[offset : offset + 9600], position)
        assert found >= position
        position = found
    assert "Kitchen light is on" in result.daemon.toolbox.describe_state()


async def test_a_cancelled_call_gets_no_response(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(
        turns=[
            {
                "input_transcript": "open the garage",
                "reply": "Opening the garage door.",
                "tool_calls": [{"name": "set_cover", "args": {"entity": "garage door", "action": "open"}}],
                "cancel": {"after_ms": 300},
            }
        ],
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 1.0)],
            out=tmp_path / "o.wav",
            earcons=False,
            overrides=SLOW_HOME,
            emulator=emulator,
        )
    )
    assert len(emulator.tool_calls) == 1
    assert emulator.tool_responses == []
    assert "Garage door is closed" in result.daemon.toolbox.describe_state()

"""Volume and microphone mute by voice, through the whole daemon on simulated hardware."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edgevoice.audio.earcons import render
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav

PERIOD_SAMPLES = 24000 * 20 // 1000  # one 20 ms playback period


def audio_frames_after(emulator, t: float) -> int:
    return sum(
        1
        for f in emulator.received
        if f.t > t and f.message and "audio" in f.message.get("realtimeInput", {})
    )


async def test_volume_by_voice_applies_from_the_next_period_of_the_answer_and_is_kept(
    tmp_path: Path, emulator_factory
) -> None:
    noise_wav(tmp_path / "mic.wav", 2.0)
    # The answer arrives at speaking pace; the (unpaced) speaker plays each chunk as it comes.
    emulator = await emulator_factory(
        pace=1.0,
        turns=[
            {
                "input_transcript": "volume four",
                "reply": "Volume four it is, and this sentence goes on for a while to be heard.",
                "tool_calls": [
                    {"name": "set_volume", "args": {"level": 4}, "when": "after_chunk:3"}
                ],
            }
        ],
    )
    await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8)],
            out=tmp_path / "out.wav",
            earcons=False,
            overrides={"audio": {"preroll_ms": 0}},
            emulator=emulator,
            state_dir=tmp_path / "state",
        )
    )
    [response] = emulator.tool_responses
    assert response.response["ok"] is True
    reply = np.frombuffer(emulator.replies[0].audio, "<i2").astype(np.float64)
    played = np.frombuffer((tmp_path / "out.wav").read_bytes()[44:], "<i2").astype(np.float64)
    assert len(played) == len(reply)
    # The output is the reply at gain 1 up to a period boundary, and at gain 0.4 from there.
    quieter = np.clip(np.rint(reply * 0.4), -32768, 32767)
    differs = np.flatnonzero(played != reply)
    switch = differs[0] // PERIOD_SAMPLES * PERIOD_SAMPLES
    assert np.array_equal(played[:switch], reply[:switch])
    assert np.array_equal(played[switch:], quieter[switch:])
    # The call came after the third 200 ms chunk: every sample the speaker had not yet
    # taken then was played at the new volume (the period being taken, at most, was not).
    chunk_samples = 24000 * 200 // 1000
    assert 0 < switch <= 3 * chunk_samples + PERIOD_SAMPLES
    state = json.loads((tmp_path / "state" / "device-state.json").read_text())
    assert state["volume_level"] == 4 and state["muted"] is False


async def test_a_muted_microphone_sends_nothing_and_a_press_plays_the_muted_sound(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(
        turns=[
            {
                "input_transcript": "mute the microphone",
                "reply": "Muted.",
                "tool_calls": [{"name": "mute_microphone", "args": {}}],
            }
        ],
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8), (1.5, 2.5)],
            out=tmp_path / "out.wav",
            overrides={"audio": {"preroll_ms": 0}},
            emulator=emulator,
            state_dir=tmp_path / "state",
        )
    )
    [call] = emulator.tool_calls
    [response] = emulator.tool_responses
    assert response.response == {"ok": True, "result": "The microphone is muted.", "state": {"muted": True}}
    # The second press was heard by nobody: no utterance, not one audio frame.
    assert len(emulator.utterances) == 1
    assert audio_frames_after(emulator, response.t) == 0
    output = (tmp_path / "out.wav").read_bytes()[44:]
    assert render("muted") in output
    daemon = result.daemon
    # Muted while idle (the daemon shows "offline" once it has stopped at the end of the run).
    assert daemon.household.muted
    assert "status: muted: the microphone is off" in caplog.text
    assert daemon.conversation.pending_utterances == 0
    state = json.loads((tmp_path / "state" / "device-state.json").read_text())
    assert state["muted"] is True
    assert call.t < response.t

"""A whole push-to-talk conversation on real libraries with simulated hardware."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav

NO_PREROLL = {"audio": {"preroll_ms": 0}}


def read_wav(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def client_frames(emulator, connection_id: int) -> list[dict]:
    return [f.message for f in emulator.received if f.connection_id == connection_id]


async def test_utterance_is_exactly_the_mic_samples_and_the_reply_is_bit_identical(
    tmp_path: Path, emulator_factory
) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(
        default={"input_transcript": "turn on the light", "reply": "Sure thing."}
    )
    out = tmp_path / "out.wav"
    trace = tmp_path / "trace.jsonl"
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.5013, 2.2571)],
            out=out,
            trace=trace,
            earcons=False,
            overrides=NO_PREROLL,
            emulator=emulator,
        )
    )
    [utterance] = emulator.utterances
    press, release = round(0.5013 * RATE), round(2.2571 * RATE)
    assert utterance.complete
    assert utterance.audio == mic[press:release].tobytes()  # none lost, duplicated or reordered
    # activityStart, then every audio frame, then activityEnd.
    frames = client_frames(emulator, utterance.connection_id)
    kinds = [next(iter(f.get("realtimeInput", {"other": 0}))) for f in frames]
    realtime = [k for k in kinds if k in ("activityStart", "audio", "activityEnd")]
    assert realtime[0] == "activityStart" and realtime[-1] == "activityEnd"
    assert set(realtime[1:-1]) == {"audio"}
    # The speaker played exactly what the emulator sent.
    [reply] = emulator.replies
    assert read_wav(out) == reply.audio and len(reply.audio) > 0
    assert result.transcript == ["you: turn on the light", "assistant: Sure thing."]
    # The trace has every frame and the button edges.
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [r["state"] for r in records if r.get("event") == "button"] == ["pressed", "released"]
    assert any(r.get("dir") == "client" and "setup" in r["msg"] for r in records)
    assert any(r.get("dir") == "server" and "setupComplete" in r["msg"] for r in records)
    sent_audio = sum(
        1 for r in records if r.get("dir") == "client" and "audio" in r["msg"].get("realtime_input", {})
    )
    assert sent_audio == kinds.count("audio")


async def test_preroll_brings_the_first_syllable(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory()
    await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(1.0, 2.0)],
            out=tmp_path / "o.wav",
            earcons=False,
            emulator=emulator,
        )
    )
    # Default pre-roll: 300 ms before the press, contiguous up to the release instant.
    assert emulator.utterances[0].audio == mic[round(0.7 * RATE) : round(2.0 * RATE)].tobytes()


async def test_two_turns_in_one_session(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 5.0)
    emulator = await emulator_factory(
        turns=[
            {"input_transcript": "first question", "reply": "First answer."},
            {"input_transcript": "second question", "reply": "Second answer."},
        ]
    )
    out = tmp_path / "out.wav"
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 1.4), (2.5, 4.1)],
            out=out,
            earcons=False,
            overrides=NO_PREROLL,
            emulator=emulator,
        )
    )
    assert [u.audio for u in emulator.utterances] == [
        mic[round(0.2 * RATE) : round(1.4 * RATE)].tobytes(),
        mic[round(2.5 * RATE) : round(4.1 * RATE)].tobytes(),
    ]
    assert len({u.connection_id for u in emulator.utterances}) == 1
    assert read_wav(out) == b"".join(r.audio for r in emulator.replies)
    assert result.transcript == [
        "you: first question",
        "assistant: First answer.",
        "you: second question",
        "assistant: Second answer.",
    ]


async def test_barge_in_stops_the_answer_within_a_period_and_starts_a_new_utterance(
    tmp_path: Path, emulator_factory
) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 5.0)
    long_answer = "This is a long answer that keeps going for quite a while so it can be interrupted."
    # Replies stream in real time, so the press lands while the story is still generated.
    emulator = await emulator_factory(
        pace=1.0,
        turns=[
            {"input_transcript": "tell me a story", "reply": long_answer},
            {"input_transcript": "stop", "reply": "Okay."},
        ],
    )
    out = tmp_path / "out.wav"
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8), (2.0, 2.6)],
            out=out,
            earcons=False,
            realtime=True,
            overrides=NO_PREROLL,
            emulator=emulator,
        )
    )
    first, second = emulator.replies
    assert first.interrupted and not second.interrupted
    assert emulator.utterances[1].audio == mic[round(2.0 * RATE) : round(2.6 * RATE)].tobytes()
    played = np.frombuffer(read_wav(out), dtype="<i2")
    story = np.frombuffer(first.audio, dtype="<i2")
    # The output starts with the story, bit for bit, up to the cut...
    start = read_wav(out).find(first.audio[:960]) // 2
    assert start >= 0
    matched = 0
    while (
        start + matched < len(played) and matched < len(story) and played[start + matched] == story[matched]
    ):
        matched += 1
    assert 0 < matched < len(story)
    story_end = start + matched
    # ...and no more than one playback period (20 ms = 480 frames) plus the fade came after the press.
    _pressed, heard_at_press = [edge for edge in result.button_edges if edge[0]][1]
    fade_frames = 120
    assert story_end + fade_frames - heard_at_press <= 480 + fade_frames
    # The fade ends the story without a click: no step larger than the story's own.
    cut = played[story_end : story_end + fade_frames].astype(int)
    max_story_step = int(np.abs(np.diff(story.astype(int))).max())
    assert np.abs(np.diff(cut)).max() <= max_story_step
    # The second answer plays after it, whole: every chunk in order (a real-time stream
    # may leave a counted underrun gap between chunks).
    output, position = read_wav(out), story_end * 2
    for offset in range(0, len(second.audio), 9600):
        found = output.find(second.audio[offset : offset + 9600], position)
        assert found >= position
        position = found

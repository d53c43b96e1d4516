"""A turn's ``chunk_pattern``: reply audio in chunks of given sizes, sent at given gaps."""

from __future__ import annotations

import base64
import itertools

import pytest

from edgevoice_testbed.emulator.scenario import Scenario, ScenarioError
from edgevoice_testbed.emulator.voice import ToneVoice
from tests.emulator.test_protocol import REPLY, Harness, make_scenario


def audio_frames(harness: Harness) -> list[tuple[float, bytes]]:
    out = []
    for frame in harness.core.sent:
        content = (frame.message or {}).get("serverContent", {})
        for part in content.get("modelTurn", {}).get("parts", []):
            if "inlineData" in part:
                out.append((frame.t, base64.b64decode(part["inlineData"]["data"])))
    return out


def test_chunks_follow_the_pattern_repeated():
    pattern = [[20, 10], [40, 0], [30, 50]]
    turn = {"reply": REPLY, "chunk_pattern": pattern}
    harness = Harness(make_scenario(default=turn, pace=1.0, chunk_ms=200))
    client = harness.connect()
    client.setup()
    client.utterance()
    client.run()
    frames = audio_frames(harness)
    sizes_ms = [len(pcm) / 2 / 24 for _, pcm in frames]
    expected = [entry[0] for entry in itertools.islice(itertools.cycle(pattern), len(frames) - 1)]
    assert sizes_ms[:-1] == expected and sizes_ms[-1] <= pattern[(len(frames) - 1) % 3][0]
    gaps_ms = [round((b[0] - a[0]) * 1000, 6) for a, b in itertools.pairwise(frames)]
    assert gaps_ms == [entry[1] for entry in itertools.islice(itertools.cycle(pattern), len(frames) - 1)]
    assert b"".join(pcm for _, pcm in frames) == ToneVoice().render(REPLY)


def test_a_bad_pattern_is_a_clear_error():
    with pytest.raises(ScenarioError, match="chunk_pattern"):
        Scenario.from_data({"default": {"reply": "x", "chunk_pattern": [[0, 10]]}})

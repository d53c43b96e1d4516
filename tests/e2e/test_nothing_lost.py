"""Nothing said is lost across a restart of the daemon, and a stalled reply is told once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import noise_wav
from tests.e2e.test_resumption import LIGHT_ON, NO_PREROLL, TWO_TURNS, complete_utterances, mic_slice, run


async def test_a_question_cut_by_sigterm_is_asked_again_after_the_restart(tmp_path: Path, emulator_factory):
    mic = noise_wav(tmp_path / "mic.wav", 5.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    state = tmp_path / "state"
    result = await run(
        tmp_path, emulator, [(0.3, 1.0), (2.0, 3.0)], faults=["restart@utterance:2:frame:5"], state_dir=state
    )
    assert len(result.daemons) == 2
    utterances = complete_utterances(emulator)
    # The second question was ended at the signal and asked again by the new daemon.
    cut = [u.audio for u in utterances if u.audio and mic_slice(mic, 2.0, 3.0).startswith(u.audio)]
    assert len(cut) >= 2 and len(set(cut)) == 1
    assert result.transcript.count("assistant: Second answer.") == 1
    assert result.daemon.conversation.pending_utterances == 0
    assert not (state / "ledger.json").exists()  # everything asked was answered


async def test_a_reply_stalled_and_asked_again_reads_once_in_the_transcript(tmp_path: Path, emulator_factory):
    noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    overrides = {"audio": {"preroll_ms": 0}, "live": {"reply_timeout_s": 2.0}}
    stall = ["stall@reply:1:chunk:2"]
    result = await run(tmp_path, emulator, [(0.3, 1.5)], faults=stall, overrides=overrides)
    answers = [line for line in result.transcript if line.startswith("assistant:")]
    assert answers == ["assistant: First answer, long enough to span chunks."]


async def test_a_device_action_running_at_sigterm_finishes_and_the_question_asked_again_hears_its_result(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=LIGHT_ON, pace=1.0)
    # The light takes a second to answer: the signal comes while it switches.
    overrides = {**NO_PREROLL, "home": {"simulated": {"latency_s": 1.0}}}
    result = await run(
        tmp_path,
        emulator,
        [(0.3, 1.0)],
        faults=["restart@reply:1:chunk:1"],
        state_dir=tmp_path / "state",
        overrides=overrides,
        realtime=True,
    )
    assert len(result.daemons) == 2
    first, again = emulator.tool_calls
    assert first.connection_id != again.connection_id
    # The stopping daemon waited for the light, so the question asked again was answered
    # with what it did, not with "already requested" and no result.
    answer = emulator.tool_responses[-1]
    assert answer.id == again.id
    assert answer.response["already_done"] is True and answer.response["ok"] is True
    assert "note" not in answer.response
    assert "unfinished" not in caplog.text
    assert "kitchen light" in json.dumps(answer.response).lower()

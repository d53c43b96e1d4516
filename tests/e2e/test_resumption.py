"""The conversation survives drops, resets, GoAway, refusals and restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav

NO_PREROLL = {"audio": {"preroll_ms": 0}}
TWO_TURNS = [
    {"input_transcript": "first question", "reply": "First answer, long enough to span chunks."},
    {"input_transcript": "second question", "reply": "Second answer."},
]


def mic_slice(mic, start_s: float, end_s: float) -> bytes:
    return mic[round(start_s * RATE) : round(end_s * RATE)].tobytes()


def complete_utterances(emulator) -> list:
    return [u for u in emulator.utterances if u.complete]


async def run(tmp_path: Path, emulator, presses, **options):
    overrides = options.pop("overrides", NO_PREROLL)
    return await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=presses,
            out=tmp_path / "out.wav",
            earcons=False,
            overrides=overrides,
            emulator=emulator,
            timeout_s=60,
            **options,
        )
    )


async def test_drop_mid_utterance_resends_it_whole_exactly_once(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    result = await run(tmp_path, emulator, [(0.3, 2.3)], faults=["drop@utterance:1:frame:20"])
    [complete] = complete_utterances(emulator)
    assert complete.audio == mic_slice(mic, 0.3, 2.3)
    first, resumed = emulator.connections[0], emulator.connections[1]
    assert first.closed_by == "abort" and resumed.resumed_handle is not None
    assert complete.connection_id == resumed.id
    assert [u.frames for u in emulator.utterances if not u.complete] == [20]
    assert result.transcript == [
        "you: first question",
        "assistant: First answer, long enough to span chunks.",
    ]


async def test_drop_mid_reply_asks_again_and_plays_the_answer_once(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    await run(tmp_path, emulator, [(0.3, 1.5)], faults=["drop@reply:1:chunk:2"])
    assert [u.audio for u in complete_utterances(emulator)] == [mic_slice(mic, 0.3, 1.5)] * 2
    whole = [r for r in emulator.replies if r.finished]
    assert len(whole) == 1
    # The cut-off answer is stopped, not finished and then replayed: the whole answer is
    # at the end of the output, and the partial one is not there in full before it.
    output = (tmp_path / "out.wav").read_bytes()
    assert output.endswith(whole[0].audio)
    assert output.count(whole[0].audio) == 1


# A question answered with a function call, and words after its result.
LIGHT_ON = [
    {
        "input_transcript": "turn on the kitchen light",
        "reply": "Turning it on.",
        "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
        "follow_up": "Done.",
    }
]


async def test_drop_while_a_tool_call_runs_delivers_the_result_as_text(
    tmp_path: Path, emulator_factory
) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=LIGHT_ON)
    overrides = {**NO_PREROLL, "home": {"simulated": {"latency_s": 1.0}}}
    await run(tmp_path, emulator, [(0.3, 1.2)], faults=["drop@reply:1:chunk:1"], overrides=overrides)
    # The call's id belongs to the dead connection: the result reached the new one in words.
    contents = [f.message["clientContent"] for f in emulator.received if "clientContent" in f.message]
    texts = [part["text"] for c in contents for turn in c["turns"] for part in turn["parts"]]
    assert any("set_light" in text and "Kitchen light is on" in text for text in texts), texts
    assert not [r for r in emulator.tool_responses if not r.known]


async def test_goaway_during_a_reply_lets_it_finish_then_switches(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 5.0)
    emulator = await emulator_factory(turns=TWO_TURNS, pace=2.0)
    await run(tmp_path, emulator, [(0.3, 1.0), (3.0, 3.6)], faults=["goaway:20@reply:1:chunk:1"])
    first, second = emulator.connections[0], emulator.connections[1]
    assert first.closed_by == "client"  # we left before the deadline, at an idle moment
    assert second.resumed_handle is not None
    assert [r.finished for r in emulator.replies] == [True, True]
    assert emulator.replies[0].connection_id == first.id and emulator.replies[1].connection_id == second.id
    output = (tmp_path / "out.wav").read_bytes()
    assert emulator.replies[0].audio in output  # not cut


async def test_server_refusing_connections_for_5_s_then_recovering(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 5.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    started = time.monotonic()
    result = await run(
        tmp_path,
        emulator,
        [(0.3, 1.0), (2.0, 3.5)],
        faults=["refuse:5@utterance:2:frame:10"],
        overrides={**NO_PREROLL, "live": {"reconnect_max_s": 1.0}},
    )
    assert time.monotonic() - started >= 5.0
    assert emulator.rejected_handshakes  # attempts were made and refused
    assert [u.audio for u in complete_utterances(emulator)][-1] == mic_slice(mic, 2.0, 3.5)
    assert result.transcript[-1] == "assistant: Second answer."
    assert result.daemon.conversation.pending_utterances == 0


async def test_a_restarted_daemon_resumes_from_the_persisted_handle(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 5.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    state = tmp_path / "state"
    result = await run(
        tmp_path, emulator, [(0.3, 1.0), (2.0, 3.0)], faults=["restart@utterance:2:frame:5"], state_dir=state
    )
    assert len(result.daemons) == 2
    handles = [c.resumed_handle for c in emulator.connections]
    assert handles[0] is None and handles[-1] is not None
    # The resumed session remembers the first exchange.
    assert any(entry.text == "first question" for entry in emulator.history)
    assert json.loads((state / "session.json").read_text())["handle"]


async def test_a_rejected_handle_leads_to_a_fresh_session(tmp_path: Path, emulator_factory) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    (state / "session.json").write_text(
        json.dumps({"handle": "no-such-handle", "saved_at": now, "last_alive": now})
    )
    result = await run(tmp_path, emulator, [(0.3, 1.2)], state_dir=state)
    refused, fresh = emulator.connections[0], emulator.connections[1]
    assert refused.resumed_handle == "no-such-handle" and refused.close_code == 1007
    assert fresh.resumed_handle is None and fresh.accepted
    assert complete_utterances(emulator)[0].audio == mic_slice(mic, 0.3, 1.2)
    assert result.transcript[0] == "you: first question"

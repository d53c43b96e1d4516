"""The real service's habits, played by the emulator against the whole daemon: for each,
what the user hears and sees, that nothing said is lost, and that the device does not
storm the service with reconnects (counted in the emulator's own records).

The slow retry plans wait minutes; here their first step is scaled to seconds (the
schedule's shape and status are the real ones), as the timer tests let seconds stand in for
minutes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgevoice.audio.earcons import render
from edgevoice.core import backoff
from edgevoice.core.backoff import Backoff, RetryPlan
from edgevoice.core.events import DownCause
from edgevoice.errors import UserError
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav

NO_PREROLL = {"audio": {"preroll_ms": 0}}
TURN = [{"input_transcript": "what time is it", "reply": "It is half past seven, a fine time."}]


def statuses(caplog) -> list[str]:
    prefix = "status: "
    return [r.getMessage()[len(prefix) :] for r in caplog.records if r.getMessage().startswith(prefix)]


def complete_utterances(emulator) -> list:
    return [u for u in emulator.utterances if u.complete]


async def run(tmp_path: Path, emulator, presses, **options):
    overrides = options.pop("overrides", NO_PREROLL)
    return await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=presses,
            out=tmp_path / "out.wav",
            earcons=options.pop("earcons", False),
            overrides=overrides,
            emulator=emulator,
            realtime=True,
            state_dir=tmp_path / "state",
            timeout_s=options.pop("timeout_s", 60),
            **options,
        )
    )


def scaled(monkeypatch, cause: DownCause, initial_s: float) -> None:
    """The cause's plan with its real status and shape, its first wait ``initial_s``."""
    plan = backoff.RETRY_PLANS[cause]
    assert plan.backoff is not None
    monkeypatch.setitem(
        backoff.RETRY_PLANS,
        cause,
        RetryPlan(plan.status, Backoff(initial_s, initial_s * 8, plan.backoff.multiplier, 0.25)),
    )


async def test_a_quota_refusal_backs_off_says_so_plays_an_error_on_a_press_and_answers_later(
    tmp_path: Path, emulator_factory, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    scaled(monkeypatch, DownCause.QUOTA_EXHAUSTED, 2.0)
    mic = noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(pace=1.0, turns=TURN, faults=["quota:3"])
    result = await run(tmp_path, emulator, [(0.5, 1.2)], earcons=True)
    # Refused twice at most in the 3 s (waits of 1.5-2 s, then 3-4 s), then served once.
    refused = [status for _, _, status in emulator.rejected_handshakes]
    assert refused and set(refused) == {429} and len(refused) <= 2
    assert len(emulator.connections) == 1
    shown = statuses(caplog)
    assert any(s.startswith("offline: quota exhausted, retrying in ") for s in shown), shown
    assert "kept for later: quota exhausted" in caplog.text
    # The press while refused played the error earcon, not the listening one.
    output = (tmp_path / "out.wav").read_bytes()[44:]
    assert render("error") in output
    # And the question was asked once the quota was back, whole, and answered.
    [asked] = complete_utterances(emulator)
    assert asked.audio == mic[round(0.5 * RATE) : round(1.2 * RATE)].tobytes()
    assert result.transcript[-1] == "assistant: It is half past seven, a fine time."


async def test_an_expired_key_waits_long_keeps_the_question_and_never_storms(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 4.0)
    expired = {"kind": "close", "value": 1007, "reason": "API key expired. Please renew the API key."}
    emulator = await emulator_factory(pace=1.0, turns=TURN, faults=[expired])
    with pytest.raises(UserError, match=r"the Gemini API key was refused, retrying in 1[1-5] min"):
        await run(tmp_path, emulator, [(1.0, 1.6)], timeout_s=4)
    # One connection, closed by the server; no retry within the run.
    assert len(emulator.connections) == 1 and not emulator.rejected_handshakes
    assert "renew it" in caplog.text
    # The question is kept for when the key works again.
    saved = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert len(saved["utterances"]) == 1


async def test_an_unknown_model_is_not_retried_in_a_loop(tmp_path: Path, emulator_factory, caplog) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(pace=1.0, turns=TURN)
    overrides = {**NO_PREROLL, "live": {"model": "gemini-2.0-flash-live-001"}}
    with pytest.raises(UserError, match="model not found, retrying in "):
        await run(tmp_path, emulator, [(1.0, 1.6)], timeout_s=4, overrides=overrides)
    [refused] = emulator.connections
    assert refused.close_code == 1008 and not refused.accepted
    assert "set live.model" in caplog.text
    saved = json.loads((tmp_path / "state" / "ledger.json").read_text())
    assert len(saved["utterances"]) == 1


@pytest.mark.parametrize("code", [1008, 1011])
async def test_goaway_then_a_close_loses_nothing(tmp_path: Path, emulator_factory, code: int) -> None:
    mic = noise_wav(tmp_path / "mic.wav", 8.0)
    # GoAway 4 s into the session (the real one says 50 s), the close when it runs out.
    emulator = await emulator_factory(pace=1.0, turns=TURN * 2, faults=[f"goaway:4:{code}"])
    result = await run(tmp_path, emulator, [(0.3, 0.9), (6.0, 6.6)])
    first, second = complete_utterances(emulator)
    assert first.audio == mic[round(0.3 * RATE) : round(0.9 * RATE)].tobytes()
    assert second.audio == mic[round(6.0 * RATE) : round(6.6 * RATE)].tobytes()
    assert result.transcript.count("assistant: It is half past seven, a fine time.") == 2
    # The device left before the deadline and resumed: two connections, no close from
    # the server, no storm.
    old, new = emulator.connections
    assert old.closed_by == "client" and new.resumed_handle is not None
    assert second.connection_id == new.id


async def test_a_call_that_comes_twice_runs_once(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 4.0)
    turn = {
        "input_transcript": "kitchen light on",
        "reply": "Done.",
        "tool_calls": [{"name": "set_light", "args": {"entity": "light.kitchen", "on": True}}],
    }
    emulator = await emulator_factory(pace=1.0, turns=[turn], faults=["duplicate_calls"])
    await run(tmp_path, emulator, [(0.5, 1.2)])
    [call] = emulator.tool_calls
    [response] = emulator.tool_responses
    assert response.id == call.id


@pytest.mark.parametrize("habit", ["no_turn_complete", "slow_pong:8", "not_resumable:1"])
async def test_an_answer_ends_and_the_link_holds_whatever_the_habit(
    tmp_path: Path, emulator_factory, habit: str, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 6.0)
    emulator = await emulator_factory(pace=1.0, turns=TURN * 2, faults=[habit])
    result = await run(tmp_path, emulator, [(0.5, 1.2), (3.0, 3.6)])
    assert len(complete_utterances(emulator)) == 2  # each question asked once
    # Both answers heard (the simulator prints a turn's words at its turnComplete, so
    # with no turnComplete the two may share a line).
    assert "\n".join(result.transcript).count("It is half past seven, a fine time.") == 2
    assert len(emulator.connections) == 1  # a healthy connection is never killed
    assert "connection lost" not in caplog.text


async def test_a_silent_turn_is_asked_once_more_and_answered(tmp_path: Path, emulator_factory) -> None:
    noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(pace=1.0, turns=TURN * 2, faults=["silent_turn"])
    result = await run(tmp_path, emulator, [(0.5, 1.2)])
    first, again = complete_utterances(emulator)
    assert first.audio == again.audio
    assert result.transcript[-1] == "assistant: It is half past seven, a fine time."
    assert len(emulator.connections) == 1


DEADLINE_EXPIRED = {"kind": "close", "value": 1011, "when": "reply:1:chunk:2",
                    "reason": "Deadline expired before operation could complete."}
LONG_TURN = [{"input_transcript": "what time is it",
              "reply": "It is half past seven, a fine time for a walk along the river."}]


@pytest.mark.parametrize(
    "ended_by",
    [
        # GoAway 0.2 s into the question; the device switches 1 s later, mid-question.
        "goaway:2@utterance:1:frame:10",
        # The service's 1011 "Deadline expired" at any connection age, mid-answer.
        DEADLINE_EXPIRED,
    ],
    ids=["goaway", "deadline-expired"],
)
async def test_a_resume_refused_after_the_close_starts_a_fresh_session_and_answers_once(
    tmp_path: Path, emulator_factory, caplog, ended_by
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    mic = noise_wav(tmp_path / "mic.wav", 6.0)
    # Answers come faster than real time (as the service's bursts do), so what the speaker
    # played can be compared byte for byte with what was sent.
    emulator = await emulator_factory(turns=LONG_TURN, faults=[ended_by, "refuse_resume"])
    result = await run(tmp_path, emulator, [(0.5, 3.0)])
    first, refused, fresh = emulator.connections
    # One resume, refused at its setup as the service does; then a fresh session, never the
    # dead handle again.
    assert [c.resumed_handle is not None for c in emulator.connections] == [False, True, False]
    assert (refused.close_code, refused.close_reason, refused.accepted) == (
        1007, "Request contains an invalid argument.", False)
    assert fresh.accepted and fresh.session_id != first.session_id
    assert emulator.utterances[0].connection_id == first.id  # it was in flight
    # The question in flight was asked again, whole, on the fresh session, and answered once.
    asked = mic[round(0.5 * RATE) : round(3.0 * RATE)].tobytes()
    on_fresh = [u for u in complete_utterances(emulator) if u.connection_id == fresh.id]
    assert [u.audio for u in on_fresh] == [asked]
    answered = [r for r in emulator.replies if r.finished and r.kind == "reply"]
    assert [r.connection_id for r in answered] == [fresh.id]
    output = (tmp_path / "out.wav").read_bytes()
    whole = answered[0].audio
    assert output.endswith(whole) and output.count(whole) == 1
    assert result.transcript.count(f"assistant: {LONG_TURN[0]['reply']}") == 1
    # The journal says what happened.
    assert ("starting a fresh session: the server refused to resume "
            "(1007 Request contains an invalid argument.)") in caplog.text


async def test_an_internal_error_mid_answer_is_resumed_once_and_answered_once(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    mic = noise_wav(tmp_path / "mic.wav", 4.0)
    # The service's ~1% of turns: 1011 "Internal error encountered." (its default reason).
    emulator = await emulator_factory(turns=LONG_TURN, faults=["close:1011@reply:1:chunk:2"])
    result = await run(tmp_path, emulator, [(0.5, 1.5)])
    # Two connections and no more: the second resumed the session with the handle.
    first, resumed = emulator.connections
    assert (first.close_code, first.close_reason, first.closed_by) == (
        1011, "Internal error encountered.", "server")
    assert resumed.resumed_handle is not None and resumed.accepted
    assert resumed.session_id == first.session_id
    # The question, cut off in its answer, was asked again whole and answered once.
    asked = mic[round(0.5 * RATE) : round(1.5 * RATE)].tobytes()
    assert [(u.connection_id, u.audio) for u in complete_utterances(emulator)] == [
        (first.id, asked), (resumed.id, asked)]
    answered = [r for r in emulator.replies if r.finished and r.kind == "reply"]
    assert [r.connection_id for r in answered] == [resumed.id]
    output = (tmp_path / "out.wav").read_bytes()
    assert output.endswith(answered[0].audio) and output.count(answered[0].audio) == 1
    assert result.transcript.count(f"assistant: {LONG_TURN[0]['reply']}") == 1
    assert "connection lost: 1011 Internal error encountered." in caplog.text
    assert "fresh session" not in caplog.text


async def test_a_call_the_server_cancelled_runs_when_its_question_is_asked_again(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 4.0)
    light_on = {"entity": "light.kitchen", "on": True}
    turn = {"input_transcript": "kitchen light on", "reply": "Turning the kitchen light on for you now.",
            "tool_calls": [{"name": "set_light", "args": light_on}]}
    emulator = await emulator_factory(turns=[turn], faults=["drop@reply:1:chunk:3"])
    # The service withdraws the first call while the light is still switching (once: the
    # question asked again is answered without a cancellation).
    emulator.arm_injections([{"when": "after_chunk:1",
                              "text": '{"toolCallCancellation": {"ids": ["function-call-1"]}}'}])
    overrides = {**NO_PREROLL, "home": {"simulated": {"latency_s": 3.0}}}
    await run(tmp_path, emulator, [(0.5, 1.2)], overrides=overrides)
    first, again = emulator.tool_calls
    assert (first.id, first.connection_id) == ("function-call-1", 1)
    assert again.connection_id == 2 and (again.name, again.args) == ("set_light", light_on)
    assert "tool calls cancelled: function-call-1" in caplog.text
    # The cancelled call was not done, so it ran now: one response, for the second call, not
    # "already requested".
    [response] = emulator.tool_responses
    assert response.id == again.id and response.known
    assert "already_done" not in json.dumps(response.response)
    assert response.response["ok"] is True and response.response["state"]["state"] == "on"

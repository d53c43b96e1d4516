"""Timers through the whole daemon on simulated hardware, against the emulator, in real time
(timers of a few seconds stand in for minutes: the ring's timing is the clock's)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edgevoice.audio.earcons import render
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav

TIMER_S = 2.0
RING_PERIOD_S = 0.5
HOUSEHOLD = {
    "audio": {"preroll_ms": 0},
    "device": {"timer_max_ring_s": 20.0, "timer_ring_period_s": RING_PERIOD_S},
}


def set_timer_turn(seconds: float) -> dict[str, object]:
    return {
        "input_transcript": "set a pasta timer",
        "reply": "Sure.",
        "tool_calls": [{"name": "set_timer", "args": {"name": "pasta", "seconds": seconds}}],
    }


def prompts_mentioning(emulator, text: str) -> list[dict]:
    return [
        f.message["clientContent"]
        for f in emulator.received
        if f.message and "clientContent" in f.message and text in json.dumps(f.message)
    ]


async def test_a_timer_rings_on_time_a_press_stops_it_sends_nothing_and_the_model_is_told_once(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="edgevoice")
    noise_wav(tmp_path / "mic.wav", 6.0)
    emulator = await emulator_factory(
        pace=1.0, turns=[set_timer_turn(TIMER_S)], default={"reply": "Your pasta is ready."}
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8), (5.0, 5.4)],
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides=HOUSEHOLD,
            emulator=emulator,
            state_dir=tmp_path / "state",
        )
    )
    household = result.daemon.household
    [response] = emulator.tool_responses
    assert response.response["ok"] is True and response.scheduling == "WHEN_IDLE"
    starts = [t for t, what in household.ring_log if what == "start"]
    stops = [t for t, what in household.ring_log if what == "stop"]
    pulses = [t for t, what in household.ring_log if what == "pulse"]
    # It rang when the timer ended (set just before the response went out), and kept
    # ringing a pulse per period until the press at 5.0 s stopped it.
    [start] = starts
    # The timer starts between the call leaving the server and its response arriving back:
    # no earlier than the timer's length after the first, and promptly after the second.
    [call] = emulator.tool_calls
    assert start - call.t >= TIMER_S
    assert start - response.t <= TIMER_S + 0.15
    [stop] = stops
    assert len(pulses) >= int((stop - start) / RING_PERIOD_S)
    # The ring is in what the speaker played, and none of it after the press.
    output = (tmp_path / "out.wav").read_bytes()[44:]
    ring = render("ring")
    assert output.count(ring) >= len(pulses) - 1 >= 3
    press_heard = [frames for pressed, frames in result.button_edges if pressed][1] * 2
    assert output.rfind(ring) < press_heard + len(ring)
    # The press that stopped the ring was no question: one utterance in all.
    assert len(emulator.utterances) == 1
    # The model was told exactly once, after the ring, and said it.
    [prompt] = prompts_mentioning(emulator, "pasta timer has ended")
    assert prompt.get("turnComplete") is True
    assert any(reply.kind == "client" and reply.finished for reply in emulator.replies)
    assert household.timers.running(household.now()) == []
    saved = json.loads((tmp_path / "state" / "timers.json").read_text())
    assert saved["timers"] == []
    # The journal (and systemd's status line, from the same call) showed the ring.
    statuses = [r.getMessage() for r in caplog.records if r.getMessage().startswith("status: ")]
    ringing = statuses.index("status: ringing: pasta timer")
    assert statuses[ringing + 1] != statuses[ringing]
    assert "timer ended, ringing: pasta" in caplog.text
    assert "ring stopped (button): pasta" in caplog.text


async def test_a_timer_survives_a_restart_and_a_drop_rings_offline_and_is_told_when_back(
    tmp_path: Path, emulator_factory
) -> None:
    noise_wav(tmp_path / "mic.wav", 7.0)
    emulator = await emulator_factory(
        pace=1.0,
        turns=[{**set_timer_turn(TIMER_S), "reply": "Sure, the pasta timer is running now."}],
        default={"reply": "Your pasta is ready."},
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            # The second press comes while the device is still offline.
            presses=[(0.2, 0.8), (4.0, 4.3)],
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides=HOUSEHOLD,
            emulator=emulator,
            state_dir=tmp_path / "state",
            # The daemon restarts as the answer starts, and the server refuses it for 4 s.
            faults=["restart@reply:1:chunk:1", "refuse:4@reply:1:chunk:1"],
        )
    )
    assert len(result.daemons) == 2
    # The question cut by the restart was asked again and the model set the timer again;
    # the restarted daemon answered that call with the first one's result, marked as done.
    first, again = emulator.tool_calls
    assert first.connection_id != again.connection_id
    assert (first.name, first.args) == (again.name, again.args)
    # Asked again, the call got the first run's result (the restart came before that result
    # reached the server), marked as done, with the same scheduling.
    *before_restart, answer = emulator.tool_responses
    assert [r.id for r in before_restart] in ([], [first.id])
    assert answer.id == again.id and answer.connection_id == again.connection_id
    assert answer.response["already_done"] is True and answer.response["ok"] is True
    assert answer.response["result"] == "The pasta timer is set for 2 seconds."
    assert answer.scheduling == "WHEN_IDLE"
    household = result.daemons[-1].household
    assert [what for _, what in result.daemons[0].household.ring_log if what == "start"] == []
    [start] = [t for t, what in household.ring_log if what == "start"]
    [stop] = [t for t, what in household.ring_log if what == "stop"]
    # The restarted daemon rang once, at the time the first call set.
    assert TIMER_S - 0.05 <= start - first.t <= TIMER_S + 0.2
    assert len(prompts_mentioning(emulator, "pasta timer has ended")) == 1
    prompt_t = next(
        f.t for f in emulator.received if f.message and "clientContent" in f.message
        and "pasta timer has ended" in json.dumps(f.message)
    )
    # Offline when the ring stopped: the model heard of it only once the link was back.
    assert prompt_t > stop + 0.3
    # One question, asked again whole after the restart; the press that stopped the ring
    # asked nothing.
    cut, asked_again = emulator.utterances
    assert (cut.connection_id, asked_again.connection_id) == (first.connection_id, again.connection_id)
    assert asked_again.complete and asked_again.audio == cut.audio

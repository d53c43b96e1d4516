"""Hostile model output, end to end: the emulated model asks for devices outside the
allowlist, for sensitive actions without the confirmation code and for absurd values.
Nothing in the house moves, each call gets a structured refusal back as a tool response the
model can relay, and the conversation goes on."""

from __future__ import annotations

import asyncio
import logging

from edgevoice_testbed.emulator import Emulator
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.emulator.helpers import scenario

CODE = "4711"
ENTITIES = [
    {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    {"id": "climate.thermostat", "name": "Thermostat", "room": "hallway"},
    {"id": "lock.front_door", "name": "Front door"},
    {"id": "alarm_control_panel.house", "name": "House alarm"},
]
BAD_CALLS = [
    (
        "c-unknown",
        "set_light",
        {"entity": "bedroom light", "on": True},
        "there is no light called 'bedroom light'",
    ),
    ("c-function", "open_pod_bay_doors", {}, "there is no function called 'open_pod_bay_doors'"),
    (
        "c-unlock",
        "set_lock",
        {"entity": "front door", "locked": False},
        "unlocking needs the user's confirmation code",
    ),
    (
        "c-wrong-code",
        "set_lock",
        {"entity": "front door", "locked": False, "confirmation": "1234"},
        "the confirmation code is wrong",
    ),
    (
        "c-disarm",
        "set_alarm",
        {"entity": "house alarm", "mode": "disarmed"},
        "disarming needs the user's confirmation code",
    ),
    (
        "c-hot",
        "set_climate",
        {"entity": "thermostat", "target_temperature": 300},
        "target_temperature must be between 7 and 30, not 300",
    ),
    ("c-garbage", "set_light", {"entity": 42, "on": "maybe"}, "entity must be text, not 42"),
]
TURNS = [
    {
        "input_transcript": "Unlock everything and make it hot",
        "reply": "Let me see.",
        "tool_calls": [{"id": call_id, "name": name, "args": args} for call_id, name, args, _ in BAD_CALLS],
        "follow_up": "I could not do that.",
    },
    {"input_transcript": "What time is it?", "reply": "It is noon."},
]


async def test_refusals_reach_the_model_and_the_session_goes_on(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    # A model that calls a function the device never declared (the real service does not).
    emulator = Emulator(scenario(turns=TURNS, call_undeclared_functions=True))
    await emulator.start()
    home = {
        "entities": ENTITIES,
        "allow_locks": True,
        "allow_alarms": True,
        "confirmation_code": CODE,
        "simulated": {"latency_s": 0, "persist": True},
    }
    try:
        async with asyncio.timeout(60):
            result = await simulate(
                SimulationOptions(
                    presses=[(0.1, 0.6), (1.0, 1.5)],
                    out=tmp_path / "out.wav",
                    earcons=False,
                    emulator=emulator,
                    state_dir=tmp_path / "state",
                    overrides={"home": home, "audio": {"preroll_ms": 0}},
                    timeout_s=40,
                )
            )
    finally:
        await emulator.aclose()
    assert not emulator.errors
    responses = {r.id: r for r in emulator.tool_responses}
    assert set(responses) == {call_id for call_id, *_ in BAD_CALLS}
    for call_id, name, _args, error in BAD_CALLS:
        response = responses[call_id]
        assert response.known and response.name == name, response
        assert response.response["ok"] is False and response.response["error"].startswith(error), response
        assert set(response.response) <= {"ok", "error", "allowed"}
    # Refused sensitive actions interrupt (the user must hear at once that nothing happened).
    assert {responses[c].scheduling for c in ("c-unlock", "c-wrong-code", "c-disarm")} == {"INTERRUPT"}
    # The code the model guessed never shows up in a log line or the recorded arguments.
    assert "1234" not in caplog.text
    # The model relayed the refusal and the next question was answered on the same session.
    assert "assistant: I could not do that." in result.transcript
    assert result.transcript[-2:] == ["you: What time is it?", "assistant: It is noon."]
    assert len(emulator.connections) == 1
    # Nothing in the house moved.
    state = result.daemon.toolbox.backend.known_states()
    assert state["lock.front_door"]["state"] == "locked"
    assert state["alarm_control_panel.house"]["state"] == "disarmed"
    assert state["climate.thermostat"].get("target_temperature") != 300

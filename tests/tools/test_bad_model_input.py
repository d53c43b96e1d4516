"""Bad input from the model never raises: it gets a short structured error and is logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from edgevoice.core.events import ToolResult
from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.live import sdk
from edgevoice.tools import ToolBox

pytestmark = pytest.mark.asyncio

CODE = "4711"
ENTITIES = [
    {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    {"id": "climate.thermostat", "name": "Thermostat", "room": "hallway"},
    {"id": "cover.garage_door", "name": "Garage door", "room": "garage"},
    {"id": "media_player.speaker", "name": "Speaker"},
    {"id": "lock.front_door", "name": "Front door"},
    {"id": "alarm_control_panel.house", "name": "House alarm"},
]


def make_box(tmp_path: Path, **home: Any) -> ToolBox:
    from edgevoice.tools.settings import HomeSettings

    settings = {
        "entities": ENTITIES,
        "allow_locks": True,
        "allow_alarms": True,
        "confirmation_code": CODE,
        "simulated": {"latency_s": 0, "persist": False},
        **home,
    }
    return ToolBox.from_settings(HomeSettings(**settings), state_dir=tmp_path, environ={})


INVALID = OutcomeKind.INVALID_REQUEST
REFUSED = OutcomeKind.REFUSED

CASES = [
    # (name, args, kind, error, allowed-substring)
    (
        "open_pod_bay_doors",
        {},
        INVALID,
        "there is no function called 'open_pod_bay_doors'",
        "set_light, set_climate",
    ),
    ("", {}, INVALID, "the call named no function", "set_light"),
    ("set_light", {}, INVALID, "entity is missing", "set_light(entity, on true|false?"),
    ("set_light", ["kitchen light"], INVALID, "the arguments must be a JSON object", "set_light("),
    ("set_light", "on", INVALID, "the arguments must be a JSON object", "set_light("),
    (
        "set_light",
        {"entity": "kitchen light", "brightness": "bright"},
        INVALID,
        "brightness must be a whole number, not 'bright'",
        "brightness 0-100?",
    ),
    (
        "set_light",
        {"entity": "kitchen light", "on": "maybe"},
        INVALID,
        "on must be true or false, not 'maybe'",
        "",
    ),
    ("set_light", {"entity": 42, "on": True}, INVALID, "entity must be text, not 42", ""),
    (
        "set_light",
        {"entity": "kitchen light", "brightness": 5000},
        INVALID,
        "brightness must be between 0 and 100, not 5000",
        "",
    ),
    (
        "set_light",
        {"entity": "kitchen light", "brightness": 50.5},
        INVALID,
        "brightness must be a whole number",
        "",
    ),
    (
        "set_light",
        {"entity": "kitchen light", "color": "ultraviolet"},
        INVALID,
        "color must be one of red, orange",
        "",
    ),
    (
        "set_light",
        {"entity": "kitchen light", "on": True, "flash": True},
        INVALID,
        "set_light has no argument 'flash'",
        "",
    ),
    (
        "set_light",
        {"entity": "kitchen light"},
        INVALID,
        "nothing to change: give on, brightness or color",
        "",
    ),
    (
        "set_light",
        {"entity": "kitchen light", "on": False, "brightness": 40},
        INVALID,
        "a light being switched off takes no brightness or color",
        "",
    ),
    (
        "set_light",
        {"entity": "bedroom light", "on": True},
        INVALID,
        "there is no light called 'bedroom light'",
        "Kitchen light (kitchen)",
    ),
    (
        "set_light",
        {"entity": "thermostat", "on": True},
        INVALID,
        "Thermostat is a thermostat, not a light; use set_climate",
        "Kitchen light (kitchen)",
    ),
    (
        "set_climate",
        {"entity": "thermostat", "target_temperature": 300},
        INVALID,
        "target_temperature must be between 7 and 30, not 300",
        "target_temperature 7-30",
    ),
    (
        "set_climate",
        {"entity": "thermostat", "target_temperature": -40},
        INVALID,
        "target_temperature must be between 7 and 30, not -40",
        "",
    ),
    (
        "set_climate",
        {"entity": "thermostat", "target_temperature": 21, "hvac_mode": "turbo"},
        INVALID,
        "hvac_mode must be one of off, heat, cool",
        "",
    ),
    ("set_climate", {"entity": "thermostat"}, INVALID, "target_temperature is missing", ""),
    (
        "set_cover",
        {"entity": "garage door", "position": -5},
        INVALID,
        "position must be between 0 and 100, not -5",
        "",
    ),
    (
        "set_cover",
        {"entity": "garage door", "action": "explode"},
        INVALID,
        "action must be one of open, close, stop",
        "",
    ),
    (
        "set_cover",
        {"entity": "garage door", "action": "open", "position": 50},
        INVALID,
        "give either an action or a position, not both",
        "",
    ),
    (
        "control_media",
        {"entity": "speaker", "action": "set_volume"},
        INVALID,
        "set_volume needs a volume",
        "",
    ),
    (
        "control_media",
        {"entity": "speaker", "action": "set_volume", "volume": 101},
        INVALID,
        "volume must be between 0 and 100, not 101",
        "",
    ),
    (
        "get_state",
        {"entity": "the moon"},
        INVALID,
        "there is no device called 'the moon'",
        "Kitchen light (kitchen)",
    ),
    (
        "set_lock",
        {"entity": "front door", "locked": False},
        REFUSED,
        "unlocking needs the user's confirmation code",
        "ask the user for the code",
    ),
    (
        "set_lock",
        {"entity": "front door", "locked": False, "confirmation": "1234"},
        REFUSED,
        "the confirmation code is wrong",
        "",
    ),
    (
        "set_alarm",
        {"entity": "house alarm", "mode": "disarmed"},
        REFUSED,
        "disarming needs the user's confirmation code",
        "",
    ),
    (
        "set_alarm",
        {"entity": "house alarm", "mode": "party"},
        INVALID,
        "mode must be one of disarmed, armed_home",
        "",
    ),
]


@pytest.mark.parametrize(("name", "args", "kind", "error", "allowed"), CASES)
async def test_bad_call_gets_a_structured_error_and_is_logged(
    tmp_path, outcomes, caplog, name, args, kind, error, allowed
):
    box = make_box(tmp_path)
    call = {"id": "bad-call", "name": name, "args": args}
    async with box:
        box.start(call, outcomes)
        outcome = await outcomes.get("bad-call")
        state = box.backend.known_states()
    assert outcome.kind is kind
    assert not outcome.ok
    assert set(outcome.response) <= {"ok", "error", "allowed"}
    assert outcome.response["ok"] is False
    assert outcome.response["error"].startswith(error), outcome.response
    assert allowed in outcome.response.get("allowed", "")
    assert outcome.scheduling == ("INTERRUPT" if kind is REFUSED else "WHEN_IDLE")
    assert any(
        record.levelno == logging.WARNING
        and "bad-call" in record.getMessage()
        and error in record.getMessage()
        for record in caplog.records
    ), caplog.text
    # Nothing in the house moved.
    assert state["light.kitchen"]["state"] == "off"
    assert state["lock.front_door"]["state"] == "locked"
    assert state["alarm_control_panel.house"]["state"] == "disarmed"


@pytest.mark.parametrize(
    "call",
    [
        None,
        42,
        "set_light",
        {},
        {"name": "set_light", "args": {"entity": "kitchen light", "on": True}},  # no id
        types.FunctionCall(name="set_light"),
        types.FunctionCall(id="x"),
    ],
)
async def test_garbage_calls_are_answered_too(tmp_path, outcomes, call):
    box = make_box(tmp_path)
    async with box:
        box.start(call, outcomes)
        (outcome,) = await outcomes.count(1)
    assert outcome.response["ok"] is False or outcome.name == "set_light"
    assert isinstance(outcome.id, str) and isinstance(outcome.name, str)
    result = ToolResult(outcome.id, outcome.name, outcome.response, outcome.scheduling, 0.0)
    assert sdk.function_responses([result])[0].response == outcome.response


async def test_locks_not_allowed_are_refused_even_if_called(tmp_path, outcomes):
    box = make_box(tmp_path, allow_locks=False)
    async with box:
        box.start(
            {"id": "l", "name": "set_lock", "args": {"entity": "front door", "locked": True}},
            outcomes,
        )
        outcome = await outcomes.get("l")
    assert outcome.kind is REFUSED and outcome.scheduling == "INTERRUPT"
    assert outcome.response == {
        "ok": False,
        "error": "controlling locks by voice is not allowed on this device",
    }


async def test_unlocking_with_the_right_code_works_and_the_code_is_never_kept(tmp_path, outcomes, caplog):
    caplog.set_level(logging.DEBUG)
    box = make_box(tmp_path)
    async with box:
        box.start(
            {
                "id": "u",
                "name": "set_lock",
                "args": {
                    "entity": "front door",
                    "locked": False,
                    "confirmation": "four seven one one",
                },
            },
            outcomes,
        )
        outcome = await outcomes.get("u")
    assert outcome.ok and outcome.response["state"] == {"state": "unlocked"}
    assert outcome.args == {"entity": "front door", "locked": False, "confirmation": "(redacted)"}
    for text in (caplog.text, repr(outcome), repr(box)):
        assert "four seven one one" not in text and CODE not in text


async def test_without_a_configured_code_unlocking_is_refused(tmp_path, outcomes):
    box = make_box(tmp_path, confirmation_code=None)
    async with box:
        box.start(
            {
                "id": "u",
                "name": "set_lock",
                "args": {"entity": "front door", "locked": False, "confirmation": "4711"},
            },
            outcomes,
        )
        box.start(
            {"id": "l", "name": "set_lock", "args": {"entity": "front door", "locked": True}},
            outcomes,
        )
        refused, locked = await outcomes.get("u"), await outcomes.get("l")
    assert refused.response["error"] == (
        "unlocking by voice needs a confirmation code, and none is set up on this device"
    )
    assert locked.ok  # locking never needs the code


async def test_the_credential_code_takes_precedence(tmp_path, outcomes):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "home-confirmation-code").write_text("9 9 9 9\n")
    (credentials / "home-confirmation-code").chmod(0o600)
    from edgevoice.tools.settings import HomeSettings

    home = HomeSettings(
        entities=ENTITIES,
        allow_alarms=True,
        confirmation_code=CODE,
        simulated={"latency_s": 0, "persist": False},
    )
    box = ToolBox.from_settings(home, state_dir=tmp_path, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    args = {"entity": "house alarm", "mode": "disarmed"}
    async with box:
        box.start({"id": "old", "name": "set_alarm", "args": {**args, "confirmation": CODE}}, outcomes)
        box.start(
            {
                "id": "new",
                "name": "set_alarm",
                "args": {**args, "confirmation": "nine nine nine nine"},
            },
            outcomes,
        )
        old, new = await outcomes.get("old"), await outcomes.get("new")
    assert old.response["error"] == "the confirmation code is wrong"
    assert new.ok


async def test_a_guessing_model_is_locked_out(tmp_path, outcomes):
    box = make_box(tmp_path, confirmation_max_failures=2)
    async with box:
        for n, code in enumerate(["0000", "1111", CODE]):
            box.start(
                {
                    "id": f"g{n}",
                    "name": "set_lock",
                    "args": {"entity": "front door", "locked": False, "confirmation": code},
                },
                outcomes,
            )
            await outcomes.get(f"g{n}")
    errors = [outcome.response["error"] for outcome in outcomes.items]
    assert errors[0] == "the confirmation code is wrong"
    assert (
        errors[1]
        == errors[2]
        == "too many wrong confirmation codes; unlocking is blocked for about 5 minutes"
    )


async def test_disabled_home_answers_every_call(tmp_path, outcomes):
    box = make_box(tmp_path, enabled=False)
    async with box:
        box.start(
            {"id": "d", "name": "set_light", "args": {"entity": "kitchen light", "on": True}},
            outcomes,
        )
        outcome = await outcomes.get("d")
    assert outcome.response == {
        "ok": False,
        "error": "smart-home control is turned off on this device",
    }

"""The simulated backend: state survives a restart, files are written atomically, and
failures are injected as configured (seeded, repeatable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from edgevoice.tools import ToolBox
from edgevoice.tools.backends.simulated import SimulatedHome, apply_command
from edgevoice.tools.entities import EntityDirectory
from edgevoice.tools.model import BackendError, Command, Entity
from edgevoice.tools.settings import HomeSettings


def make_box(state_dir: Path, **simulated: Any) -> ToolBox:
    home = HomeSettings(simulated={"latency_s": 0, **simulated})
    return ToolBox.from_settings(home, state_dir=state_dir, environ={})


def call(call_id: str, name: str, **args: Any) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=args)


@pytest.mark.asyncio
async def test_state_survives_a_restart(tmp_path, outcomes):
    async with make_box(tmp_path) as box:
        box.start(call("1", "set_light", entity="kitchen light", brightness=40, color="blue"), outcomes)
        box.start(call("2", "set_climate", entity="thermostat", target_temperature=21.5), outcomes)
        box.start(call("3", "set_cover", entity="garage door", position=30), outcomes)
        await outcomes.count(3)
    assert all(outcome.ok for outcome in outcomes.items)
    document = json.loads((tmp_path / "home-state.json").read_text())
    assert document["version"] == 1
    assert document["entities"]["light.kitchen"] == {
        "state": "on",
        "brightness": 40,
        "color": "blue",
    }
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]

    async with make_box(tmp_path) as restarted:
        text = restarted.describe_state()
        restarted.start(call("4", "get_state", entity="kitchen light"), outcomes)
        reread = await outcomes.get("4")
    assert reread.response["state"] == {"state": "on", "brightness": 40, "color": "blue"}
    assert "Kitchen light is on at 40% brightness, blue.  [kitchen]" in text
    assert "Thermostat is in heat mode, set to 21.5 degrees, currently 19.5 degrees." in text
    assert "Garage door is open at 30%." in text


@pytest.mark.asyncio
async def test_a_corrupt_state_file_is_moved_aside_not_lost(tmp_path, outcomes, caplog):
    state_file = tmp_path / "home-state.json"
    state_file.write_text("{ not json")
    async with make_box(tmp_path) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        await outcomes.get("1")
    assert (tmp_path / "home-state.json.corrupt").read_text() == "{ not json"
    assert json.loads(state_file.read_text())["entities"]["light.kitchen"]["state"] == "on"
    assert "is not a valid home state" in caplog.text


@pytest.mark.asyncio
async def test_entries_of_unconfigured_entities_are_kept(tmp_path, outcomes):
    (tmp_path / "home-state.json").write_text(
        json.dumps(
            {
                "version": 1,
                "entities": {
                    "light.attic": {"state": "on"},
                    "light.kitchen": {"state": "on", "brightness": 10, "bogus": 1},
                    "light.living_room": "garbage",
                },
            }
        )
    )
    async with make_box(tmp_path) as box:
        states = box.backend.known_states()
        box.start(call("1", "set_cover", entity="garage door", action="open"), outcomes)
        await outcomes.get("1")
    assert states["light.kitchen"] == {"state": "on", "brightness": 10, "color": "warm white"}
    assert states["light.living_room"]["state"] == "off"
    assert "light.attic" not in states
    saved = json.loads((tmp_path / "home-state.json").read_text())["entities"]
    assert saved["light.attic"] == {"state": "on"}


@pytest.mark.asyncio
async def test_persistence_can_be_turned_off(tmp_path, outcomes):
    async with make_box(tmp_path, persist=False) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        await outcomes.get("1")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_an_unwritable_state_dir_is_logged_not_fatal(tmp_path, outcomes, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    async with make_box(blocker / "state") as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.ok
    assert "cannot save the simulated home" in caplog.text


@pytest.mark.asyncio
async def test_always_failing_entities_fail_with_a_clear_error(tmp_path, outcomes):
    async with make_box(tmp_path, always_fail=["cover.garage_door"]) as box:
        box.start(call("1", "set_cover", entity="garage door", action="open"), outcomes)
        box.start(call("2", "set_light", entity="kitchen light", on=True), outcomes)
        failed, fine = await outcomes.get("1"), await outcomes.get("2")
        garage = box.backend.known_states()["cover.garage_door"]
    assert failed.response == {
        "ok": False,
        "error": "Garage door did not respond (simulated failure)",
    }
    assert failed.scheduling == "INTERRUPT" and not failed.ok
    assert garage["state"] == "closed"
    assert fine.ok


async def failure_pattern(state_dir: Path, seed: int, outcomes_factory: Any) -> list[bool]:
    outcomes = outcomes_factory()
    async with make_box(state_dir, failure_rate=0.5, seed=seed, persist=False) as box:
        for n in range(16):
            box.start(call(f"c{n}", "set_light", entity="kitchen light", on=n % 2 == 0), outcomes)
        await outcomes.count(16)
    by_id = {outcome.id: outcome.ok for outcome in outcomes.items}
    return [by_id[f"c{n}"] for n in range(16)]


@pytest.mark.asyncio
async def test_failure_rate_is_seeded_and_repeatable(tmp_path, new_outcomes):
    first = await failure_pattern(tmp_path, 7, new_outcomes)
    again = await failure_pattern(tmp_path, 7, new_outcomes)
    other = await failure_pattern(tmp_path, 8, new_outcomes)
    assert first == again
    assert first != other
    assert 2 <= first.count(False) <= 14  # about half fail


def entity(entity_id: str) -> Entity:
    return EntityDirectory.from_settings(HomeSettings()).get(entity_id) or Entity(
        entity_id, entity_id, entity_id.split(".")[0]
    )


@pytest.mark.parametrize(
    ("entity_id", "service", "data", "before", "after"),
    [
        (
            "light.kitchen",
            "turn_on",
            {"brightness_pct": 5},
            {"state": "off", "brightness": 100},
            {"state": "on", "brightness": 5},
        ),
        (
            "light.kitchen",
            "turn_on",
            {"color_temp_kelvin": 6500},
            {"state": "off", "color": "red"},
            {"state": "on", "color": "cool white"},
        ),
        ("light.kitchen", "turn_off", {}, {"state": "on"}, {"state": "off"}),
        (
            "climate.thermostat",
            "set_temperature",
            {"temperature": 18, "hvac_mode": "cool"},
            {"hvac_mode": "heat"},
            {"hvac_mode": "cool", "target_temperature": 18.0},
        ),
        (
            "cover.garage_door",
            "set_cover_position",
            {"position": 0},
            {"state": "open", "position": 50},
            {"state": "closed", "position": 0},
        ),
        (
            "cover.garage_door",
            "stop_cover",
            {},
            {"state": "opening", "position": 50},
            {"state": "stopped", "position": 50},
        ),
        (
            "media_player.living_room_speaker",
            "volume_set",
            {"volume_level": 0.35},
            {"state": "paused", "volume": 30},
            {"state": "paused", "volume": 35},
        ),
        (
            "media_player.living_room_speaker",
            "media_stop",
            {},
            {"state": "playing"},
            {"state": "idle"},
        ),
        ("scene.movie_night", "turn_on", {}, {"state": "not activated"}, {"state": "activated"}),
        ("lock.door", "unlock", {}, {"state": "locked"}, {"state": "unlocked"}),
        (
            "alarm_control_panel.house",
            "alarm_arm_night",
            {},
            {"state": "disarmed"},
            {"state": "armed_night"},
        ),
        (
            "alarm_control_panel.house",
            "alarm_disarm",
            {},
            {"state": "armed_away"},
            {"state": "disarmed"},
        ),
    ],
)
def test_apply_command(entity_id, service, data, before, after):
    assert apply_command(Command(entity(entity_id), service, data), before) == after


def test_apply_command_refuses_an_unknown_service():
    with pytest.raises(BackendError, match=r"cannot do light\.explode"):
        apply_command(Command(entity("light.kitchen"), "explode"), {})


@pytest.mark.asyncio
async def test_the_demo_home_switches_a_light_on_with_no_configuration(tmp_path, outcomes):
    box = ToolBox.from_settings(HomeSettings(), state_dir=tmp_path, environ={})
    assert isinstance(box.backend, SimulatedHome)
    async with box:
        before = box.describe_state()
        box.start(call("demo", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("demo")
        after = box.describe_state()
    assert outcome.ok and outcome.scheduling == "WHEN_IDLE"
    assert "Kitchen light is off." in before
    assert "Kitchen light is on at 100% brightness, warm white." in after
    assert after.splitlines()[0] == "Home (simulated backend):"

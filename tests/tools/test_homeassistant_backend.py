"""The Home Assistant backend where a real Home Assistant cannot be made to misbehave (a hung
login, a call that never returns, an entity removed mid-call, no server at all), its TLS
and credential handling, and the decisions of discovery without I/O. Everything a real
Home Assistant can show is tested against one in tests/homeassistant."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from google.genai import types

from edgevoice.config import ConfigError
from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.tools import ToolBox
from edgevoice.tools.backends.homeassistant.discovery import HomeSnapshot, plan_home
from edgevoice.tools.backends.homeassistant.live_cache import EntityRemoved, LiveStates
from edgevoice.tools.settings import EntitySettings, HomeSettings
from tests.tools.home_fakes import HA_TOKEN, FakeHomeAssistant, free_port

ENTITIES = [
    {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    {"id": "cover.garage_door", "name": "Garage door"},
]


def make_box(url: str, token: str = HA_TOKEN, **homeassistant: Any) -> ToolBox:
    home = HomeSettings(
        backend="homeassistant",
        entities=ENTITIES,
        function_timeout_s={"set_cover": 2.0},
        homeassistant={"url": url, "request_timeout_s": 0.5, **homeassistant},
    )
    return ToolBox.from_settings(home, state_dir=Path("/nonexistent"), environ={"HOMEASSISTANT_TOKEN": token})


def call(call_id: str, name: str, **args: Any) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=args)


async def test_a_service_call_that_never_returns_is_reported_in_words(home_assistant, outcomes):
    home_assistant.hang_services.add("cover.garage_door")
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_cover", entity="garage door", action="close"), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE and outcome.scheduling == "INTERRUPT"
    assert outcome.response["error"] == (
        "Home Assistant did not confirm within 0.5 seconds; Garage door may or may not have changed"
    )
    [sent] = [c for c in home_assistant.commands if c["type"] == "call_service"]
    assert sent["domain"] == "cover" and sent["service"] == "close_cover"
    assert sent["target"] == {"entity_id": "cover.garage_door"}


async def test_an_entity_removed_while_a_call_to_it_runs(home_assistant, outcomes):
    home_assistant.remove_during_call.add("light.kitchen")
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
        assert outcome.response["error"] == "Kitchen light was removed from Home Assistant"
        box.start(call("2", "get_state", entity="kitchen light"), outcomes)
        read = await outcomes.get("2")
    assert read.response["error"] == "Home Assistant has no entity light.kitchen (Kitchen light)"


async def test_a_server_that_never_answers_the_login_does_not_hold_up_the_start(home_assistant, outcomes):
    home_assistant.hang_login = True
    async with asyncio.timeout(5):
        box = make_box(home_assistant.url)
        await box.__aenter__()
    try:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    finally:
        await box.__aexit__(None, None, None)
    assert outcome.response["error"] in (
        f"Home Assistant is not reachable right now: no answer yet from {home_assistant.url}",
        f"Home Assistant is not reachable right now: Home Assistant is unreachable (Home Assistant "
        f"at {home_assistant.url} did not answer within 0.5 seconds); retrying",
    )


async def test_no_server_at_all(outcomes):
    url = f"http://127.0.0.1:{free_port()}"
    async with make_box(url) as box:
        box.start(call("1", "get_state", entity="kitchen light"), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE
    assert f"cannot connect to Home Assistant at {url}: " in outcome.response["error"]


async def test_tls_with_a_private_ca(tmp_path, outcomes):
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = FakeHomeAssistant()
    await server.start(ssl_context=server_context)
    try:
        async with make_box(server.url, ca_file=ca_file) as trusted:
            trusted.start(call("ok", "get_state", entity="kitchen light"), outcomes)
            ok = await outcomes.get("ok")
        async with make_box(server.url) as untrusted:
            untrusted.start(call("bad", "get_state", entity="kitchen light"), outcomes)
            bad = await outcomes.get("bad")
        async with make_box(server.url, verify_tls=False) as unverified:
            unverified.start(call("unverified", "get_state", entity="kitchen light"), outcomes)
            unchecked = await outcomes.get("unverified")
    finally:
        await server.stop()
    assert ok.ok and ok.response["state"]["state"] == "off"
    assert f"cannot verify the TLS certificate of Home Assistant at {server.url}" in bad.response["error"]
    assert unchecked.ok  # verify_tls = false: the certificate is not checked at all


def test_the_token_comes_from_the_credential_and_must_be_private(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    token_file = credentials / "homeassistant-token"
    token_file.write_text("secret-from-credential\n")
    token_file.chmod(0o644)
    home = HomeSettings(backend="homeassistant", entities=ENTITIES)
    environ = {"CREDENTIALS_DIRECTORY": str(credentials)}
    with pytest.raises(ConfigError, match="readable by other users"):
        ToolBox.from_settings(home, state_dir=tmp_path, environ=environ)
    token_file.chmod(0o600)
    box = ToolBox.from_settings(home, state_dir=tmp_path, environ=environ)
    assert box.backend._token.get_secret_value() == "secret-from-credential"
    assert "secret-from-credential" not in repr(box.backend)
    assert box.backend._token_source == "the credential homeassistant-token"


def test_a_missing_token_is_a_configuration_error(tmp_path):
    home = HomeSettings(backend="homeassistant", entities=ENTITIES)
    with pytest.raises(ConfigError, match="needs a long-lived access token"):
        ToolBox.from_settings(home, state_dir=tmp_path, environ={})


# -- discovery's decisions (no I/O) -------------------------------------------------------------


def state(entity_id: str, **attributes: Any) -> dict[str, Any]:
    return {"entity_id": entity_id, "state": "on", "attributes": attributes}


def test_exposure_follows_home_assistants_rules():
    snapshot = HomeSnapshot(
        states={
            entity_id: state(entity_id)
            for entity_id in (
                "light.default",
                "light.unexposed",
                "light.diagnostic",
                "media_player.tv",
                "media_player.exposed",
                "vacuum.robot",
            )
        }
        | {
            "sensor.temperature": state("sensor.temperature", device_class="temperature"),
            "sensor.power": state("sensor.power", device_class="power"),
        },
        registry={
            "light.unexposed": {
                "entity_id": "light.unexposed",
                "options": {"conversation": {"should_expose": False}},
            },
            "light.diagnostic": {"entity_id": "light.diagnostic", "entity_category": "diagnostic"},
        },
        exposure={"media_player.exposed": True},
    )
    home = plan_home(snapshot)
    assert [e.id for e in home.entities] == ["light.default", "media_player.exposed", "sensor.temperature"]
    reasons = {item.entity_id: item.reason for item in home.left_out}
    assert reasons == {
        "light.unexposed": "not exposed to Assist in Home Assistant",
        "light.diagnostic": "a diagnostic entity, not exposed by default",
        "media_player.tv": "a media_player of a kind Home Assistant does not expose to Assist by default",
        "sensor.power": "a sensor of a kind Home Assistant does not expose to Assist by default",
        "vacuum.robot": "EdgeVoice has no function for vacuum",
    }
    assert plan_home(HomeSnapshot(snapshot.states, snapshot.registry, expose_new=False)).entities == ()


def test_names_aliases_areas_from_the_registry_with_the_device_area_as_fallback():
    snapshot = HomeSnapshot(
        states={
            "light.a": state("light.a", friendly_name="Ceiling"),
            "light.b": state("light.b", friendly_name="Lamp"),
            "climate.c": state("climate.c", friendly_name="Heating", min_temp=10, max_temp=25),
        },
        registry={
            "light.a": {
                "entity_id": "light.a",
                "name": "Big light",
                "aliases": ["main light"],
                "area_id": "kit",
            },
            "light.b": {"entity_id": "light.b", "device_id": "dev1"},
            "climate.c": {"entity_id": "climate.c"},
        },
        devices={"dev1": {"id": "dev1", "area_id": "bed"}},
        areas={
            "kit": {"area_id": "kit", "name": "Kitchen", "aliases": ["cooking area"], "floor_id": "ground"},
            "bed": {"area_id": "bed", "name": "Bedroom", "aliases": []},
        },
        floors={"ground": {"floor_id": "ground", "name": "Ground floor"}},
    )
    listed = [
        EntitySettings(id="climate.c", name="Thermostat"),
        EntitySettings(id="light.extra", name="Extra"),
    ]
    home = {e.id: e for e in plan_home(snapshot, listed).entities}
    a, b = home["light.a"], home["light.b"]
    assert (a.name, a.aliases, a.room, a.room_aliases, a.floor) == (
        "Big light",
        ("main light",),
        "Kitchen",
        ("cooking area",),
        "Ground floor",
    )
    assert (b.name, b.room) == ("Lamp", "Bedroom")
    # Listed entities override discovered ones and add to them.
    assert home["climate.c"].name == "Thermostat" and home["light.extra"].source == "configuration"


async def test_a_waiter_hears_that_its_entity_was_removed():
    states = LiveStates()
    states.replace_all({"cover.a": {"entity_id": "cover.a", "state": "opening", "attributes": {}}})
    waiting = asyncio.ensure_future(states.wait_for("cover.a", lambda raw: raw["state"] == "open", 10))
    await asyncio.sleep(0)
    states.apply_event({"entity_id": "cover.a", "new_state": None})
    with pytest.raises(EntityRemoved):
        await waiting


def test_when_a_command_has_reached_its_state():
    from edgevoice.tools.backends.homeassistant.services import target_reached
    from edgevoice.tools.model import Command, Entity

    lock = Entity("lock.door", "Door", "lock")
    unlock = target_reached(Command(lock, "unlock"))
    assert not unlock({"state": "unlocking"}) and unlock({"state": "unlocked"})
    assert unlock({"state": "jammed"})  # no use waiting: it failed
    cover = Entity("cover.blind", "Blind", "cover")
    to_30 = target_reached(Command(cover, "set_cover_position", {"position": 30}))
    assert not to_30({"state": "closing", "attributes": {"current_position": 50}})
    assert to_30({"state": "open", "attributes": {"current_position": 30}})
    # No state to expect: done once not moving.
    player = target_reached(Command(Entity("media_player.tv", "TV", "media_player"), "media_play"))
    assert player({"state": "off"}) and not target_reached(Command(cover, "stop_cover"))({"state": "opening"})


def test_home_assistants_refusals_in_words():
    from edgevoice.tools.backends.homeassistant.connection import CommandFailed
    from edgevoice.tools.backends.homeassistant.services import explain_failure
    from edgevoice.tools.model import Command, Entity

    panel = Command(Entity("alarm_control_panel.a", "Alarm", "alarm_control_panel"), "alarm_arm_home")
    assert explain_failure(CommandFailed("home_assistant_error", "Invalid alarm code provided"), panel) == (
        "Home Assistant could not do that with Alarm: Invalid alarm code provided"
    )
    assert explain_failure(CommandFailed("not_found", "Service not found."), panel) == (
        "Home Assistant does not know alarm_control_panel.alarm_arm_home for Alarm: Service not found."
    )

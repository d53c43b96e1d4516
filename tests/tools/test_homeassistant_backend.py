"""The Home Assistant backend against a local HTTP server that checks requests like Home
Assistant does (bearer token, JSON, known services and entities), including failures."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from google.genai import types

from edgevoice.config import ConfigError
from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.tools import ToolBox
from edgevoice.tools.settings import HomeSettings
from tests.tools.home_fakes import HA_TOKEN, FakeHomeAssistant, free_port

ENTITIES = [
    {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    {"id": "light.ghost", "name": "Ghost light"},  # configured here, unknown to Home Assistant
    {"id": "climate.hall", "name": "Hall thermostat", "room": "hall"},
    {"id": "cover.garage_door", "name": "Garage door"},
    {"id": "media_player.radio", "name": "Radio"},
    {"id": "sensor.outdoor", "name": "Outdoor temperature"},
]


def make_box(url: str, token: str = HA_TOKEN, **homeassistant: Any) -> ToolBox:
    home = HomeSettings(
        backend="homeassistant",
        entities=ENTITIES,
        function_timeout_s={"set_cover": 0.5},
        homeassistant={"url": url, **homeassistant},
    )
    return ToolBox.from_settings(home, state_dir=Path("/nonexistent"), environ={"HOMEASSISTANT_TOKEN": token})


def call(call_id: str, name: str, **args: Any) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=args)


@pytest.mark.asyncio
async def test_a_light_is_switched_through_the_rest_api(home_assistant: FakeHomeAssistant, outcomes, caplog):
    caplog.set_level(logging.DEBUG)
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_light", entity="kitchen light", brightness=80, color="red"), outcomes)
        outcome = await outcomes.get("1")
        described = box.describe_state()
    assert outcome.ok and outcome.scheduling == "WHEN_IDLE"
    assert outcome.response == {
        "ok": True,
        "result": "Kitchen light is on at 80% brightness, red.",
        "state": {"state": "on", "brightness": 80, "color": "red"},
    }
    (request,) = home_assistant.requests
    assert request["path"] == "/api/services/light/turn_on"
    assert request["json"] == {
        "entity_id": "light.kitchen",
        "brightness_pct": 80,
        "color_name": "red",
    }
    assert request["headers"]["Authorization"] == f"Bearer {HA_TOKEN}"
    assert request["headers"]["Content-Type"] == "application/json"
    assert "Kitchen light is on at 80% brightness, red." in described
    assert HA_TOKEN not in caplog.text and HA_TOKEN not in repr(box) and HA_TOKEN not in repr(box.backend)


@pytest.mark.asyncio
async def test_state_reads_and_climate(home_assistant, outcomes):
    async with make_box(home_assistant.url) as box:
        box.start(call("s", "get_state", entity="outdoor temperature"), outcomes)
        box.start(
            call(
                "c",
                "set_climate",
                entity="hall thermostat",
                target_temperature=21,
                hvac_mode="heat",
            ),
            outcomes,
        )
        box.start(call("g", "set_cover", entity="garage door", action="open"), outcomes)
        read, climate, cover = (
            await outcomes.get("s"),
            await outcomes.get("c"),
            await outcomes.get("g"),
        )
    assert read.kind is OutcomeKind.STATE_READ and read.scheduling == "SILENT"
    assert read.response["state"] == {"state": "11.5", "unit": "°C"}
    assert read.response["result"] == "Outdoor temperature is 11.5 °C."
    assert climate.response["state"] == {
        "hvac_mode": "heat",
        "target_temperature": 21.0,
        "current_temperature": 18.5,
    }
    assert cover.response["state"] == {"state": "open", "position": 0}
    posts = {r["path"]: r["json"] for r in home_assistant.requests if r["method"] == "POST"}
    assert posts["/api/services/climate/set_temperature"] == {
        "entity_id": "climate.hall",
        "temperature": 21.0,
        "hvac_mode": "heat",
    }
    assert posts["/api/services/cover/open_cover"] == {"entity_id": "cover.garage_door"}


@pytest.mark.asyncio
async def test_a_rejected_token_is_reported_without_revealing_it(home_assistant, outcomes, caplog):
    caplog.set_level(logging.DEBUG)
    async with make_box(home_assistant.url, token="wrong-token-123") as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE and outcome.scheduling == "INTERRUPT"
    assert outcome.response == {
        "ok": False,
        "error": "Home Assistant refused the access token (HTTP 401); "
        "check the homeassistant-token credential",
    }
    assert "wrong-token-123" not in caplog.text


@pytest.mark.asyncio
async def test_an_entity_home_assistant_does_not_know(home_assistant, outcomes):
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_light", entity="ghost light", on=True), outcomes)
        box.start(call("2", "get_state", entity="ghost light"), outcomes)
        command, read = await outcomes.get("1"), await outcomes.get("2")
    expected = "Home Assistant has no entity light.ghost (Ghost light)"
    assert command.response["error"] == expected and read.response["error"] == expected
    # Home Assistant accepted the service call (it ignores unknown ids); the state read told.
    assert [r["method"] for r in home_assistant.requests].count("GET") == 2


@pytest.mark.asyncio
async def test_server_errors_and_rejected_service_data(home_assistant, outcomes):
    home_assistant.broken.add("light.kitchen")
    del home_assistant.services["media_player"]["volume_set"]
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        box.start(call("2", "control_media", entity="radio", action="set_volume", volume=30), outcomes)
        broken, rejected = await outcomes.get("1"), await outcomes.get("2")
    assert broken.response["error"] == "Home Assistant had an internal error with Kitchen light (HTTP 500)"
    assert rejected.response["error"] == (
        "Home Assistant rejected the service media_player.volume_set for Radio: "
        "Service media_player.volume_set not found."
    )


@pytest.mark.asyncio
async def test_connection_refused(outcomes):
    url = f"http://127.0.0.1:{free_port()}"
    async with make_box(url) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE
    assert outcome.response["error"].startswith(f"cannot connect to Home Assistant at {url}: ")


@pytest.mark.asyncio
async def test_a_hanging_server_times_out(home_assistant, outcomes):
    home_assistant.hanging.add("cover.garage_door")
    async with make_box(home_assistant.url) as box:
        box.start(call("1", "set_cover", entity="garage door", action="close"), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.TIMEOUT and outcome.scheduling == "INTERRUPT"
    assert outcome.response["error"] == (
        "Garage door did not confirm within 0.5 seconds; it may or may not have changed"
    )


@pytest.mark.asyncio
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
    finally:
        await server.stop()
    assert ok.ok and ok.response["state"]["state"] == "off"
    assert bad.response["error"] == (
        f"cannot verify the TLS certificate of Home Assistant at {server.url}; set home.homeassistant.ca_file"
    )


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


def test_a_missing_token_is_a_configuration_error(tmp_path):
    home = HomeSettings(backend="homeassistant", entities=ENTITIES)
    with pytest.raises(ConfigError, match="needs a long-lived access token"):
        ToolBox.from_settings(home, state_dir=tmp_path, environ={})

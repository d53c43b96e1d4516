"""Function declarations: generated from the argument models, NON_BLOCKING (on the default
model's family), only for what the configuration allows, and unchanged through the real SDK's
setup frame on the wire. The tools make plain data; the Live door makes SDK types of it."""

from __future__ import annotations

import asyncio
import json
import ssl
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from google import genai
from google.genai import types
from websockets.asyncio.server import serve

from edgevoice.core.events import ToolResult
from edgevoice.core.families import DEFAULT_MODEL, family_for
from edgevoice.live import sdk
from edgevoice.live.session_config import declarations_for
from edgevoice.tools import ToolBox, ToolOutcome
from edgevoice.tools.functions import FunctionRegistry, schema_from_model
from edgevoice.tools.settings import HomeSettings

LOCK_AND_ALARM = [
    {"id": "light.porch", "name": "Porch light", "room": "porch"},
    {"id": "lock.front_door", "name": "Front door", "room": "hall"},
    {"id": "alarm_control_panel.house", "name": "House alarm"},
]


def toolbox(tmp_path: Path, **home: typing.Any) -> ToolBox:
    return ToolBox.from_settings(HomeSettings(**home), state_dir=tmp_path, environ={})


def as_sdk(declarations: list[dict]) -> list[types.FunctionDeclaration]:
    """What the Live door sends for the default model."""
    return sdk.function_declarations(declarations_for(family_for(DEFAULT_MODEL).family, declarations))


def by_name(declarations: list[dict]) -> dict[str, types.FunctionDeclaration]:
    return {declaration.name: declaration for declaration in as_sdk(declarations)}


def test_default_home_declares_the_six_everyday_functions(tmp_path):
    declarations = by_name(toolbox(tmp_path).declarations())
    assert list(declarations) == [
        "set_light",
        "set_climate",
        "set_cover",
        "activate_scene",
        "control_media",
        "get_state",
    ]
    assert all(d.behavior is types.Behavior.NON_BLOCKING for d in declarations.values())


def test_set_light_schema(tmp_path):
    schema = by_name(toolbox(tmp_path).declarations())["set_light"].parameters
    assert schema.type is types.Type.OBJECT
    assert schema.required == ["entity"]
    props = schema.properties
    assert props["entity"].type is types.Type.STRING
    assert props["on"].type is types.Type.BOOLEAN
    assert (props["brightness"].type, props["brightness"].minimum, props["brightness"].maximum) == (
        types.Type.INTEGER,
        0,
        100,
    )
    assert props["color"].type is types.Type.STRING
    assert "red" in props["color"].enum and "warm white" in props["color"].enum


def test_every_schema_matches_its_pydantic_model(tmp_path):
    """What the model is told equals what is checked: names, required, ranges, choices."""
    box = toolbox(tmp_path, allow_locks=True, allow_alarms=True, entities=[*LOCK_AND_ALARM])
    registry: FunctionRegistry = box.registry
    for name in (
        "set_light",
        "set_climate",
        "set_cover",
        "activate_scene",
        "control_media",
        "get_state",
        "set_lock",
        "set_alarm",
    ):
        model = registry.function(name).arguments
        json_schema = model.model_json_schema()
        schema = types.Schema.model_validate(schema_from_model(model))
        assert set(schema.properties) == set(json_schema["properties"]), name
        assert set(schema.required or []) == set(json_schema.get("required", [])), name
        for field, field_info in model.model_fields.items():
            wire = schema.properties[field]
            for constraint in field_info.metadata:
                if hasattr(constraint, "ge"):
                    assert wire.minimum == constraint.ge, (name, field)
                if hasattr(constraint, "le"):
                    assert wire.maximum == constraint.le, (name, field)
            literal = [
                arg
                for arg in typing.get_args(field_info.annotation)
                if typing.get_origin(arg) is typing.Literal
            ]
            if typing.get_origin(field_info.annotation) is typing.Literal:
                literal = [field_info.annotation]
            if literal:
                assert wire.enum == list(typing.get_args(literal[0])), (name, field)


def test_climate_range_comes_from_the_configured_thermostats(tmp_path):
    box = toolbox(
        tmp_path,
        entities=[
            {"id": "climate.a", "name": "Upstairs", "min_temperature": 12, "max_temperature": 24},
            {"id": "climate.b", "name": "Downstairs", "min_temperature": 8, "max_temperature": 22},
        ],
    )
    declaration = by_name(box.declarations())["set_climate"]
    target = declaration.parameters.properties["target_temperature"]
    assert (target.minimum, target.maximum) == (8, 24)
    assert "Upstairs 12 to 24 degrees" in declaration.description


def test_descriptions_list_the_configured_entities_of_their_domain_with_rooms(tmp_path):
    declarations = by_name(toolbox(tmp_path).declarations())
    light = declarations["set_light"].description
    assert "Kitchen light (kitchen)" in light and "Living room light (living room)" in light
    assert "Thermostat" not in light and "Garage door" not in light
    assert "kitchen lamp" in light  # aliases too
    state = declarations["get_state"].description
    assert "Garage door (garage) [door or blind]" in state
    assert "Outdoor temperature (garden) [sensor]" in state


def test_locks_and_alarms_are_declared_only_when_allowed(tmp_path):
    assert set(by_name(toolbox(tmp_path, entities=LOCK_AND_ALARM).declarations())) == {
        "set_light",
        "get_state",
    }
    allowed = by_name(toolbox(tmp_path, entities=LOCK_AND_ALARM, allow_locks=True).declarations())
    assert "set_lock" in allowed and "set_alarm" not in allowed
    assert "confirmation" in allowed["set_lock"].parameters.properties
    both = by_name(
        toolbox(tmp_path, entities=LOCK_AND_ALARM, allow_locks=True, allow_alarms=True).declarations()
    )
    assert {"set_lock", "set_alarm"} <= set(both)
    # Allowed but nothing to control: not declared either.
    no_lock = toolbox(tmp_path, entities=LOCK_AND_ALARM[:1], allow_locks=True, allow_alarms=True)
    assert set(by_name(no_lock.declarations())) == {"set_light", "get_state"}


def test_disabled_home_declares_nothing(tmp_path):
    assert toolbox(tmp_path, enabled=False).declarations() == []


def test_the_emulator_scenario_call_is_valid(tmp_path):
    plan = toolbox(tmp_path).registry.prepare("set_light", {"entity": "kitchen light", "on": True}, now=0)
    assert (plan.entity.id, plan.service) == ("light.kitchen", "turn_on")


# -- the real SDK against a loopback TLS WebSocket server ------------------------------------


@pytest_asyncio.fixture
async def live_server() -> AsyncIterator[tuple[genai.Client, asyncio.Queue[dict]]]:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    frames: asyncio.Queue[dict] = asyncio.Queue()

    async def handler(websocket) -> None:
        async for message in websocket:
            frame = json.loads(message)
            await frames.put(frame)
            if "setup" in frame:
                await websocket.send(json.dumps({"setupComplete": {}}))

    async with serve(handler, "127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        client = genai.Client(
            api_key="test-key",
            http_options=types.HttpOptions(
                base_url=f"https://127.0.0.1:{port}", async_client_args={"ssl": client_context}
            ),
        )
        yield client, frames


def collect_keys(schema: dict, into: set[str]) -> None:
    into.update(schema)
    for sub in schema.get("properties", {}).values():
        collect_keys(sub, into)


@pytest.mark.asyncio
async def test_declarations_and_responses_on_the_wire(tmp_path, live_server):
    client, frames = live_server
    box = toolbox(tmp_path, allow_locks=True, entities=LOCK_AND_ALARM)
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        tools=[types.Tool(function_declarations=as_sdk(box.declarations()))],
    )
    async with client.aio.live.connect(model="test-model", config=config) as session:
        setup = (await asyncio.wait_for(frames.get(), 5))["setup"]
        wire = {d["name"]: d for d in setup["tools"][0]["functionDeclarations"]}
        assert set(wire) == {"set_light", "get_state", "set_lock"}
        light = wire["set_light"]
        assert light["behavior"] == "NON_BLOCKING"
        assert light["parameters"]["type"] == "OBJECT"
        assert light["parameters"]["required"] == ["entity"]
        props = light["parameters"]["properties"]
        assert props["entity"]["type"] == "STRING"
        assert props["on"]["type"] == "BOOLEAN"
        assert props["brightness"] == {
            "type": "INTEGER",
            "minimum": 0,
            "maximum": 100,
            "description": "Brightness in percent, 0 to 100.",
        }
        assert "Porch light (porch)" in light["description"]
        # Only the plainest schema keywords go out, whatever pydantic generates.
        used: set[str] = set()
        for declaration in wire.values():
            collect_keys(declaration["parameters"], used)
        assert used <= {
            "type",
            "description",
            "enum",
            "minimum",
            "maximum",
            "properties",
            "required",
        }
        assert wire["set_lock"]["parameters"]["properties"]["locked"]["type"] == "BOOLEAN"

        outcome = ToolOutcome(
            id="call-1",
            name="set_light",
            args={"entity": "porch light", "on": True},
            response={"ok": True, "result": "Porch light is on.", "state": {"state": "on"}},
            scheduling="WHEN_IDLE",
            ok=True,
            duration_s=0.1,
        )
        result = ToolResult(outcome.id, outcome.name, outcome.response, outcome.scheduling, 0.0)
        await session.send_tool_response(function_responses=sdk.function_responses([result]))
        frame = await asyncio.wait_for(frames.get(), 5)
    assert frame == {
        "tool_response": {
            "functionResponses": [
                {
                    "id": "call-1",
                    "name": "set_light",
                    "response": {
                        "ok": True,
                        "result": "Porch light is on.",
                        "state": {"state": "on"},
                    },
                    "scheduling": "WHEN_IDLE",
                }
            ]
        }
    }


async def test_switched_devices_and_rooms_in_the_simulated_home(tmp_path):
    entities = [
        {"id": "switch.kettle", "name": "Kettle", "room": "kitchen"},
        {"id": "fan.ceiling", "name": "Ceiling fan", "room": "kitchen"},
        {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    ]
    box = toolbox(tmp_path, entities=entities, simulated={"latency_s": 0, "persist": False})
    assert "set_power" in by_name(box.declarations())
    done: asyncio.Queue[ToolOutcome] = asyncio.Queue()
    async with box:
        power = types.FunctionCall(id="1", name="set_power", args={"entity": "kitchen", "on": True})
        box.start(power, done.put_nowait)
        outcome = await asyncio.wait_for(done.get(), 5)
    assert outcome.ok, outcome.response
    assert {item["entity"] for item in outcome.response["results"]} == {"Kettle", "Ceiling fan"}
    assert "Kettle is on." in outcome.response["result"]

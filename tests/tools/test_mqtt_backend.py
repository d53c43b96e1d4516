"""The MQTT backend against a real Mosquitto broker on loopback, with a small responder
playing the devices: commands complete when the matching state arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from google.genai import types

from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.tools import ToolBox
from edgevoice.tools.backends.mqtt import MqttBackend, mqtt_state
from edgevoice.tools.model import Entity
from edgevoice.tools.settings import HomeSettings
from tests.tools.home_fakes import Mosquitto, MqttDevices, free_port

ENTITIES = [
    {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
    {
        "id": "light.desk",
        "name": "Desk lamp",
        "mqtt": {
            "command_topic": "zigbee2mqtt/desk/set",
            "state_topic": "zigbee2mqtt/desk",
            "brightness_scale": 254,
        },
    },
    {"id": "cover.garage_door", "name": "Garage door"},
    {"id": "climate.hall", "name": "Hall thermostat"},
    {"id": "sensor.outdoor", "name": "Outdoor temperature"},
]
TOPICS = {
    "light.kitchen": ("edgevoice/light.kitchen/set", "edgevoice/light.kitchen/state"),
    "light.desk": ("zigbee2mqtt/desk/set", "zigbee2mqtt/desk"),
    "cover.garage_door": ("edgevoice/cover.garage_door/set", "edgevoice/cover.garage_door/state"),
    "climate.hall": ("edgevoice/climate.hall/set", "edgevoice/climate.hall/state"),
    "sensor.outdoor": ("edgevoice/sensor.outdoor/set", "edgevoice/sensor.outdoor/state"),
}


def initial_states() -> dict[str, dict[str, Any]]:
    return {
        "light.kitchen": {"state": "OFF", "brightness": 0},
        "light.desk": {"state": "OFF"},
        "cover.garage_door": {"state": "closed", "position": 0},
        "climate.hall": {"hvac_mode": "heat", "temperature": 19.0, "current_temperature": 18.0},
        "sensor.outdoor": {"state": 9.5, "unit": "°C"},
    }


def make_box(port: int, **mqtt: Any) -> ToolBox:
    home = HomeSettings(
        backend="mqtt",
        entities=ENTITIES,
        mqtt={
            "host": "127.0.0.1",
            "port": port,
            "confirm_timeout_s": 2,
            "reconnect_initial_s": 0.05,
            **mqtt,
        },
    )
    return ToolBox.from_settings(home, state_dir=Path("/nonexistent"), environ={})


@contextlib.asynccontextmanager
async def devices_on(broker: Mosquitto) -> AsyncIterator[MqttDevices]:
    devices = MqttDevices(broker.port, TOPICS, initial_states())
    task = asyncio.create_task(devices.run())
    ready = asyncio.create_task(devices.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        ready.cancel()
        task.cancel()
        raise RuntimeError(
            f"the device responder did not start: {task.exception() if task.done() else 'timeout'}"
        )
    try:
        yield devices
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


def call(call_id: str, name: str, **args: Any) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=args)


@pytest.mark.asyncio
async def test_a_light_command_completes_when_the_device_reports(mosquitto, outcomes):
    async with devices_on(mosquitto) as devices, make_box(mosquitto.port) as box:
        box.start(call("1", "set_light", entity="kitchen light", brightness=80, color="red"), outcomes)
        outcome = await outcomes.get("1")
        described = box.describe_state()
    assert outcome.ok and outcome.scheduling == "WHEN_IDLE"
    assert outcome.response == {
        "ok": True,
        "result": "Kitchen light is on at 80% brightness, red.",
        "state": {"state": "on", "brightness": 80, "color": "red"},
    }
    assert devices.commands == [
        ("light.kitchen", {"state": "ON", "brightness": 204, "color": {"r": 255, "g": 0, "b": 0}})
    ]
    assert "Kitchen light is on at 80% brightness, red." in described


@pytest.mark.asyncio
async def test_custom_topics_brightness_scale_covers_and_climate(mosquitto, outcomes):
    async with devices_on(mosquitto) as devices, make_box(mosquitto.port) as box:
        box.start(call("d", "set_light", entity="desk lamp", brightness=50), outcomes)
        box.start(call("g", "set_cover", entity="garage door", action="open"), outcomes)
        box.start(call("c", "set_climate", entity="hall thermostat", target_temperature=21.5), outcomes)
        desk, garage, climate = (
            await outcomes.get("d"),
            await outcomes.get("g"),
            await outcomes.get("c"),
        )
    assert desk.response["state"] == {"state": "on", "brightness": 50, "color": None}
    assert ("light.desk", {"state": "ON", "brightness": 127}) in devices.commands
    assert garage.response["state"] == {"state": "open", "position": 100}
    assert climate.response["state"] == {
        "hvac_mode": "heat",
        "target_temperature": 21.5,
        "current_temperature": 18.0,
    }


@pytest.mark.asyncio
async def test_state_reads_use_the_retained_state(mosquitto, outcomes):
    async with devices_on(mosquitto), make_box(mosquitto.port) as box:
        box.start(call("s", "get_state", entity="outdoor temperature"), outcomes)
        outcome = await outcomes.get("s")
    assert outcome.kind is OutcomeKind.STATE_READ and outcome.scheduling == "SILENT"
    assert outcome.response["state"] == {"state": "9.5", "unit": "°C"}


@pytest.mark.asyncio
async def test_a_device_that_never_confirms(mosquitto, outcomes):
    async with (
        devices_on(mosquitto) as devices,
        make_box(mosquitto.port, confirm_timeout_s=0.3) as box,
    ):
        devices.mute.add("light.kitchen")
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE and outcome.scheduling == "INTERRUPT"
    assert outcome.response["error"] == (
        "Kitchen light did not confirm within 0.3 seconds (it still reports state off, brightness 0)"
    )
    assert devices.commands == [("light.kitchen", {"state": "ON"})]


@pytest.mark.asyncio
async def test_broker_down_from_the_start(outcomes, caplog):
    port = free_port()
    async with make_box(port) as box:
        box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
        outcome = await outcomes.get("1")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE and outcome.scheduling == "INTERRUPT"
    assert (
        outcome.response["error"]
        == f"not connected to the MQTT broker at 127.0.0.1:{port}: Connection refused"
    )
    assert "Connection refused" in caplog.text


@pytest.mark.asyncio
async def test_broker_lost_mid_command_then_back(mosquitto, outcomes):
    box = make_box(mosquitto.port)
    backend = box.backend
    assert isinstance(backend, MqttBackend)
    async with box:
        async with devices_on(mosquitto) as devices:
            devices.mute.add("light.kitchen")
            box.start(call("lost", "set_light", entity="kitchen light", on=True), outcomes)
            await asyncio.wait_for(devices.command_arrived.wait(), 5)
            mosquitto.stop()
            lost = await outcomes.get("lost")
        await asyncio.wait_for(backend.wait_disconnected(), 5)
        box.start(call("down", "set_light", entity="kitchen light", on=True), outcomes)
        down = await outcomes.get("down")

        mosquitto.start()  # same port
        async with devices_on(mosquitto):
            await asyncio.wait_for(backend.wait_connected(), 10)
            box.start(call("back", "set_light", entity="kitchen light", on=True), outcomes)
            back = await outcomes.get("back")
    assert lost.response["error"].startswith("lost the connection to the MQTT broker")
    assert down.response["error"].startswith(
        f"not connected to the MQTT broker at 127.0.0.1:{mosquitto.port}"
    )
    assert back.ok and back.response["state"]["state"] == "on"


@pytest.mark.asyncio
async def test_an_unreadable_state_is_logged_and_ignored(mosquitto, outcomes):
    logged = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Waiter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "ignoring an unreadable state of light.kitchen" in record.getMessage():
                loop.call_soon_threadsafe(logged.set)

    waiter = Waiter(level=logging.DEBUG)
    logging.getLogger("edgevoice").addHandler(waiter)
    try:
        async with devices_on(mosquitto), make_box(mosquitto.port) as box:
            # Subscribed first, so the rogue's frames are delivered (they are not retained).
            await asyncio.wait_for(box.backend.wait_connected(), 10)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as rogue:
                await rogue.publish("edgevoice/light.kitchen/state", b"\xff\xfe", qos=1)
                await rogue.publish("edgevoice/light.kitchen/state", json.dumps({"state": "BLINKING"}), qos=1)
            await asyncio.wait_for(logged.wait(), 10)
            box.start(call("1", "set_light", entity="kitchen light", on=True), outcomes)
            outcome = await outcomes.get("1")
    finally:
        logging.getLogger("edgevoice").removeHandler(waiter)
    assert outcome.ok


def test_state_payload_shapes():
    light = Entity("light.a", "A", "light")
    assert mqtt_state(light, b'{"state": "ON", "brightness": 128, "color_temp": 370}') == {
        "state": "on",
        "brightness": 50,
        "color": "warm white",
    }
    assert mqtt_state(light, b"OFF") == {"state": "off", "brightness": None, "color": None}
    sensor = Entity("sensor.a", "A", "sensor")
    assert mqtt_state(sensor, b"21.5") == {"state": "21.5", "unit": None}
    with pytest.raises(ValueError, match="empty payload"):
        mqtt_state(sensor, b"  ")


def test_the_password_never_shows(caplog):
    caplog.set_level(logging.DEBUG)
    home = HomeSettings(backend="mqtt", entities=ENTITIES, mqtt={"username": "edgevoice"})
    box = ToolBox.from_settings(
        home, state_dir=Path("/nonexistent"), environ={"MQTT_PASSWORD": "hunter2-secret"}
    )
    assert "hunter2-secret" not in repr(box.backend)
    assert box.backend._password.get_secret_value() == "hunter2-secret"

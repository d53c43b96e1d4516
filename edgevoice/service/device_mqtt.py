"""The device in Home Assistant over MQTT: discovery, state, commands, a last will.

Topics under ``<base_topic>/device/<node_id>`` (``edgevoice/device/edgevoice`` by default):

=====================  ==========================================================
``availability``       ``online`` / ``offline`` (retained; ``offline`` is the last
                       will, so a daemon that dies shows as unavailable)
``state``              idle, listening, thinking, speaking, offline, error, ringing,
                       muted (retained)
``volume``             0..10 (retained); ``volume/set`` takes a level
``muted``              ``ON`` / ``OFF`` (retained); ``muted/set`` takes ``ON``/``OFF``
``heard``, ``said``    the last thing heard and said (only with transcripts enabled)
``announce``           text to speak (plain, or JSON with ``message`` or ``text``)
=====================  ==========================================================

Discovery configs go to ``<discovery_prefix>/<component>/<node_id>/<object>/config``
(retained): a state sensor, a volume number, a mute switch, two transcript sensors when
transcripts are enabled, and an "Announce" text entity whose ``text.set_value`` action (or
``mqtt.publish`` to the announce topic) makes the device speak. The connection uses
``[device.mqtt]`` if set, else ``[home.mqtt]`` when the home is on MQTT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import TYPE_CHECKING, Any

import aiomqtt

from edgevoice import __version__
from edgevoice.tools.device_settings import device_mqtt_settings
from edgevoice.tools.settings import MqttSettings

if TYPE_CHECKING:
    from edgevoice.config import Settings
    from edgevoice.service.household import Household

log = logging.getLogger("edgevoice")

STATES = ("idle", "listening", "thinking", "speaking", "offline", "error", "ringing", "muted")
MQTT_PASSWORD_CREDENTIAL = "mqtt-password"
MQTT_PASSWORD_ENV = "MQTT_PASSWORD"


class DeviceTopics:
    def __init__(self, settings: Settings, mqtt: MqttSettings) -> None:
        device = settings.device
        self.node_id = device.node_id
        self.base = f"{mqtt.base_topic}/device/{device.node_id}"
        self.prefix = device.discovery_prefix
        self.availability = f"{self.base}/availability"
        self.state = f"{self.base}/state"
        self.volume = f"{self.base}/volume"
        self.volume_set = f"{self.base}/volume/set"
        self.muted = f"{self.base}/muted"
        self.muted_set = f"{self.base}/muted/set"
        self.heard = f"{self.base}/heard"
        self.said = f"{self.base}/said"
        self.announce = f"{self.base}/announce"

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"


def discovery_messages(settings: Settings, topics: DeviceTopics) -> dict[str, dict[str, Any]]:
    """Config topic -> discovery payload, for every entity this device offers."""
    node = topics.node_id
    device = {
        "identifiers": [f"edgevoice_{node}"],
        "name": settings.device.name,
        "manufacturer": "EdgeVoice",
        "model": "push-to-talk Gemini Live assistant",
        "sw_version": __version__,
    }

    def entity(object_id: str, name: str, **fields: Any) -> dict[str, Any]:
        return {
            "name": name,
            "unique_id": f"edgevoice_{node}_{object_id}",
            "object_id": f"{node}_{object_id}",
            "availability_topic": topics.availability,
            "device": device,
            **fields,
        }

    messages = {
        topics.config_topic("sensor", "state"): entity(
            "state",
            "State",
            state_topic=topics.state,
            device_class="enum",
            options=list(STATES),
            icon="mdi:account-voice",
        ),
        topics.config_topic("number", "volume"): entity(
            "volume",
            "Volume",
            state_topic=topics.volume,
            command_topic=topics.volume_set,
            min=0,
            max=10,
            step=1,
            mode="slider",
            icon="mdi:volume-high",
        ),
        topics.config_topic("switch", "microphone_mute"): entity(
            "microphone_mute",
            "Microphone mute",
            state_topic=topics.muted,
            command_topic=topics.muted_set,
            payload_on="ON",
            payload_off="OFF",
            icon="mdi:microphone-off",
        ),
        # A text entity (HA 2022.12+): its text.set_value action publishes the sentence.
        topics.config_topic("text", "announce"): entity(
            "announce",
            "Announce",
            command_topic=topics.announce,
            min=1,
            max=255,
            mode="text",
            icon="mdi:bullhorn",
        ),
    }
    if settings.logging.transcripts:
        messages[topics.config_topic("sensor", "last_heard")] = entity(
            "last_heard", "Last heard", state_topic=topics.heard, icon="mdi:account-voice"
        )
        messages[topics.config_topic("sensor", "last_said")] = entity(
            "last_said", "Last said", state_topic=topics.said, icon="mdi:robot"
        )
    return messages


class DeviceMqtt:
    """Keeps the device's MQTT connection (reconnecting), publishes its state and takes
    Home Assistant's commands onto the household."""

    def __init__(self, settings: Settings, mqtt: MqttSettings, household: Household) -> None:
        self._settings = settings
        self._mqtt = mqtt
        self._household = household
        self.topics = DeviceTopics(settings, mqtt)
        self._password = _password()
        # The latest value per state topic, published (retained) on every (re)connection.
        self._values: dict[str, str] = {}
        self._dirty: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()

    def __repr__(self) -> str:
        return f"DeviceMqtt(broker={self._mqtt.host}:{self._mqtt.port}, node={self.topics.node_id!r})"

    async def start(self) -> None:
        household = self._household
        self._set(self.topics.volume, str(household.volume_level))
        self._set(self.topics.muted, "ON" if household.muted else "OFF")
        if household.shown_state is not None:
            self._set(self.topics.state, household.shown_state)
        household.listeners.append(self._on_change)
        self._task = asyncio.get_running_loop().create_task(self._maintain(), name="device mqtt")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._household.listeners.remove(self._on_change)
        client = self._client
        if client is not None:
            # A clean goodbye: the broker sends no will for a normal disconnect.
            with contextlib.suppress(Exception):
                await client.publish(self.topics.availability, "offline", qos=1, retain=True, timeout=2)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _set(self, topic: str, payload: str) -> None:
        if self._values.get(topic) != payload:
            self._values[topic] = payload
            self._dirty.put_nowait(topic)

    def _on_change(self, what: str, value: Any) -> None:
        topics = self.topics
        if what == "state":
            self._set(topics.state, str(value))
        elif what == "volume":
            self._set(topics.volume, str(value))
        elif what == "muted":
            self._set(topics.muted, "ON" if value else "OFF")
        elif what == "heard" and self._settings.logging.transcripts:
            self._set(topics.heard, _sensor_text(value))
        elif what == "said" and self._settings.logging.transcripts:
            self._set(topics.said, _sensor_text(value))

    async def _maintain(self) -> None:
        mqtt = self._mqtt
        delay = mqtt.reconnect_initial_s
        last_error: str | None = None
        identifier = f"{mqtt.client_id or self.topics.node_id}-device"
        while True:
            try:
                async with aiomqtt.Client(
                    mqtt.host,
                    mqtt.port,
                    username=mqtt.username,
                    password=self._password,
                    identifier=identifier,
                    keepalive=mqtt.keepalive_s,
                    timeout=mqtt.confirm_timeout_s,
                    will=aiomqtt.Will(self.topics.availability, "offline", qos=1, retain=True),
                ) as client:
                    await self._announce_self(client)
                    self._client = client
                    self.connected.set()
                    last_error = None
                    delay = mqtt.reconnect_initial_s
                    log.info("Home Assistant: device published on MQTT %s:%d", mqtt.host, mqtt.port)
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._publish_changes(client))
                        async for message in client.messages:
                            self._on_message(message)
            except aiomqtt.MqttError as exc:
                reason = str(exc) or type(exc).__name__
                level = logging.WARNING if reason != last_error else logging.DEBUG
                last_error = reason
                log.log(
                    level, "device MQTT %s:%d: %s; retrying in %.1f s", mqtt.host, mqtt.port, reason, delay
                )
            except Exception:
                log.exception("device MQTT task failed; retrying in %.1f s", delay)
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay)  # reconnect back-off, not synchronisation
            delay = min(delay * 2, mqtt.reconnect_max_s)

    async def _announce_self(self, client: aiomqtt.Client) -> None:
        qos = self._mqtt.qos
        topics = self.topics
        for topic in (topics.volume_set, topics.muted_set, topics.announce):
            await client.subscribe(topic, qos=qos)
        if self._settings.device.discovery:
            for topic, payload in discovery_messages(self._settings, topics).items():
                await client.publish(topic, json.dumps(payload), qos=qos, retain=True)
        for topic, payload in list(self._values.items()):
            await client.publish(topic, payload, qos=qos, retain=True)
        await client.publish(topics.availability, "online", qos=qos, retain=True)

    async def _publish_changes(self, client: aiomqtt.Client) -> None:
        while True:
            topic = await self._dirty.get()
            await client.publish(topic, self._values[topic], qos=self._mqtt.qos, retain=True)

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = str(message.topic)
        payload = message.payload
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes | bytearray) else str(payload)
        household = self._household
        topics = self.topics
        if topic == topics.announce:
            spoken = _announcement_text(text)
            log.info("announcement from MQTT")
            error = household.announce(spoken)
            if error:
                log.warning("MQTT announcement refused: %s", error)
        elif topic == topics.volume_set:
            try:
                level = round(float(text))
            except ValueError:
                log.warning("ignoring a volume that is not a number on %s: %.40r", topic, text)
                return
            household.set_volume_level(level)
        elif topic == topics.muted_set:
            value = text.strip().upper()
            if value not in ("ON", "OFF"):
                log.warning("ignoring %.40r on %s: expected ON or OFF", text, topic)
                return
            household.set_muted(value == "ON")


def _announcement_text(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        for key in ("message", "text"):
            if isinstance(data.get(key), str):
                return data[key]
    return text if not isinstance(data, str) else data


def _sensor_text(value: Any) -> str:
    # Home Assistant keeps at most 255 characters of a sensor's state.
    text = " ".join(str(value).split())
    return text if len(text) <= 255 else text[:252] + "..."


def _password() -> str | None:
    value = os.environ.get(MQTT_PASSWORD_ENV, "").strip()
    if value:
        return value
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        from pathlib import Path

        from edgevoice.config import read_credential_file

        path = Path(directory) / MQTT_PASSWORD_CREDENTIAL
        if path.exists():
            return read_credential_file(path) or None
    return None


__all__ = ["STATES", "DeviceMqtt", "DeviceTopics", "device_mqtt_settings", "discovery_messages"]

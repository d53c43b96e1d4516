"""MQTT devices (aiomqtt): a command is published, and it is done when the device's state
topic reports the requested state.

Topics per entity: ``<base_topic>/<entity id>/set`` and ``<base_topic>/<entity id>/state``
unless the entity's ``mqtt`` table names others. Payloads are JSON objects:

- light: Home Assistant's MQTT JSON schema, ``{"state": "ON", "brightness": 204,
  "color": {"r": 255, "g": 0, "b": 0}, "color_temp": 370}`` (brightness on the entity's
  ``brightness_scale``, 255 by default; colour temperature in mireds).
- climate: ``{"temperature": 21.0, "hvac_mode": "heat"}``; state adds ``current_temperature``.
- cover: ``{"state": "OPEN"|"CLOSE"|"STOP"}`` or ``{"position": 40}``; state
  ``{"state": "open"|"closed"|"opening"|"closing"|"stopped", "position": 40}``.
- scene: ``{"state": "ON"}`` (done once the broker has it; scenes report no state).
- media_player: ``{"state": "PLAY"|"PAUSE"|"STOP"|"NEXT"|"PREVIOUS"}`` or
  ``{"volume_level": 0.4}``; state ``{"state": "playing"|..., "volume_level": 0.4}``.
- lock: ``{"state": "LOCK"|"UNLOCK"}``; state ``{"state": "LOCKED"|"UNLOCKED"}``.
- alarm_control_panel: ``{"state": "ARM_HOME"|"ARM_AWAY"|"ARM_NIGHT"|"DISARM"}``;
  state ``{"state": "armed_home"|...|"disarmed"}``.
- sensor / binary_sensor: state ``{"state": ..., "unit": ...}`` or a bare value.

The connection is kept by one task that reconnects with doubling delays; calls made while
the broker is unreachable fail at once with the reason, instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt
from pydantic import SecretStr

from edgevoice.tools.model import BackendError, Command, Entity
from edgevoice.tools.settings import MqttSettings
from edgevoice.tools.states import COLORS, WHITE_TEMPERATURES_K, nearest_color

log = logging.getLogger(__name__)

Expectation = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Topics:
    command: str
    state: str
    brightness_scale: int


class MqttBackend:
    name = "mqtt"

    def __init__(
        self, entities: Iterable[Entity], settings: MqttSettings, *, password: str | None = None
    ):
        self._settings = settings
        self._password = SecretStr(password) if password else None
        self._entities = {entity.id: entity for entity in entities}
        self._topics = {
            entity_id: _topics_of(entity, settings) for entity_id, entity in self._entities.items()
        }
        self._by_state_topic = {
            topics.state: self._entities[entity_id] for entity_id, topics in self._topics.items()
        }
        self._known: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, list[tuple[Expectation, asyncio.Future[dict[str, Any]]]]] = {}
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._attempted = asyncio.Event()
        self._last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"MqttBackend(broker={self._settings.host}:{self._settings.port}, "
            f"username={self._settings.username!r}, connected={self.connected})"
        )

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def wait_connected(self) -> None:
        """Wait until the broker connection is up."""
        await self._connected.wait()

    async def wait_disconnected(self) -> None:
        """Wait until a connection attempt has failed or the connection was lost."""
        await self._disconnected.wait()

    async def open(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._maintain(), name="mqtt connection"
            )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def execute(self, command: Command) -> Mapping[str, Any]:
        entity = command.entity
        topics = self._topics[entity.id]
        payload, expectation = mqtt_command(command, topics.brightness_scale)
        client = await self._connection()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter = (expectation, future)
        self._waiters.setdefault(entity.id, []).append(waiter)
        timeout = self._settings.confirm_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await client.publish(
                    topics.command, json.dumps(payload), qos=self._settings.qos, timeout=timeout
                )
                if entity.domain == "scene":  # scenes have no state to wait for
                    return {"state": "activated"}
                return await future
        except TimeoutError:
            last = self._known.get(entity.id)
            raise BackendError(
                f"{entity.name} did not confirm within {timeout:g} seconds"
                + (f" (it still reports {_brief(last)})" if last else " (no state reported)")
            ) from None
        except aiomqtt.MqttError as exc:
            raise BackendError(
                f"could not send the command to {entity.name}: {_reason(exc)}"
            ) from None
        finally:
            waiters = self._waiters.get(entity.id, [])
            if waiter in waiters:
                waiters.remove(waiter)

    async def read_state(self, entity: Entity) -> Mapping[str, Any]:
        await self._connection()
        state = self._known.get(entity.id)
        if state is not None:
            return dict(state)
        # Just connected: the retained state may be on its way. Wait for it, briefly.
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiter: tuple[Expectation, asyncio.Future[dict[str, Any]]] = (lambda _state: True, future)
        self._waiters.setdefault(entity.id, []).append(waiter)
        try:
            async with asyncio.timeout(self._settings.confirm_timeout_s):
                return await future
        except TimeoutError:
            raise BackendError(
                f"{entity.name} has not reported its state "
                f"(nothing on {self._topics[entity.id].state})"
            ) from None
        finally:
            self._waiters[entity.id].remove(waiter)

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        return {entity_id: dict(state) for entity_id, state in self._known.items()}

    # -- the connection -------------------------------------------------------------------------

    async def _connection(self) -> aiomqtt.Client:
        if self._client is None and not self._attempted.is_set():
            await (
                self._attempted.wait()
            )  # the first attempt is under way; the call's timeout bounds this
        if self._client is None:
            broker = f"{self._settings.host}:{self._settings.port}"
            raise BackendError(
                f"not connected to the MQTT broker at {broker}"
                + (f": {self._last_error}" if self._last_error else "")
            )
        return self._client

    async def _maintain(self) -> None:
        delay = self._settings.reconnect_initial_s
        while True:
            try:
                async with aiomqtt.Client(
                    self._settings.host,
                    self._settings.port,
                    username=self._settings.username,
                    password=self._password.get_secret_value() if self._password else None,
                    identifier=self._settings.client_id,
                    keepalive=self._settings.keepalive_s,
                    timeout=self._settings.confirm_timeout_s,
                ) as client:
                    for topic in self._by_state_topic:
                        await client.subscribe(topic, qos=self._settings.qos)
                    self._client = client
                    self._last_error = None
                    self._disconnected.clear()
                    self._connected.set()
                    self._attempted.set()
                    delay = self._settings.reconnect_initial_s
                    log.info(
                        "connected to the MQTT broker at %s:%d",
                        self._settings.host,
                        self._settings.port,
                    )
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                reason = _reason(exc)
                # Say it once; a broker that stays down must not flood the journal.
                level = logging.WARNING if reason != self._last_error else logging.DEBUG
                self._last_error = reason
                log.log(
                    level,
                    "MQTT broker %s:%d: %s; retrying in %.1f s",
                    self._settings.host,
                    self._settings.port,
                    self._last_error,
                    delay,
                )
            except Exception as exc:  # a bug must not end the connection for good
                self._last_error = f"internal error ({type(exc).__name__})"
                log.exception("MQTT connection task failed; retrying in %.1f s", delay)
            finally:
                self._client = None
                self._connected.clear()
                self._disconnected.set()
                self._attempted.set()
                self._fail_waiters(
                    f"lost the connection to the MQTT broker ({self._last_error or 'closed'})"
                )
            await asyncio.sleep(delay)  # reconnect back-off, not synchronisation
            delay = min(delay * 2, self._settings.reconnect_max_s)

    def _on_message(self, message: aiomqtt.Message) -> None:
        entity = self._by_state_topic.get(str(message.topic))
        if entity is None:
            return
        try:
            state = mqtt_state(entity, message.payload, self._topics[entity.id].brightness_scale)
        except ValueError as exc:
            log.warning(
                "ignoring an unreadable state of %s on %s: %s", entity.id, message.topic, exc
            )
            return
        self._known[entity.id] = state
        for expectation, future in list(self._waiters.get(entity.id, ())):
            if not future.done() and expectation(state):
                future.set_result(dict(state))

    def _fail_waiters(self, reason: str) -> None:
        for waiters in self._waiters.values():
            for _, future in waiters:
                if not future.done():
                    future.set_exception(BackendError(reason))


def _topics_of(entity: Entity, settings: MqttSettings) -> _Topics:
    own = entity.settings.mqtt if entity.settings is not None else None
    base = f"{settings.base_topic}/{entity.id}"
    return _Topics(
        command=(own.command_topic if own and own.command_topic else f"{base}/set"),
        state=(own.state_topic if own and own.state_topic else f"{base}/state"),
        brightness_scale=own.brightness_scale if own else 255,
    )


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return re.sub(r"^\[Errno \d+\]\s*", "", text)


def _brief(state: Mapping[str, Any]) -> str:
    return (
        ", ".join(f"{key} {value}" for key, value in state.items() if value is not None)
        or "nothing"
    )


# -- payloads (pure) -------------------------------------------------------------------------------


def _close(a: Any, b: float, tolerance: float) -> bool:
    return isinstance(a, int | float) and not isinstance(a, bool) and abs(a - b) <= tolerance


def mqtt_command(
    command: Command, brightness_scale: int = 255
) -> tuple[dict[str, Any], Expectation]:
    """The JSON payload of a command and the test a reported state must pass to confirm it."""
    data = command.data
    match command.domain, command.service:
        case "light" | "switch" | "fan" | "humidifier", "turn_off":
            return {"state": "OFF"}, lambda s: s.get("state") == "off"
        case "switch" | "fan" | "humidifier", "turn_on":
            return {"state": "ON"}, lambda s: s.get("state") == "on"
        case "light", "turn_on":
            payload: dict[str, Any] = {"state": "ON"}
            checks: list[Expectation] = [lambda s: s.get("state") == "on"]
            if "brightness_pct" in data:
                percent = data["brightness_pct"]
                payload["brightness"] = round(percent * brightness_scale / 100)
                checks.append(lambda s: _close(s.get("brightness"), percent, 1))
            if "color_name" in data:
                red, green, blue = COLORS[data["color_name"]]
                payload["color"] = {"r": red, "g": green, "b": blue}
            elif "color_temp_kelvin" in data:
                payload["color_temp"] = round(1_000_000 / data["color_temp_kelvin"])
            return payload, lambda s: all(check(s) for check in checks)
        case "climate", "set_temperature":
            target = float(data["temperature"])
            payload = {"temperature": target}
            mode = data.get("hvac_mode")
            if mode is not None:
                payload["hvac_mode"] = mode
            return (
                payload,
                lambda s: (
                    _close(s.get("target_temperature"), target, 0.05)
                    and (mode is None or s.get("hvac_mode") == mode)
                ),
            )
        case "cover", "open_cover":
            return {"state": "OPEN"}, lambda s: s.get("state") in ("open", "opening")
        case "cover", "close_cover":
            return {"state": "CLOSE"}, lambda s: s.get("state") in ("closed", "closing")
        case "cover", "stop_cover":
            return {"state": "STOP"}, lambda s: True
        case "cover", "set_cover_position":
            position = int(data["position"])
            return {"position": position}, lambda s: _close(s.get("position"), position, 1)
        case "scene", "turn_on":
            return {"state": "ON"}, lambda s: True
        case "media_player", "volume_set":
            level = float(data["volume_level"])
            return {"volume_level": level}, lambda s: _close(s.get("volume"), round(level * 100), 1)
        case "media_player", service:
            word = {
                "media_play": "PLAY",
                "media_pause": "PAUSE",
                "media_stop": "STOP",
                "media_next_track": "NEXT",
                "media_previous_track": "PREVIOUS",
            }[service]
            wanted = {
                "PLAY": ("playing",),
                "PAUSE": ("paused",),
                "STOP": ("idle", "stopped", "off"),
            }.get(word)
            return {"state": word}, (lambda s: s.get("state") in wanted) if wanted else (
                lambda s: True
            )
        case "lock", "lock":
            return {"state": "LOCK"}, lambda s: s.get("state") == "locked"
        case "lock", "unlock":
            return {"state": "UNLOCK"}, lambda s: s.get("state") == "unlocked"
        case "alarm_control_panel", service:
            mode = (
                "disarmed"
                if service == "alarm_disarm"
                else service.removeprefix("alarm_").replace("arm_", "armed_")
            )
            word = "DISARM" if service == "alarm_disarm" else service.removeprefix("alarm_").upper()
            return {"state": word}, lambda s: s.get("state") == mode
    raise BackendError(
        f"{command.entity.name} cannot do {command.domain}.{command.service} over MQTT"
    )


def mqtt_state(entity: Entity, payload: bytes, brightness_scale: int = 255) -> dict[str, Any]:
    """A state payload -> the neutral shape. Raises ValueError for an unreadable payload."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if not text:
        raise ValueError("empty payload")
    try:
        raw = json.loads(text)
    except ValueError:
        raw = text  # a bare value: "ON", "21.5"
    if not isinstance(raw, dict):
        raw = {"state": raw}
    status = raw.get("state")
    status = str(status).lower() if status is not None else None
    match entity.domain:
        case "light":
            brightness = raw.get("brightness")
            color = None
            if isinstance(raw.get("color"), dict):
                rgb = raw["color"]
                color = nearest_color([rgb.get("r"), rgb.get("g"), rgb.get("b")])
            elif isinstance(raw.get("color_temp"), int | float) and raw["color_temp"] > 0:
                kelvin = 1_000_000 / raw["color_temp"]
                color = min(
                    WHITE_TEMPERATURES_K, key=lambda name: abs(WHITE_TEMPERATURES_K[name] - kelvin)
                )
            if status not in ("on", "off"):
                raise ValueError(f"light state must be ON or OFF, not {raw.get('state')!r}")
            percent = (
                round(brightness * 100 / brightness_scale)
                if isinstance(brightness, int | float) and not isinstance(brightness, bool)
                else None
            )
            return {"state": status, "brightness": percent, "color": color}
        case "climate":
            return {
                "hvac_mode": str(raw.get("hvac_mode", raw.get("mode", "unknown"))).lower(),
                "target_temperature": _float(raw.get("temperature", raw.get("target_temperature"))),
                "current_temperature": _float(raw.get("current_temperature")),
            }
        case "cover":
            position = _float(raw.get("position"))
            if status is None and position is not None:
                status = "closed" if position == 0 else "open"
            return {
                "state": status or "unknown",
                "position": round(position) if position is not None else None,
            }
        case "media_player":
            level = _float(raw.get("volume_level"))
            return {
                "state": status or "unknown",
                "volume": round(level * 100) if level is not None else None,
            }
        case "sensor":
            value = raw.get("state", raw.get("value"))
            return {"state": "unknown" if value is None else str(value), "unit": raw.get("unit")}
        case _:
            return {"state": status or "unknown"}


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


__all__ = ["MqttBackend", "mqtt_command", "mqtt_state"]

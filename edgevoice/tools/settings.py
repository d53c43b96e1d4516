"""Configuration of the smart home the model may control (the ``[home]`` section).

With the Home Assistant backend and no ``home.entities``, the home is discovered from Home
Assistant (the entities exposed to Assist, with their names, aliases and areas); listed
entities then add to or override discovered ones when ``homeassistant.discover`` is on.
Without a list, the simulated backend runs a small demo home (:func:`default_simulated_home`)
so ``edgevoice simulate`` can switch a light on with no configuration; the MQTT backend
refuses to start without an explicit list.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, SecretStr, field_validator, model_validator

from edgevoice.sections import Section, section
from edgevoice.tools.names import normalize_name

Domain = Literal[
    "light",
    "climate",
    "cover",
    "scene",
    "media_player",
    "lock",
    "alarm_control_panel",
    "sensor",
    "binary_sensor",
    "switch",
    "fan",
    "humidifier",
]
DOMAINS: tuple[str, ...] = get_args(Domain)

FunctionName = Literal[
    "set_light",
    "set_climate",
    "set_cover",
    "activate_scene",
    "control_media",
    "get_state",
    "set_lock",
    "set_alarm",
    "set_power",
]
FUNCTION_NAMES: tuple[str, ...] = get_args(FunctionName)

SchedulingName = Literal["INTERRUPT", "WHEN_IDLE", "SILENT"]

_ENTITY_ID = re.compile(rf"^({'|'.join(DOMAINS)})\.[a-z0-9_]+$")
_TOPIC_FORBIDDEN = re.compile(r"[#+\x00]")

# Comfortable, safe thermostat ranges when an entity does not give its own.
DEFAULT_TEMPERATURE_RANGE = {"C": (7.0, 30.0), "F": (45.0, 86.0)}


class EntityMqttSettings(Section):
    """MQTT topics of one entity (``mqtt`` backend only). Unset topics default to
    ``<base_topic>/<entity id>/set`` and ``<base_topic>/<entity id>/state``."""

    command_topic: str | None = None
    state_topic: str | None = None
    # Home Assistant's MQTT JSON light schema sends brightness on a 0..255 scale by default.
    brightness_scale: int = Field(255, ge=1, le=65535)

    @field_validator("command_topic", "state_topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and (not value or _TOPIC_FORBIDDEN.search(value)):
            raise ValueError("must be a non-empty MQTT topic without wildcards (# or +)")
        return value


class EntitySettings(Section):
    """One device the model may see and control."""

    id: str = Field(description="Home Assistant style entity id: light.kitchen, climate.hall, ...")
    name: str = Field(min_length=1, max_length=80, description="friendly name the user says")
    aliases: list[str] = Field(default_factory=list, max_length=20)
    room: str | None = Field(None, max_length=80)
    # climate only: the setpoint range this thermostat accepts (default by temperature_unit)
    min_temperature: float | None = Field(None, ge=-50, le=150)
    max_temperature: float | None = Field(None, ge=-50, le=150)
    # simulated backend only: the state at first start (merged into the domain's default),
    # for example {state = "12.5", unit = "°C"} for a sensor
    initial_state: dict[str, str | int | float | bool] = Field(default_factory=dict)
    mqtt: EntityMqttSettings = EntityMqttSettings()

    @field_validator("id")
    @classmethod
    def _entity_id(cls, value: str) -> str:
        if not _ENTITY_ID.fullmatch(value):
            raise ValueError(
                "must look like light.kitchen: one of "
                + ", ".join(DOMAINS)
                + ", a dot, then lower-case letters, digits or underscores"
            )
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        if any(not normalize_name(alias) for alias in value):
            raise ValueError("aliases must not be empty")
        return value

    @model_validator(mode="after")
    def _temperatures(self) -> EntitySettings:
        has_range = self.min_temperature is not None or self.max_temperature is not None
        if has_range and self.domain != "climate":
            raise ValueError("min_temperature/max_temperature only apply to climate entities")
        if (
            self.min_temperature is not None
            and self.max_temperature is not None
            and self.min_temperature >= self.max_temperature
        ):
            raise ValueError("min_temperature must be below max_temperature")
        return self

    @property
    def domain(self) -> str:
        return self.id.split(".", 1)[0]


class SimulatedHomeSettings(Section):
    """The in-memory home (``backend = "simulated"``)."""

    latency_s: float = Field(0.3, ge=0, le=60, description="time each device takes to react")
    entity_latency_s: dict[str, float] = Field(
        default_factory=dict, description="per entity id latency, overrides latency_s"
    )
    failure_rate: float = Field(0.0, ge=0, le=1, description="share of calls that fail")
    always_fail: list[str] = Field(default_factory=list, description="entity ids that always fail")
    seed: int | None = Field(None, description="seed of the failure dice, for repeatable runs")
    persist: bool = True
    state_file: str = Field("home-state.json", pattern=r"^[A-Za-z0-9._-]+$")

    @field_validator("entity_latency_s")
    @classmethod
    def _latencies(cls, value: dict[str, float]) -> dict[str, float]:
        for entity_id, seconds in value.items():
            if not 0 <= seconds <= 60:
                raise ValueError(f"latency of {entity_id} must be between 0 and 60 seconds")
        return value


class HomeAssistantSettings(Section):
    """Home Assistant's websocket API (``backend = "homeassistant"``). The long-lived access
    token (of an administrator: reading what is exposed to Assist needs one) comes from
    ``$CREDENTIALS_DIRECTORY/homeassistant-token`` or ``HOMEASSISTANT_TOKEN``, never from
    this file."""

    url: str = "http://homeassistant.local:8123"
    verify_tls: bool = True
    ca_file: Path | None = None
    request_timeout_s: float = Field(8.0, gt=0, le=120)
    # Unset: discover the home when home.entities is not given. True: discover, and listed
    # entities add to or override the discovered ones. False: only the listed entities.
    discover: bool | None = None
    # How long a command waits for a slow device (a cover moving, an alarm arming) to reach
    # the state asked for before it is reported as still on its way. Keep it below
    # home.call_timeout_s.
    settle_timeout_s: float = Field(8.0, ge=0, le=300)
    # A burst of registry changes (a rename) is re-read once, this long after the first.
    refresh_delay_s: float = Field(0.3, ge=0, le=30)
    reconnect_initial_s: float = Field(1.0, gt=0, le=60)
    reconnect_max_s: float = Field(60.0, gt=0, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError(
                "must be an http:// or https:// URL such as http://homeassistant.local:8123"
            )
        return value.rstrip("/")


class MqttSettings(Section):
    """An MQTT broker (``backend = "mqtt"``). The password, if any, comes from
    ``$CREDENTIALS_DIRECTORY/mqtt-password`` or ``MQTT_PASSWORD``."""

    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    client_id: str | None = Field(None, max_length=128)
    base_topic: str = Field("edgevoice", min_length=1)
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    # A command is done when the device publishes a matching state within this time.
    confirm_timeout_s: float = Field(5.0, gt=0, le=120)
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=600)

    @field_validator("base_topic")
    @classmethod
    def _base_topic(cls, value: str) -> str:
        if _TOPIC_FORBIDDEN.search(value):
            raise ValueError("must be an MQTT topic without wildcards (# or +)")
        return value.rstrip("/")


@section("home")
class HomeSettings(Section):
    """The ``[home]`` section."""

    # Off: the model is offered no smart-home functions at all.
    enabled: bool = True
    backend: Literal["simulated", "homeassistant", "mqtt"] = "simulated"
    # Unset: the demo home of default_simulated_home() (simulated backend only).
    entities: list[EntitySettings] | None = None
    # Locks and alarm panels can be read with get_state, but only controlled by voice
    # when allowed; unlocking and disarming also need the confirmation code.
    allow_locks: bool = False
    allow_alarms: bool = False
    # Spoken code or phrase for unlock/disarm. Prefer the credential
    # $CREDENTIALS_DIRECTORY/home-confirmation-code, which takes precedence.
    confirmation_code: SecretStr | None = Field(None, min_length=4, max_length=64)
    confirmation_max_failures: int = Field(3, ge=1, le=20)
    confirmation_lockout_s: float = Field(300.0, ge=0, le=86400)
    temperature_unit: Literal["C", "F"] = "C"
    call_timeout_s: float = Field(10.0, gt=0, le=300)
    function_timeout_s: dict[FunctionName, float] = Field(default_factory=dict)
    max_pending_calls: int = Field(16, ge=1, le=256)
    # Overrides of the scheduling policy (edgevoice.core.tool_scheduling), per function:
    # `scheduling` for successful calls, `failure_scheduling` for failed ones.
    scheduling: dict[FunctionName, SchedulingName] = Field(default_factory=dict)
    failure_scheduling: dict[FunctionName, SchedulingName] = Field(default_factory=dict)
    simulated: SimulatedHomeSettings = SimulatedHomeSettings()
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    mqtt: MqttSettings = MqttSettings()

    @field_validator("function_timeout_s")
    @classmethod
    def _timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, seconds in value.items():
            if not 0 < seconds <= 300:
                raise ValueError(f"timeout of {name} must be above 0 and at most 300 seconds")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HomeSettings:
        if self.entities is None and self.backend == "mqtt":
            raise ValueError(
                f"the {self.backend} backend needs home.entities: list the devices the "
                "assistant may control (the demo home is only for the simulated backend)"
            )
        if self.backend == "homeassistant" and self.homeassistant.discover is False and not self.entities:
            raise ValueError(
                "home.homeassistant.discover = false needs home.entities: list the devices "
                "the assistant may control, or let it discover them"
            )
        if self.backend == "homeassistant" and self.homeassistant.settle_timeout_s >= self.call_timeout_s:
            raise ValueError(
                "home.homeassistant.settle_timeout_s must be below home.call_timeout_s, so a slow "
                "device is reported as still on its way rather than as a timeout"
            )
        entities = self.effective_entities
        ids = [entity.id for entity in entities]
        duplicates = sorted({entity_id for entity_id in ids if ids.count(entity_id) > 1})
        if duplicates:
            raise ValueError(f"entity ids must be unique; repeated: {', '.join(duplicates)}")
        seen: dict[tuple[str, str], str] = {}
        for entity in entities:
            for spoken in [entity.name, *entity.aliases]:
                key = (entity.domain, normalize_name(spoken))
                other = seen.setdefault(key, entity.id)
                if other != entity.id:
                    raise ValueError(
                        f"the name {spoken!r} is used by both {other} and {entity.id}; "
                        "names and aliases must be unique within a domain"
                    )
        known = set(ids)
        for field_name, referenced in (
            ("simulated.always_fail", self.simulated.always_fail),
            ("simulated.entity_latency_s", list(self.simulated.entity_latency_s)),
        ):
            unknown = sorted(set(referenced) - known)
            if unknown:
                raise ValueError(
                    f"{field_name} names entities that are not configured: {', '.join(unknown)}"
                )
        return self

    @property
    def effective_entities(self) -> tuple[EntitySettings, ...]:
        """The listed entities (the simulated demo home when none are listed)."""
        if self.entities is not None:
            return tuple(self.entities)
        return default_simulated_home() if self.backend == "simulated" else ()

    @property
    def discovers(self) -> bool:
        """Whether the home is read from Home Assistant."""
        if self.backend != "homeassistant":
            return False
        discover = self.homeassistant.discover
        return self.entities is None if discover is None else discover


def default_simulated_home() -> tuple[EntitySettings, ...]:
    """The demo home used when no entities are configured (simulated backend)."""
    return (
        EntitySettings(
            id="light.kitchen", name="Kitchen light", aliases=["kitchen lamp"], room="kitchen"
        ),
        EntitySettings(
            id="light.living_room",
            name="Living room light",
            aliases=["lounge light"],
            room="living room",
        ),
        EntitySettings(
            id="climate.thermostat",
            name="Thermostat",
            aliases=["heating", "heater"],
            room="hallway",
            initial_state={"current_temperature": 19.5},
        ),
        EntitySettings(id="cover.garage_door", name="Garage door", room="garage"),
        EntitySettings(id="scene.movie_night", name="Movie night", room="living room"),
        EntitySettings(
            id="media_player.living_room_speaker",
            name="Living room speaker",
            aliases=["speaker", "music"],
            room="living room",
        ),
        EntitySettings(
            id="sensor.outdoor_temperature",
            name="Outdoor temperature",
            aliases=["outside temperature"],
            room="garden",
            initial_state={"state": "12.5", "unit": "°C"},
        ),
    )


__all__ = [
    "DEFAULT_TEMPERATURE_RANGE",
    "DOMAINS",
    "FUNCTION_NAMES",
    "Domain",
    "EntityMqttSettings",
    "EntitySettings",
    "FunctionName",
    "HomeAssistantSettings",
    "HomeSettings",
    "MqttSettings",
    "SchedulingName",
    "SimulatedHomeSettings",
    "default_simulated_home",
]

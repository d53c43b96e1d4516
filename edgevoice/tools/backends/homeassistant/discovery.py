"""Which Home Assistant entities the model may use, and why the others are left out.

:func:`fetch_snapshot` reads, over the websocket, what HA knows: the states, the entity
registry (with each entry's aliases, device class and capabilities), the device registry
(an entity without its own area takes its device's), the area and floor registries and
the entities' exposure to the ``conversation`` assistant. :func:`plan_home` then decides,
without I/O, which entities the model gets and under which names.

Exposure follows HA's own rule: a stored ``should_expose`` wins; without one, an entity is
exposed when HA exposes new entities to Assist and it is of a default-exposed kind (one of
``DEFAULT_EXPOSED_DOMAINS`` or a sensor of a default-exposed device class, never a
configuration/diagnostic or hidden entity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgevoice.tools.backends.homeassistant.connection import CommandFailed, HomeAssistantConnection
from edgevoice.tools.model import Entity
from edgevoice.tools.settings import DEFAULT_TEMPERATURE_RANGE, DOMAINS, EntitySettings

ASSISTANT = "conversation"
# Home Assistant's own defaults (homeassistant/components/homeassistant/exposed_entities.py).
DEFAULT_EXPOSED_DOMAINS = frozenset(
    {
        "climate",
        "cover",
        "fan",
        "humidifier",
        "light",
        "lock",
        "scene",
        "script",
        "switch",
        "todo",
        "vacuum",
        "water_heater",
    }
)
DEFAULT_EXPOSED_BINARY_SENSOR_CLASSES = frozenset(
    {"door", "garage_door", "lock", "motion", "opening", "presence", "window"}
)
DEFAULT_EXPOSED_SENSOR_CLASSES = frozenset(
    {"aqi", "co", "co2", "humidity", "pm10", "pm25", "temperature", "volatile_organic_compounds"}
)

# Cover feature bits (CoverEntityFeature) and light colour modes, for "what it can do".
_COVER_FEATURES = {1: "open", 2: "close", 4: "set position", 8: "stop"}
_COLOR_MODES = {"hs", "rgb", "rgbw", "rgbww", "xy"}


@dataclass(frozen=True)
class HomeSnapshot:
    """What HA said, keyed by id; plain JSON values as HA sent them."""

    states: Mapping[str, Mapping[str, Any]]
    registry: Mapping[str, Mapping[str, Any]]
    devices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    areas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    floors: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # entity id -> should_expose for the conversation assistant, where HA stored one
    exposure: Mapping[str, bool] = field(default_factory=dict)
    expose_new: bool = True


@dataclass(frozen=True)
class LeftOut:
    entity_id: str
    name: str
    reason: str


@dataclass(frozen=True)
class PlannedHome:
    entities: tuple[Entity, ...]
    left_out: tuple[LeftOut, ...]


async def fetch_snapshot(
    connection: HomeAssistantConnection,
    on_states: Callable[[Mapping[str, Mapping[str, Any]]], None] | None = None,
) -> HomeSnapshot:
    """Read everything discovery needs. Raises what :meth:`command` raises. ``on_states``
    gets the states as soon as they arrive, before the registries are read: state events
    arriving meanwhile are newer and must not be overwritten by them afterwards."""
    states = await connection.command("get_states")
    states_by_id = {s["entity_id"]: s for s in _dicts(states) if "entity_id" in s}
    if on_states is not None:
        on_states(states_by_id)
    registry_list = await connection.command("config/entity_registry/list")
    devices = await connection.command("config/device_registry/list")
    areas = await connection.command("config/area_registry/list")
    try:
        floors = await connection.command("config/floor_registry/list")
    except CommandFailed:  # older HA: no floors
        floors = []
    try:
        exposed = await connection.command("homeassistant/expose_entity/list")
    except CommandFailed as exc:  # needs an admin token
        raise CommandFailed(
            exc.code,
            "cannot read which entities are exposed to Assist: the token's user must be an "
            f"administrator ({exc.message})",
        ) from None
    try:
        expose_new = await connection.command(
            "homeassistant/expose_new_entities/get", assistant=ASSISTANT
        )
    except CommandFailed:
        expose_new = {"expose_new": True}

    ids = [entry["entity_id"] for entry in _dicts(registry_list) if "entity_id" in entry]
    details: dict[str, Any] = {}
    if ids:
        details = await connection.command("config/entity_registry/get_entries", entity_ids=ids) or {}
    registry = {
        entry["entity_id"]: {**entry, **(details.get(entry["entity_id"]) or {})}
        for entry in _dicts(registry_list)
        if "entity_id" in entry
    }
    exposure: dict[str, bool] = {}
    for entity_id, settings in ((exposed or {}).get("exposed_entities") or {}).items():
        if isinstance(settings, Mapping) and isinstance(settings.get(ASSISTANT), bool):
            exposure[entity_id] = settings[ASSISTANT]
    return HomeSnapshot(
        states=states_by_id,
        registry=registry,
        devices={d["id"]: d for d in _dicts(devices) if "id" in d},
        areas={a["area_id"]: a for a in _dicts(areas) if "area_id" in a},
        floors={f["floor_id"]: f for f in _dicts(floors) if "floor_id" in f},
        exposure=exposure,
        expose_new=bool((expose_new or {}).get("expose_new", True)),
    )


def plan_home(
    snapshot: HomeSnapshot,
    listed: Iterable[EntitySettings] = (),
    temperature_unit: str = "C",
) -> PlannedHome:
    """The entities the model gets: every exposed entity of a kind EdgeVoice can use, with
    HA's names, aliases and areas; ``listed`` entities replace or add to them."""
    overrides = {entity.id: entity for entity in listed}
    entities: list[Entity] = []
    left_out: list[LeftOut] = []
    for entity_id in sorted(snapshot.states):
        state = snapshot.states[entity_id]
        entry = snapshot.registry.get(entity_id)
        name = _name(entity_id, state, entry)
        if entity_id in overrides:
            continue
        exposed, why = is_exposed(snapshot, entity_id, state, entry)
        if not exposed:
            left_out.append(LeftOut(entity_id, name, why))
            continue
        domain = entity_id.split(".", 1)[0]
        if domain not in DOMAINS:
            left_out.append(LeftOut(entity_id, name, f"EdgeVoice has no function for {domain}"))
            continue
        entities.append(_entity(snapshot, entity_id, name, state, entry, temperature_unit))
    for listed_entity in overrides.values():
        entities.append(Entity.from_settings(listed_entity, temperature_unit))
    entities.sort(key=lambda entity: entity.id)
    return PlannedHome(tuple(entities), tuple(left_out))


def is_exposed(
    snapshot: HomeSnapshot,
    entity_id: str,
    state: Mapping[str, Any],
    entry: Mapping[str, Any] | None,
) -> tuple[bool, str]:
    """Whether HA exposes the entity to Assist, and a reason when it does not."""
    if entry is not None:
        options = entry.get("options") if isinstance(entry.get("options"), Mapping) else {}
        stored = (options or {}).get(ASSISTANT, {})
        if isinstance(stored, Mapping) and isinstance(stored.get("should_expose"), bool):
            return stored["should_expose"], "not exposed to Assist in Home Assistant"
    if entity_id in snapshot.exposure:
        return snapshot.exposure[entity_id], "not exposed to Assist in Home Assistant"
    if not snapshot.expose_new:
        return False, "not exposed to Assist (Home Assistant exposes no new entities)"
    if entry is not None and entry.get("entity_category") is not None:
        return False, f"a {entry['entity_category']} entity, not exposed by default"
    if entry is not None and entry.get("hidden_by") is not None:
        return False, "hidden in Home Assistant"
    domain = entity_id.split(".", 1)[0]
    if domain in DEFAULT_EXPOSED_DOMAINS:
        return True, ""
    device_class = _device_class(state, entry)
    if domain == "binary_sensor" and device_class in DEFAULT_EXPOSED_BINARY_SENSOR_CLASSES:
        return True, ""
    if domain == "sensor" and device_class in DEFAULT_EXPOSED_SENSOR_CLASSES:
        return True, ""
    return False, f"a {domain} of a kind Home Assistant does not expose to Assist by default"


def _entity(
    snapshot: HomeSnapshot,
    entity_id: str,
    name: str,
    state: Mapping[str, Any],
    entry: Mapping[str, Any] | None,
    temperature_unit: str,
) -> Entity:
    domain = entity_id.split(".", 1)[0]
    attributes = state.get("attributes") if isinstance(state.get("attributes"), Mapping) else {}
    assert isinstance(attributes, Mapping)
    area = _area(snapshot, entry)
    floor = None
    if area is not None and area.get("floor_id") in snapshot.floors:
        floor = str(snapshot.floors[area["floor_id"]].get("name") or "") or None
    aliases = tuple(
        sorted(
            {str(alias) for alias in (entry or {}).get("aliases") or () if str(alias).strip()}
            - {name}
        )
    )
    low = high = None
    if domain == "climate":
        default_low, default_high = DEFAULT_TEMPERATURE_RANGE[temperature_unit]
        low = _number(attributes.get("min_temp"), default_low)
        high = _number(attributes.get("max_temp"), default_high)
    return Entity(
        id=entity_id,
        name=name,
        domain=domain,
        room=str(area["name"]) if area is not None and area.get("name") else None,
        aliases=aliases,
        min_temperature=low,
        max_temperature=high,
        room_aliases=tuple(str(a) for a in (area or {}).get("aliases") or ()),
        floor=floor,
        needs_code=domain == "alarm_control_panel" and attributes.get("code_format") is not None,
        abilities=abilities(domain, attributes),
        device_class=_device_class(state, entry),
        source="homeassistant",
    )


def abilities(domain: str, attributes: Mapping[str, Any]) -> tuple[str, ...]:
    """What the entity can do, in words, from its state attributes."""
    features = attributes.get("supported_features")
    features = features if isinstance(features, int) else 0
    match domain:
        case "light":
            modes = set(attributes.get("supported_color_modes") or ())
            can = ["on/off"]
            if modes - {"onoff"}:
                can.append("brightness")
            if modes & _COLOR_MODES:
                can.append("colour")
            if "color_temp" in modes:
                can.append("white temperature")
            return tuple(can)
        case "cover":
            return tuple(word for bit, word in _COVER_FEATURES.items() if features & bit)
        case "lock":
            return ("lock", "unlock") + (("open",) if features & 1 else ())
        case "alarm_control_panel":
            code = "code needed" if attributes.get("code_format") is not None else "no code"
            return ("arm", "disarm", code)
        case "climate":
            return ("target temperature", "mode")
        case "media_player":
            return ("play/pause", "volume")
        case "scene":
            return ("activate",)
        case "switch" | "fan" | "humidifier":
            return ("on/off",)
        case _:
            return ("read state",)


def _area(snapshot: HomeSnapshot, entry: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if entry is None:
        return None
    area_id = entry.get("area_id")
    if not area_id and entry.get("device_id") in snapshot.devices:
        area_id = snapshot.devices[entry["device_id"]].get("area_id")
    return snapshot.areas.get(area_id) if area_id else None


def _name(entity_id: str, state: Mapping[str, Any], entry: Mapping[str, Any] | None) -> str:
    attributes = state.get("attributes") if isinstance(state.get("attributes"), Mapping) else {}
    for candidate in (
        (entry or {}).get("name"),
        (attributes or {}).get("friendly_name"),
        (entry or {}).get("original_name"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()[:80]
    return entity_id.split(".", 1)[1].replace("_", " ")


def _device_class(state: Mapping[str, Any], entry: Mapping[str, Any] | None) -> str | None:
    if entry is not None and (entry.get("device_class") or entry.get("original_device_class")):
        return str(entry.get("device_class") or entry.get("original_device_class"))
    attributes = state.get("attributes") if isinstance(state.get("attributes"), Mapping) else {}
    value = (attributes or {}).get("device_class")
    return str(value) if value else None


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value or () if isinstance(item, Mapping)]


__all__ = [
    "DEFAULT_EXPOSED_DOMAINS",
    "HomeSnapshot",
    "LeftOut",
    "PlannedHome",
    "abilities",
    "fetch_snapshot",
    "is_exposed",
    "plan_home",
]

"""The plain values passed between the function registry, the runner and the backends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from edgevoice.tools.settings import DEFAULT_TEMPERATURE_RANGE, EntitySettings


@dataclass(frozen=True)
class Entity:
    """A configured device, as the registry and the backends see it."""

    id: str
    name: str
    domain: str
    room: str | None = None
    aliases: tuple[str, ...] = ()
    min_temperature: float | None = None
    max_temperature: float | None = None
    settings: EntitySettings | None = field(default=None, compare=False, repr=False)
    # Other names of the room (Home Assistant area aliases) and the floor it is on.
    room_aliases: tuple[str, ...] = ()
    floor: str | None = None
    # An alarm panel that checks its own code (Home Assistant's code_format): the code the
    # user speaks is passed to it.
    needs_code: bool = False
    # Home Assistant's device class (a cover that is a "garage" is not a blind).
    device_class: str | None = None
    # What it can do, in words (for `edgevoice home`); empty when not known.
    abilities: tuple[str, ...] = ()
    # "configuration" (listed in the TOML) or "homeassistant" (discovered).
    source: str = "configuration"

    @classmethod
    def from_settings(cls, entity: EntitySettings, temperature_unit: str = "C") -> Entity:
        low, high = DEFAULT_TEMPERATURE_RANGE[temperature_unit]
        is_climate = entity.domain == "climate"
        return cls(
            id=entity.id,
            name=entity.name,
            domain=entity.domain,
            room=entity.room,
            aliases=tuple(entity.aliases),
            min_temperature=(entity.min_temperature if entity.min_temperature is not None else low)
            if is_climate
            else None,
            max_temperature=(entity.max_temperature if entity.max_temperature is not None else high)
            if is_climate
            else None,
            settings=entity,
        )

    def label(self) -> str:
        """``Kitchen light (kitchen)``: how the model and the logs see the entity."""
        return f"{self.name} ({self.room})" if self.room else self.name


@dataclass(frozen=True)
class Command:
    """One action in Home Assistant's vocabulary: ``<domain>.<service>`` with service data
    (``light.turn_on {"brightness_pct": 80}``). Every backend understands this form."""

    entity: Entity
    service: str
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def domain(self) -> str:
        return self.entity.domain


@dataclass(frozen=True)
class StateQuery:
    entity: Entity


class BackendError(Exception):
    """The house did not do what was asked. ``str(error)`` is one plain-English sentence the
    model can repeat to the user (no secrets, no stack traces)."""


__all__ = ["BackendError", "Command", "Entity", "StateQuery"]

"""The configured devices and how a spoken name finds one (sans-IO).

A name matches an entity's friendly name, one of its aliases or its id, ignoring case,
spacing and a leading "the". When that finds nothing, a plural ("kitchen lights") or a
room ("the kitchen", when the room has exactly one device of that kind) is tried. A name
that fits several devices is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from edgevoice.tools.model import Entity
from edgevoice.tools.names import normalize_name, singular
from edgevoice.tools.settings import HomeSettings

DOMAIN_NOUNS = {
    "light": "light",
    "climate": "thermostat",
    "cover": "door or blind",
    "scene": "scene",
    "media_player": "media player",
    "lock": "lock",
    "alarm_control_panel": "alarm panel",
    "sensor": "sensor",
    "binary_sensor": "sensor",
    "switch": "switch",
    "fan": "fan",
    "humidifier": "humidifier",
}

# Which function acts on each domain, for "use set_climate instead" hints.
DOMAIN_FUNCTIONS = {
    "light": "set_light",
    "climate": "set_climate",
    "cover": "set_cover",
    "scene": "activate_scene",
    "media_player": "control_media",
    "lock": "set_lock",
    "alarm_control_panel": "set_alarm",
    "switch": "set_power",
    "fan": "set_power",
    "humidifier": "set_power",
}


# Words for a whole kind of device ("close all the blinds"), and the device classes each
# may mean (a cover without a device class is taken to be any of them).
KIND_WORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "light": ("light", ()),
    "lamp": ("light", ()),
    "blind": ("cover", ("blind", "shade", "shutter", "curtain", "awning")),
    "shade": ("cover", ("blind", "shade", "shutter", "curtain", "awning")),
    "shutter": ("cover", ("blind", "shade", "shutter", "curtain", "awning")),
    "curtain": ("cover", ("curtain", "blind", "shade")),
    "window": ("cover", ("window",)),
    "cover": ("cover", ()),
    "garage door": ("cover", ("garage",)),
    "thermostat": ("climate", ()),
    "heating": ("climate", ()),
    "speaker": ("media_player", ("speaker",)),
    "media player": ("media_player", ()),
    "tv": ("media_player", ("tv",)),
    "sensor": ("sensor", ()),
    "fan": ("fan", ()),
    "plug": ("switch", ("outlet",)),
    "switch": ("switch", ()),
}
_EVERY = re.compile(r"^(all|every|each)( of)?( the)? ?")


class EntityNotFound(Exception):
    """A spoken name that does not designate exactly one usable entity."""

    def __init__(self, message: str, allowed: str):
        super().__init__(message)
        self.message = message
        self.allowed = allowed


class EntityDirectory:
    """All configured entities; immutable after construction."""

    def __init__(self, entities: Iterable[Entity]):
        self._entities = tuple(entities)
        self._by_id = {entity.id: entity for entity in self._entities}

    @classmethod
    def from_settings(cls, home: HomeSettings) -> EntityDirectory:
        return cls(
            Entity.from_settings(entity, home.temperature_unit)
            for entity in home.effective_entities
        )

    def __iter__(self):
        return iter(self._entities)

    def __len__(self) -> int:
        return len(self._entities)

    def get(self, entity_id: str) -> Entity | None:
        return self._by_id.get(entity_id)

    def in_domains(self, domains: Collection[str]) -> tuple[Entity, ...]:
        return tuple(entity for entity in self._entities if entity.domain in domains)

    def resolve(self, spoken: str, domains: Collection[str]) -> Entity:
        """The one entity of ``domains`` that ``spoken`` designates.

        Raises :class:`EntityNotFound` with a sentence for the model and the allowed names."""
        key = normalize_name(spoken)
        allowed = self.listing(domains)
        noun = _noun(domains)
        if not key:
            raise EntityNotFound(f"no {noun} was named", allowed)

        # In order: the kind of device asked for by name, then by room; only then a device
        # of another kind, which is refused with a hint.
        usable = self.in_domains(domains)
        for match in (_exact, _plural_insensitive):
            found = [entity for entity in usable if match(entity, key)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise EntityNotFound(
                    f"{spoken!r} could mean {_or(e.label() for e in found)}", allowed
                )

        rooms = (key, singular(key), _strip_noun(key, domains))
        in_room = [e for e in usable if e.room and normalize_name(e.room) in rooms]
        if len(in_room) == 1:
            return in_room[0]
        if len(in_room) > 1:
            raise EntityNotFound(
                f"{spoken!r} could mean {_or(e.label() for e in in_room)}", allowed
            )

        other = next(
            (e for match in (_exact, _plural_insensitive) for e in self._entities if match(e, key)),
            None,
        )
        if other is not None:
            hint = DOMAIN_FUNCTIONS.get(other.domain)
            message = f"{other.name} is a {DOMAIN_NOUNS[other.domain]}, not a {noun}"
            raise EntityNotFound(message + (f"; use {hint}" if hint else ""), allowed)
        raise EntityNotFound(f"there is no {noun} called {spoken!r}", allowed)

    def resolve_targets(self, spoken: str, domains: Collection[str]) -> tuple[Entity, ...]:
        """The entities ``spoken`` designates: one device by name, or a group: a room or
        floor ("the kitchen": all its devices of these kinds), a kind ("all the blinds"),
        or both ("the kitchen lights"). Raises :class:`EntityNotFound`."""
        key = normalize_name(spoken)
        every = _EVERY.match(key)
        if every:
            key = key[every.end() :].strip()
        else:
            try:
                return (self.resolve(spoken, domains),)
            except EntityNotFound as exc:
                single_error = exc
        usable = list(self.in_domains(domains))
        place, kind = _split_kind(key)
        if kind is not None:
            domain, classes = KIND_WORDS[kind]
            usable = [
                e
                for e in usable
                if e.domain == domain
                and (not classes or e.device_class is None or e.device_class in classes)
            ]
        if place:
            usable = [e for e in usable if _in_place(e, place)]
        elif kind is None:
            usable = []
        if usable:
            return tuple(usable)
        if not every:
            raise single_error
        raise EntityNotFound(
            f"there is no room, floor or kind of {_noun(domains)} called {spoken!r}",
            self.listing(domains),
        )

    def rooms(self) -> tuple[str, ...]:
        return tuple(sorted({e.room for e in self._entities if e.room}))

    def listing(self, domains: Collection[str]) -> str:
        """``Kitchen light (kitchen), Living room light (living room)``."""
        labels = [entity.label() for entity in self.in_domains(domains)]
        return ", ".join(labels) if labels else f"no {_noun(domains)} is configured"


def _exact(entity: Entity, key: str) -> bool:
    return key in (
        normalize_name(entity.id),
        normalize_name(entity.name),
        *(normalize_name(a) for a in entity.aliases),
    )


def _plural_insensitive(entity: Entity, key: str) -> bool:
    wanted = singular(key)
    return any(singular(normalize_name(name)) == wanted for name in (entity.name, *entity.aliases))


def _strip_noun(key: str, domains: Collection[str]) -> str:
    """``"kitchen light"`` -> ``"kitchen"`` so a room plus the device kind finds the device."""
    for domain in domains:
        noun = DOMAIN_NOUNS.get(domain, "")
        for suffix in (noun, noun + "s", domain.replace("_", " ")):
            if suffix and key.endswith(" " + suffix):
                return key[: -len(suffix) - 1]
    return key


def _split_kind(key: str) -> tuple[str, str | None]:
    """``"kitchen lights"`` -> ``("kitchen", "light")``; ``"blinds"`` -> ``("", "blind")``."""
    words = key.split(" ")
    for kind in sorted(KIND_WORDS, key=len, reverse=True):
        size = len(kind.split(" "))
        if len(words) >= size and singular(" ".join(words[-size:])) == kind:
            return " ".join(words[:-size]), kind
    return key, None


def _in_place(entity: Entity, place: str) -> bool:
    names = (entity.room, *entity.room_aliases, entity.floor)
    wanted = {place, singular(place)}
    return any(name and normalize_name(name) in wanted for name in names)


def _noun(domains: Collection[str]) -> str:
    nouns = sorted({DOMAIN_NOUNS[domain] for domain in domains})
    return "device" if len(nouns) != 1 else nouns[0]


def _or(labels: Iterable[str]) -> str:
    items = list(labels)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


__all__ = ["DOMAIN_FUNCTIONS", "DOMAIN_NOUNS", "KIND_WORDS", "EntityDirectory", "EntityNotFound"]

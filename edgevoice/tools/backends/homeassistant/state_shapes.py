"""Home Assistant's state objects in the neutral shapes of :mod:`edgevoice.tools.states`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgevoice.tools.model import Entity
from edgevoice.tools.states import nearest_color


def from_home_assistant(entity: Entity, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Home Assistant's state object -> the neutral shape of :mod:`edgevoice.tools.states`."""
    status = str(raw.get("state", "unknown"))
    attributes = raw.get("attributes") if isinstance(raw.get("attributes"), Mapping) else {}
    assert isinstance(attributes, Mapping)
    if status == "unavailable":
        return {"state": "unavailable"}
    match entity.domain:
        case "light":
            brightness = _number(attributes.get("brightness"))
            color = None
            if attributes.get("color_mode") == "color_temp" and _number(
                attributes.get("color_temp_kelvin")
            ):
                color = (
                    "warm white"
                    if _number(attributes.get("color_temp_kelvin")) < 4500
                    else "cool white"
                )
            elif attributes.get("rgb_color") is not None:
                color = nearest_color(attributes.get("rgb_color"))
            return {
                "state": status,
                "brightness": round(brightness * 100 / 255)
                if brightness is not None and status == "on"
                else None,
                "color": color if status == "on" else None,
            }
        case "climate":
            return {
                "hvac_mode": status,
                "target_temperature": _number(attributes.get("temperature")),
                "current_temperature": _number(attributes.get("current_temperature")),
            }
        case "cover":
            position = _number(attributes.get("current_position"))
            return {"state": status, "position": round(position) if position is not None else None}
        case "scene":
            return {"state": "not activated" if status in ("unknown", "") else "activated"}
        case "media_player":
            volume = _number(attributes.get("volume_level"))
            return {"state": status, "volume": round(volume * 100) if volume is not None else None}
        case "sensor":
            return {"state": status, "unit": attributes.get("unit_of_measurement")}
        case _:
            return {"state": status}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


__all__ = ["from_home_assistant"]

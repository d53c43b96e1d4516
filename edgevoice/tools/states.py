"""The backend-neutral shape of a device's state, and how to say it in one sentence.

Every backend reports state in these shapes (percentages, not Home Assistant's 0..255):

- light: ``{"state": "on"|"off", "brightness": 0..100|None, "color": name|None}``
- climate: ``{"hvac_mode": str, "target_temperature": float|None,
  "current_temperature": float|None}``
- cover: ``{"state": "open"|"closed"|"opening"|"closing"|"stopped", "position": 0..100|None}``
- scene: ``{"state": "activated"|"not activated"}``
- media_player: ``{"state": "playing"|"paused"|"idle"|"off", "volume": 0..100|None}``
- lock: ``{"state": "locked"|"unlocked"|...}``
- alarm_control_panel: ``{"state": "disarmed"|"armed_home"|"armed_away"|"armed_night"|...}``
- sensor: ``{"state": str, "unit": str|None}``; binary_sensor: ``{"state": "on"|"off"}``

Any of them may also say ``"state": "unavailable"`` when the backend says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edgevoice.tools.model import Entity

# Colour names the model may use; RGB for backends that need numbers. The two whites are
# colour temperatures rather than colours.
COLORS: Mapping[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "orange": (255, 165, 0),
    "yellow": (255, 255, 0),
    "green": (0, 128, 0),
    "cyan": (0, 255, 255),
    "blue": (0, 0, 255),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "magenta": (255, 0, 255),
    "white": (255, 255, 255),
}
WHITE_TEMPERATURES_K: Mapping[str, int] = {"warm white": 2700, "cool white": 6500}
COLOR_NAMES: tuple[str, ...] = (*COLORS, *WHITE_TEMPERATURES_K)


def nearest_color(rgb: Any) -> str | None:
    """The colour name closest to an ``[r, g, b]`` a device reports, or None."""
    try:
        red, green, blue = (float(part) for part in rgb)
    except (TypeError, ValueError):
        return None
    return min(
        COLORS,
        key=lambda name: sum(
            (a - b) ** 2 for a, b in zip(COLORS[name], (red, green, blue), strict=True)
        ),
    )


def default_state(entity: Entity) -> dict[str, Any]:
    """A plausible state for a device nobody has touched yet (simulated backend)."""
    match entity.domain:
        case "light":
            return {"state": "off", "brightness": 100, "color": "warm white"}
        case "climate":
            low = entity.min_temperature if entity.min_temperature is not None else 7.0
            high = entity.max_temperature if entity.max_temperature is not None else 30.0
            target = round(min(max(20.0, low), high), 1)
            return {
                "hvac_mode": "heat",
                "target_temperature": target,
                "current_temperature": target,
            }
        case "cover":
            return {"state": "closed", "position": 0}
        case "scene":
            return {"state": "not activated"}
        case "media_player":
            return {"state": "paused", "volume": 30}
        case "lock":
            return {"state": "locked"}
        case "alarm_control_panel":
            return {"state": "disarmed"}
        case "sensor":
            return {"state": "unknown", "unit": None}
        case _:
            return {"state": "off"}


def describe(entity: Entity, state: Mapping[str, Any]) -> str:
    """One sentence for the model and for ``describe_state``: ``Kitchen light is on at 80%``.
    A device still on its way to the state asked for (``pending``) says so."""
    sentence = _describe(entity, state)
    if state.get("pending"):
        sentence = sentence.rstrip(".") + f", {state['pending']}."
    return sentence


def _describe(entity: Entity, state: Mapping[str, Any]) -> str:
    name = entity.name
    status = state.get("state")
    if status == "unavailable":
        return f"{name} is unavailable."
    match entity.domain:
        case "light":
            if status != "on":
                return f"{name} is off."
            parts = []
            if state.get("brightness") is not None:
                parts.append(f"at {state['brightness']}% brightness")
            if state.get("color"):
                parts.append(str(state["color"]))
            return f"{name} is on" + (" " + ", ".join(parts) if parts else "") + "."
        case "climate":
            mode = state.get("hvac_mode", "unknown")
            text = f"{name} is in {str(mode).replace('_', ' ')} mode"
            if state.get("target_temperature") is not None:
                text += f", set to {_degrees(state['target_temperature'])}"
            if state.get("current_temperature") is not None:
                text += f", currently {_degrees(state['current_temperature'])}"
            return text + "."
        case "cover":
            text = f"{name} is {status}"
            position = state.get("position")
            if position is not None and status not in ("closed",) and position not in (0, 100):
                text += f" at {position}%"
            return text + "."
        case "scene":
            return f"{name} is {status}."
        case "media_player":
            text = f"{name} is {status}"
            if state.get("volume") is not None:
                text += f", volume {state['volume']}%"
            return text + "."
        case "alarm_control_panel":
            return f"{name} is {str(status).replace('_', ' ')}."
        case "sensor":
            unit = state.get("unit")
            return f"{name} is {status}{' ' + str(unit) if unit else ''}."
        case _:
            return f"{name} is {status}."


def _degrees(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:g} degrees"


__all__ = [
    "COLORS",
    "COLOR_NAMES",
    "WHITE_TEMPERATURES_K",
    "default_state",
    "describe",
    "nearest_color",
]

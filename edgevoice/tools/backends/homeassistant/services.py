"""Carrying out a command through the websocket ``call_service``, and knowing when it is done.

Home Assistant's websocket answers a service call with its own error text (a wrong alarm
code, a feature the device lacks), which REST hides behind a bare 500; that text reaches
the model. A call that succeeded is not necessarily finished: a lock passes through
``unlocking``, a cover moves for seconds. So the state reported is the one the entity
reaches: the call waits (bounded) in the live cache until the entity shows the state the
command asks for, or is no longer in a transitional state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from edgevoice.tools.backends.homeassistant.connection import CommandFailed
from edgevoice.tools.backends.homeassistant.live_cache import RawState
from edgevoice.tools.model import Command

# States an entity passes through on its way somewhere else.
TRANSITIONAL = frozenset({"opening", "closing", "locking", "unlocking", "arming", "pending"})

_FINAL_STATE = {
    ("light", "turn_on"): "on",
    ("light", "turn_off"): "off",
    ("switch", "turn_on"): "on",
    ("switch", "turn_off"): "off",
    ("fan", "turn_on"): "on",
    ("fan", "turn_off"): "off",
    ("humidifier", "turn_on"): "on",
    ("humidifier", "turn_off"): "off",
    ("cover", "open_cover"): "open",
    ("cover", "close_cover"): "closed",
    ("lock", "lock"): "locked",
    ("lock", "unlock"): "unlocked",
    ("alarm_control_panel", "alarm_disarm"): "disarmed",
    ("alarm_control_panel", "alarm_arm_home"): "armed_home",
    ("alarm_control_panel", "alarm_arm_away"): "armed_away",
    ("alarm_control_panel", "alarm_arm_night"): "armed_night",
}


def service_call(command: Command) -> dict[str, Any]:
    """The websocket message body of ``command`` (without id)."""
    return {
        "domain": command.domain,
        "service": command.service,
        "service_data": dict(command.data),
        "target": {"entity_id": command.entity.id},
    }


def target_reached(command: Command) -> Callable[[RawState], bool]:
    """A test of the entity's state: has the command's effect arrived (or has the entity
    stopped moving, or failed, so waiting longer would not help)?"""
    wanted = _FINAL_STATE.get((command.domain, command.service))
    # Media players and thermostats are not waited on: a player may not support what was
    # asked, a thermostat may round the setpoint; their state right after the call counts.
    position = command.data.get("position") if command.service == "set_cover_position" else None

    def reached(raw: RawState) -> bool:
        status = str(raw.get("state", ""))
        attributes = raw.get("attributes") if isinstance(raw.get("attributes"), Mapping) else {}
        if status in ("unavailable", "jammed"):
            return True
        if position is not None:
            return (attributes or {}).get("current_position") == position
        if wanted is not None:
            return status == wanted
        return status not in TRANSITIONAL

    return reached


def explain_failure(error: CommandFailed, command: Command) -> str:
    """HA's refusal as one sentence for the model; HA's own words whenever it gave some."""
    name = command.entity.name
    what = f"{command.domain}.{command.service}"
    message = " ".join(error.message.split())
    if len(message) > 200:
        message = message[:197] + "..."
    match error.code:
        case "not_found":
            return f"Home Assistant does not know {what} for {name}" + (f": {message}" if message else "")
        case "invalid_format":
            return f"Home Assistant rejected the request for {name}: {message or 'invalid data'}"
        case "unauthorized":
            return f"the Home Assistant user of this device may not control {name}"
        case _:
            return f"Home Assistant could not do that with {name}: {message or error.code}"


__all__ = ["TRANSITIONAL", "explain_failure", "service_call", "target_reached"]

"""The functions the model may call: declared once, validated, planned (sans-IO).

Each function is a pydantic model of its arguments plus a planner that turns validated
arguments and the resolved entity into a :class:`~edgevoice.tools.model.Command` (or a
:class:`~edgevoice.tools.model.StateQuery`), or refuses with a :class:`Rejection` that the
model can read aloud. The Live API's ``FunctionDeclaration``s are generated from the same
models, so what the model is told and what is checked cannot drift apart.

Nothing here does I/O; the confirmation guard gets the time passed in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.tools.confirmation import ConfirmationGuard, Verdict
from edgevoice.tools.entities import DOMAIN_NOUNS, EntityDirectory, EntityNotFound
from edgevoice.tools.model import Command, Entity, StateQuery
from edgevoice.tools.settings import DEFAULT_TEMPERATURE_RANGE, DOMAINS, HomeSettings
from edgevoice.tools.states import COLOR_NAMES, WHITE_TEMPERATURES_K

log = logging.getLogger(__name__)

HVAC_MODES = ("off", "heat", "cool", "heat_cool", "auto", "dry", "fan_only")
COVER_ACTIONS = ("open", "close", "stop")
MEDIA_ACTIONS = ("play", "pause", "stop", "next", "previous", "set_volume")
ALARM_MODES = ("disarmed", "armed_home", "armed_away", "armed_night")
# Argument names whose values are never logged nor echoed back.
SECRET_ARGUMENTS = frozenset({"confirmation"})
REDACTED = "(redacted)"


@dataclass(frozen=True)
class Rejection:
    """A call that was not carried out, and why, in words the model can say."""

    kind: OutcomeKind  # INVALID_REQUEST or REFUSED
    error: str
    allowed: str = ""

    def response(self) -> dict[str, Any]:
        response: dict[str, Any] = {"ok": False, "error": self.error}
        if self.allowed:
            response["allowed"] = self.allowed
        return response


@dataclass(frozen=True)
class GroupPlan:
    """One call acting on several entities (a room, "all the blinds"): each is carried out
    and reported on its own."""

    plans: tuple[Command | StateQuery, ...]


Plan = Command | StateQuery | GroupPlan


# -- argument models -------------------------------------------------------------------------------


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _lower_choices(cls, value: Any, info: Any) -> Any:
        # Enumerated words arrive as "Heat" or "OPEN" now and then; they mean the same.
        if info.field_name in _CHOICE_FIELDS and isinstance(value, str):
            return (
                value.strip().lower().replace(" ", "_")
                if info.field_name != "color"
                else value.strip().lower()
            )
        return value


_CHOICE_FIELDS = frozenset({"color", "hvac_mode", "action", "mode"})

_ENTITY = (
    "Which device: its name, an alias or its id, from the list in this function's description."
)
_TARGETS = (
    "Which device: its name, an alias or its id from the list in this function's description; "
    "or a room or floor for all of its devices of this kind ('kitchen'), or a kind for all of "
    "them ('all the blinds')."
)


class SetLightArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_TARGETS)
    on: bool | None = Field(None, description="true switches the light on, false switches it off.")
    brightness: int | None = Field(
        None, ge=0, le=100, description="Brightness in percent, 0 to 100."
    )
    color: Literal[COLOR_NAMES] | None = Field(None, description="Colour of the light.")  # type: ignore[valid-type]


class SetCoverArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_TARGETS)
    action: Literal[COVER_ACTIONS] | None = Field(None, description="open, close or stop.")  # type: ignore[valid-type]
    position: int | None = Field(
        None,
        ge=0,
        le=100,
        description="Open to this percentage (0 closed, 100 fully open) instead of an action.",
    )


class ActivateSceneArgs(_Arguments):
    scene: str = Field(
        min_length=1, max_length=120, description="Which scene, by name, alias or id."
    )


class ControlMediaArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_TARGETS)
    action: Literal[MEDIA_ACTIONS] = Field(description="What to do; set_volume needs volume.")  # type: ignore[valid-type]
    volume: int | None = Field(
        None, ge=0, le=100, description="Volume in percent, only with set_volume."
    )


class GetStateArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_TARGETS)


class SetPowerArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_TARGETS)
    on: bool = Field(description="true switches it on, false switches it off.")


class SetLockArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_ENTITY)
    locked: bool = Field(description="true locks, false unlocks.")
    confirmation: str | None = Field(
        None,
        max_length=100,
        description="The confirmation code exactly as the user said it. Needed to unlock; "
        "ask the user for it, never guess it.",
    )


class SetAlarmArgs(_Arguments):
    entity: str = Field(min_length=1, max_length=120, description=_ENTITY)
    mode: Literal[ALARM_MODES] = Field(description="The alarm mode to set.")  # type: ignore[valid-type]
    confirmation: str | None = Field(
        None,
        max_length=100,
        description="The confirmation code (or the alarm panel's code) exactly as the user "
        "said it. Needed to disarm, and to arm a panel that has a code; ask the user for it, "
        "never guess it.",
    )


def climate_arguments(low: float, high: float, unit: str) -> type[BaseModel]:
    """The set_climate model, bounded by the widest range of the configured thermostats."""
    unit_name = "Celsius" if unit == "C" else "Fahrenheit"
    return create_model(
        "SetClimateArgs",
        __base__=_Arguments,
        entity=(str, Field(min_length=1, max_length=120, description=_TARGETS)),
        target_temperature=(
            float,
            Field(ge=low, le=high, description=f"Target temperature in degrees {unit_name}."),
        ),
        hvac_mode=(
            Literal[HVAC_MODES] | None,  # type: ignore[valid-type]
            Field(None, description="Operating mode; leave out to keep the current one."),
        ),
    )


# -- planners: validated arguments + entity -> command or rejection --------------------------------


@dataclass
class PlanContext:
    home: HomeSettings
    guard: ConfirmationGuard
    now: float


def _invalid(error: str, allowed: str = "") -> Rejection:
    return Rejection(OutcomeKind.INVALID_REQUEST, error, allowed)


def _refused(error: str, allowed: str = "") -> Rejection:
    return Rejection(OutcomeKind.REFUSED, error, allowed)


def _plan_light(args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    if args.on is None and args.brightness is None and args.color is None:
        return _invalid(
            "nothing to change: give on, brightness or color", "on, brightness 0-100, color"
        )
    if args.on is False and (args.brightness or args.color):
        return _invalid("a light being switched off takes no brightness or color", "on=false alone")
    if args.on is False or args.brightness == 0:
        return Command(entity, "turn_off")
    data: dict[str, Any] = {}
    if args.brightness is not None:
        data["brightness_pct"] = args.brightness
    if args.color in WHITE_TEMPERATURES_K:
        data["color_temp_kelvin"] = WHITE_TEMPERATURES_K[args.color]
    elif args.color is not None:
        data["color_name"] = args.color
    return Command(entity, "turn_on", MappingProxyType(data))


def _plan_climate(args: Any, entity: Entity, ctx: PlanContext) -> Plan | Rejection:
    low, high = entity.min_temperature, entity.max_temperature
    if low is not None and high is not None and not low <= args.target_temperature <= high:
        return _invalid(
            f"{args.target_temperature:g} degrees is outside the range of {entity.name}",
            f"{low:g} to {high:g} degrees",
        )
    data: dict[str, Any] = {"temperature": args.target_temperature}
    if args.hvac_mode is not None:
        data["hvac_mode"] = args.hvac_mode
    return Command(entity, "set_temperature", MappingProxyType(data))


def _plan_cover(args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    if args.action is None and args.position is None:
        return _invalid(
            "nothing to do: give an action or a position",
            "action open|close|stop, or position 0-100",
        )
    if args.action is not None and args.position is not None:
        return _invalid(
            "give either an action or a position, not both",
            "action open|close|stop, or position 0-100",
        )
    if args.position is not None:
        return Command(entity, "set_cover_position", MappingProxyType({"position": args.position}))
    return Command(
        entity, {"open": "open_cover", "close": "close_cover", "stop": "stop_cover"}[args.action]
    )


def _plan_scene(_args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    return Command(entity, "turn_on")


_MEDIA_SERVICES = {
    "play": "media_play",
    "pause": "media_pause",
    "stop": "media_stop",
    "next": "media_next_track",
    "previous": "media_previous_track",
}


def _plan_media(args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    if args.action == "set_volume":
        if args.volume is None:
            return _invalid("set_volume needs a volume", "volume 0-100")
        return Command(
            entity, "volume_set", MappingProxyType({"volume_level": round(args.volume / 100, 2)})
        )
    if args.volume is not None:
        return _invalid(
            f"volume only goes with set_volume, not {args.action}",
            "action set_volume with volume 0-100",
        )
    return Command(entity, _MEDIA_SERVICES[args.action])


def _plan_power(args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    return Command(entity, "turn_on" if args.on else "turn_off")


def _plan_state(_args: Any, entity: Entity, _: PlanContext) -> Plan | Rejection:
    return StateQuery(entity)


def _confirm(ctx: PlanContext, spoken: str | None, action: str, function: str) -> Rejection | None:
    check = ctx.guard.check(spoken, ctx.now)
    match check.verdict:
        case Verdict.ACCEPTED:
            return None
        case Verdict.NOT_CONFIGURED:
            return _refused(
                f"{action} by voice needs a confirmation code, and none is set up on this device"
            )
        case Verdict.MISSING:
            return _refused(
                f"{action} needs the user's confirmation code",
                f"ask the user for the code, then call {function} again with confirmation",
            )
        case Verdict.WRONG:
            return _refused("the confirmation code is wrong", "ask the user to repeat the code")
        case _:
            minutes = max(1, round(check.retry_after_s / 60))
            return _refused(
                f"too many wrong confirmation codes; {action} is blocked for about {minutes} minute"
                + ("s" if minutes != 1 else "")
            )


def _plan_lock(args: Any, entity: Entity, ctx: PlanContext) -> Plan | Rejection:
    if args.locked:
        return Command(entity, "lock")
    refusal = _confirm(ctx, args.confirmation, "unlocking", "set_lock")
    return refusal or Command(entity, "unlock")


_ALARM_SERVICES = {
    "disarmed": "alarm_disarm",
    "armed_home": "alarm_arm_home",
    "armed_away": "alarm_arm_away",
    "armed_night": "alarm_arm_night",
}


def _plan_alarm(args: Any, entity: Entity, ctx: PlanContext) -> Plan | Rejection:
    if entity.needs_code:
        # The panel checks its own code (Home Assistant's code_format): the code the user
        # spoke goes to it, and its verdict is what the user hears.
        if not args.confirmation:
            return _refused(
                f"{entity.name} needs its alarm code",
                "ask the user for the alarm code, then call set_alarm again with confirmation",
            )
        return Command(
            entity, _ALARM_SERVICES[args.mode], MappingProxyType({"code": args.confirmation})
        )
    if args.mode == "disarmed":
        refusal = _confirm(ctx, args.confirmation, "disarming", "set_alarm")
        if refusal:
            return refusal
    return Command(entity, _ALARM_SERVICES[args.mode])


# -- the registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolFunction:
    name: str
    purpose: str
    arguments: type[BaseModel]
    domains: tuple[str, ...]
    planner: Callable[[Any, Entity, PlanContext], Plan | Rejection]
    entity_argument: str = "entity"
    # The HomeSettings flag that must be on for this function to exist.
    permission: Literal["allow_locks", "allow_alarms"] | None = None
    # May act on a room or a kind of device in one call.
    groups: bool = False


def _functions(home: HomeSettings, directory: EntityDirectory) -> tuple[ToolFunction, ...]:
    climates = directory.in_domains(("climate",))
    low, high = DEFAULT_TEMPERATURE_RANGE[home.temperature_unit]
    if climates:
        low = min(
            entity.min_temperature for entity in climates if entity.min_temperature is not None
        )
        high = max(
            entity.max_temperature for entity in climates if entity.max_temperature is not None
        )
    return (
        ToolFunction(
            "set_light",
            "Switch a light on or off, or set its brightness or colour. Runs in the background: "
            "keep talking, the result comes later.",
            SetLightArgs,
            ("light",),
            _plan_light,
            groups=True,
        ),
        ToolFunction(
            "set_climate",
            "Set a thermostat's target temperature and, optionally, its mode.",
            climate_arguments(low, high, home.temperature_unit),
            ("climate",),
            _plan_climate,
            groups=True,
        ),
        ToolFunction(
            "set_cover",
            "Open, close or stop a door, blind or shutter, or move it to a position.",
            SetCoverArgs,
            ("cover",),
            _plan_cover,
            groups=True,
        ),
        ToolFunction(
            "activate_scene",
            "Activate a scene.",
            ActivateSceneArgs,
            ("scene",),
            _plan_scene,
            "scene",
        ),
        ToolFunction(
            "control_media",
            "Play, pause, stop or skip on a media player, or set its volume.",
            ControlMediaArgs,
            ("media_player",),
            _plan_media,
            groups=True,
        ),
        ToolFunction(
            "set_power",
            "Switch a plug, a fan, a humidifier or another switched device on or off.",
            SetPowerArgs,
            ("switch", "fan", "humidifier"),
            _plan_power,
            groups=True,
        ),
        ToolFunction(
            "get_state",
            "Read the current state of any device, for questions like 'is the garage door open?'.",
            GetStateArgs,
            DOMAINS,
            _plan_state,
            groups=True,
        ),
        ToolFunction(
            "set_lock",
            "Lock or unlock a lock. Unlocking needs the user's spoken confirmation code.",
            SetLockArgs,
            ("lock",),
            _plan_lock,
            permission="allow_locks",
        ),
        ToolFunction(
            "set_alarm",
            "Arm or disarm an alarm panel. Disarming needs the user's spoken confirmation code.",
            SetAlarmArgs,
            ("alarm_control_panel",),
            _plan_alarm,
            permission="allow_alarms",
        ),
    )


class FunctionRegistry:
    """The functions of one configuration: their declarations and the checks of a call."""

    def __init__(
        self,
        home: HomeSettings,
        directory: EntityDirectory,
        guard: ConfirmationGuard,
        unavailable: str | None = None,
    ):
        self._home = home
        self._directory = directory
        self._guard = guard
        # Why the home cannot be known yet (Home Assistant unreachable at start-up): the
        # model is then offered get_state only, described as unavailable, so it can say so.
        self._unavailable = unavailable if not len(directory) else None
        self._functions = {function.name: function for function in _functions(home, directory)}

    @property
    def directory(self) -> EntityDirectory:
        return self._directory

    def function(self, name: str) -> ToolFunction | None:
        return self._functions.get(name)

    def declared_names(self) -> tuple[str, ...]:
        """Functions offered to the model: enabled, permitted, with at least one entity."""
        if not self._home.enabled:
            return ()
        if self._unavailable is not None:
            return ("get_state",)
        return tuple(
            function.name
            for function in self._functions.values()
            if (function.permission is None or getattr(self._home, function.permission))
            and self._directory.in_domains(function.domains)
        )

    def declarations(self) -> list[dict[str, Any]]:
        """Plain declarations as the Live API spells them (``name``, ``description``,
        ``parameters``); the Live door adds the behaviour the model's family runs."""
        return [self._declaration(self._functions[name]) for name in self.declared_names()]

    def _declaration(self, function: ToolFunction) -> dict[str, Any]:
        return {
            "name": function.name,
            "description": self._description(function),
            "parameters": schema_from_model(function.arguments),
        }

    def _description(self, function: ToolFunction) -> str:
        if self._unavailable is not None:
            return (
                "The smart home is unavailable right now: its devices cannot be listed or "
                "controlled. If the user asks about a device, say that the home is "
                "unavailable at the moment; do not call this function."
            )
        lines = [function.purpose, "Devices you may use (name (room); aliases):"]
        for entity in self._directory.in_domains(function.domains):
            line = f"- {entity.label()}"
            if function.name == "get_state":
                line += f" [{DOMAIN_NOUNS[entity.domain]}]"
            if entity.domain == "climate" and function.name == "set_climate":
                line += f" {entity.min_temperature:g} to {entity.max_temperature:g} degrees"
            if entity.aliases:
                line += "; also: " + ", ".join(entity.aliases)
            lines.append(line)
        if function.groups:
            rooms = sorted(
                {
                    f"{e.room}"
                    + (f" (also: {', '.join(e.room_aliases)})" if e.room_aliases else "")
                    + (f", {e.floor}" if e.floor else "")
                    for e in self._directory.in_domains(function.domains)
                    if e.room
                }
            )
            if rooms:
                lines.append("Rooms: " + "; ".join(rooms))
        lines.append("Any other device does not exist here: say so instead of calling.")
        return "\n".join(lines)

    def prepare(self, name: str, arguments: Any, now: float) -> Plan | Rejection:
        """Check one call from the model and plan it. Never raises for bad input."""
        if not self._home.enabled:
            return _invalid("smart-home control is turned off on this device")
        if self._unavailable is not None:
            return _refused(f"the smart home is unavailable right now: {self._unavailable}")
        function = self._functions.get(name)
        if function is None:
            return _invalid(
                f"there is no function called {name!r}" if name else "the call named no function",
                ", ".join(self.declared_names()) or "none",
            )
        if function.permission is not None and not getattr(self._home, function.permission):
            what = "locks" if function.permission == "allow_locks" else "alarm panels"
            return _refused(f"controlling {what} by voice is not allowed on this device")
        args = validated_arguments(function, arguments)
        if isinstance(args, str):
            return _invalid(args, signature(function))
        spoken = getattr(args, function.entity_argument)
        try:
            if function.groups:
                targets = self._directory.resolve_targets(spoken, function.domains)
            else:
                targets = (self._directory.resolve(spoken, function.domains),)
        except EntityNotFound as exc:
            return _invalid(exc.message, exc.allowed)
        context = PlanContext(self._home, self._guard, now)
        plans = []
        for entity in targets:
            plan = function.planner(args, entity, context)
            if isinstance(plan, Rejection):
                return plan
            plans.append(plan)
        return plans[0] if len(plans) == 1 else GroupPlan(tuple(plans))


# -- wire schema and error wording -----------------------------------------------------------------

_SCHEMA_TYPES = {
    "string": "STRING",
    "integer": "INTEGER",
    "number": "NUMBER",
    "boolean": "BOOLEAN",
    "object": "OBJECT",
}
# JSON-schema keys pydantic emits that carry nothing for the model. String lengths are
# checked here but not declared: they only guard against garbage, and every keyword on the
# wire is one more the Live API must accept.
_IGNORED_KEYS = frozenset({"title", "default", "additionalProperties", "minLength", "maxLength"})


def schema_from_model(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI-subset schema of an argument model, as plain data with the upper-case
    types of the wire. Raises ValueError on a construct the Live API schema cannot express, so a new
    argument type fails in the tests, not in a session."""
    return _schema(model.model_json_schema())


def _schema(node: Mapping[str, Any]) -> dict[str, Any]:
    node = dict(node)
    if "anyOf" in node:
        branches = [branch for branch in node.pop("anyOf") if branch.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unsupported union in argument schema: {branches}")
        return _schema({**branches[0], **{k: v for k, v in node.items() if k == "description"}})
    if "$defs" in node or "$ref" in node:
        raise ValueError("nested models are not supported in function arguments")
    kind = node.pop("type", None)
    if kind not in _SCHEMA_TYPES:
        raise ValueError(f"unsupported argument type {kind!r}")
    fields: dict[str, Any] = {"type": _SCHEMA_TYPES[kind]}
    for key, value in node.items():
        match key:
            case "description":
                fields["description"] = value
            case "enum":
                fields["enum"] = [str(item) for item in value]
            case "minimum" | "maximum":
                fields[key] = value
            case "properties":
                fields["properties"] = {name: _schema(sub) for name, sub in value.items()}
            case "required":
                fields["required"] = list(value)
            case _ if key in _IGNORED_KEYS:
                pass
            case _:
                raise ValueError(f"unsupported schema keyword {key!r}")
    return fields


@functools.lru_cache(maxsize=64)
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Generating a schema takes milliseconds; error replies need it often.
    return model.model_json_schema()


def validated_arguments(function: ToolFunction, arguments: Any) -> BaseModel | str:
    """The model's arguments checked against the function's own model, or, as a sentence the
    model can act on, what is wrong with them (none given counts as an empty object)."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, Mapping):
        return "the arguments must be a JSON object"
    try:
        return function.arguments.model_validate(dict(arguments))
    except ValidationError as exc:
        return explain_validation(exc, function)


def signature(function: ToolFunction) -> str:
    """``set_light(entity, on?, brightness 0-100?, color red|orange|...?)`` for error replies."""
    schema = _json_schema(function.arguments)
    required = set(schema.get("required", ()))
    parts = []
    for name, prop in schema["properties"].items():
        prop = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
        text = name
        if "enum" in prop:
            text += " " + "|".join(str(item) for item in prop["enum"])
        elif "minimum" in prop and "maximum" in prop:
            text += f" {prop['minimum']:g}-{prop['maximum']:g}"
        elif prop.get("type") == "boolean":
            text += " true|false"
        parts.append(text + ("" if name in required else "?"))
    return f"{function.name}({', '.join(parts)})"


def explain_validation(exc: ValidationError, function: ToolFunction) -> str:
    """Plain-English wording of pydantic's errors, secrets never echoed."""
    schema = _json_schema(function.arguments)["properties"]
    messages = []
    for error in exc.errors(include_url=False)[:3]:
        field = ".".join(str(part) for part in error["loc"]) or "arguments"
        value = error.get("input")
        shown = REDACTED if field in SECRET_ARGUMENTS else _short(value)
        prop = schema.get(field, {})
        prop = next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), prop)
        match error["type"]:
            case "missing":
                messages.append(f"{field} is missing")
            case "extra_forbidden":
                messages.append(f"{function.name} has no argument {field!r}")
            case "greater_than_equal" | "less_than_equal" | "greater_than" | "less_than":
                if "minimum" in prop and "maximum" in prop:
                    messages.append(
                        f"{field} must be between {prop['minimum']:g} "
                        f"and {prop['maximum']:g}, not {shown}"
                    )
                else:
                    messages.append(f"{field} {error['msg'].lower()}, not {shown}")
            case "literal_error" | "enum":
                options = ", ".join(str(item) for item in prop.get("enum", ()))
                messages.append(f"{field} must be one of {options}, not {shown}")
            case "bool_parsing" | "bool_type":
                messages.append(f"{field} must be true or false, not {shown}")
            case "int_parsing" | "int_from_float" | "int_type":
                messages.append(f"{field} must be a whole number, not {shown}")
            case "float_parsing" | "float_type" | "finite_number":
                messages.append(f"{field} must be a number, not {shown}")
            case "string_type":
                messages.append(f"{field} must be text, not {shown}")
            case "string_too_short":
                messages.append(f"{field} must not be empty")
            case "string_too_long":
                messages.append(f"{field} is too long")
            case _:
                messages.append(f"{field}: {error['msg']}")
    return "; ".join(messages)


def redact_arguments(arguments: Any) -> dict[str, Any]:
    """The arguments as they may be logged and kept: secrets replaced, non-objects dropped."""
    if not isinstance(arguments, Mapping):
        return {}
    return {
        str(key): (REDACTED if key in SECRET_ARGUMENTS and value is not None else value)
        for key, value in arguments.items()
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


__all__ = [
    "ALARM_MODES",
    "COVER_ACTIONS",
    "HVAC_MODES",
    "MEDIA_ACTIONS",
    "FunctionRegistry",
    "GroupPlan",
    "Plan",
    "PlanContext",
    "Rejection",
    "ToolFunction",
    "explain_validation",
    "redact_arguments",
    "schema_from_model",
    "signature",
]

"""The device's own functions: timers, speaker volume, microphone mute.

They are declared NON_BLOCKING beside the home's (:class:`DeviceToolbox` puts both behind
the one interface the daemon knows) and answered at once, on the device, with no network:
a timer set offline still rings. The scheduling of each answer comes from the same
per-outcome policy as the home's (:mod:`edgevoice.core.tool_scheduling`), with these
defaults on success: a question (``get_timers``) and a change the user asked for are
answered WHEN_IDLE, so the model confirms after its sentence.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edgevoice.core.events import ToolCall
from edgevoice.core.timers import Timer, TimerBook, TimerError, describe_duration
from edgevoice.core.tool_scheduling import OutcomeKind, Scheduling, SchedulingPolicy
from edgevoice.tools.functions import ToolFunction, schema_from_model, signature, validated_arguments
from edgevoice.tools.runner import OnDone, ToolOutcome

log = logging.getLogger(__name__)

MAX_VOLUME_LEVEL = 10


class DeviceControls(Protocol):
    """What the functions act on (the daemon's household wiring)."""

    timers: TimerBook

    def now(self) -> float: ...
    def timers_changed(self) -> None: ...
    @property
    def volume_level(self) -> int: ...
    def set_volume_level(self, level: int) -> None: ...
    @property
    def muted(self) -> bool: ...
    def set_muted(self, muted: bool) -> None: ...


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


_TIMER_NAME = "The timer's name as the user said it (pasta, eggs); leave out if unnamed."


class SetTimerArgs(_Args):
    name: str | None = Field(None, max_length=40, description=_TIMER_NAME)
    hours: float | None = Field(None, ge=0, le=24, description="Hours.")
    minutes: float | None = Field(None, ge=0, le=1440, description="Minutes.")
    seconds: float | None = Field(None, ge=0, le=86400, description="Seconds.")


class GetTimersArgs(_Args):
    name: str | None = Field(None, max_length=40, description="Which timer; leave out for all.")


class CancelTimerArgs(_Args):
    name: str | None = Field(
        None, max_length=40, description="Which timer; 'all' cancels every timer."
    )


class SetVolumeArgs(_Args):
    level: int | None = Field(
        None, ge=0, le=MAX_VOLUME_LEVEL, description="Volume level 0 (silent) to 10 (loudest)."
    )
    change: Literal["louder", "quieter"] | None = Field(
        None, description="Louder or quieter by one level, instead of a level."
    )


class MuteMicrophoneArgs(_Args):
    muted: bool = Field(True, description="true mutes the microphone.")


def _noop(*_args: Any) -> Any:  # the ToolFunction planner slot: device functions plan here
    raise AssertionError("device functions are not planned by the home registry")


def _function(name: str, purpose: str, arguments: type[BaseModel]) -> ToolFunction:
    return ToolFunction(name, purpose, arguments, (), _noop)


FUNCTIONS: dict[str, ToolFunction] = {
    f.name: f
    for f in (
        _function(
            "set_timer",
            "Start a kitchen timer on this device (it rings here when it ends, even offline). "
            "Several named timers can run at once; setting an existing name restarts it.",
            SetTimerArgs,
        ),
        _function(
            "get_timers",
            "How long is left on the device's timers (one by name, or all).",
            GetTimersArgs,
        ),
        _function("cancel_timer", "Cancel a timer by name, or all of them.", CancelTimerArgs),
        _function(
            "set_volume",
            "Set this device's speaker volume (0-10) or make it one step louder or quieter.",
            SetVolumeArgs,
        ),
        _function(
            "mute_microphone",
            "Mute this device's microphone. Once muted the user cannot be heard: unmuting is "
            "done in Home Assistant or on the device, not by voice.",
            MuteMicrophoneArgs,
        ),
    )
}

# A question or a change the user is waiting to hear about.
DEVICE_SUCCESS_SCHEDULING: Mapping[str, Scheduling] = {
    "get_timers": Scheduling.WHEN_IDLE,
}


def _ok(kind: OutcomeKind, result: str, **state: Any) -> tuple[OutcomeKind, dict[str, Any]]:
    response: dict[str, Any] = {"ok": True, "result": result}
    if state:
        response["state"] = state
    return kind, response


def _invalid(error: str, allowed: str = "") -> tuple[OutcomeKind, dict[str, Any]]:
    response: dict[str, Any] = {"ok": False, "error": error}
    if allowed:
        response["allowed"] = allowed
    return OutcomeKind.INVALID_REQUEST, response


def _timer_state(timer: Timer, left: float) -> dict[str, Any]:
    return {"name": timer.name, "seconds_left": math.ceil(left), "duration_s": timer.duration_s}


class DeviceFunctions:
    """Declarations and answers of the device's functions (no I/O of their own)."""

    def __init__(
        self,
        controls: DeviceControls,
        policy: SchedulingPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._controls = controls
        self._policy = policy or SchedulingPolicy()
        self._clock = clock

    @classmethod
    def policy_from(
        cls, scheduling: Mapping[str, str], failure_scheduling: Mapping[str, str]
    ) -> SchedulingPolicy:
        success = {**DEVICE_SUCCESS_SCHEDULING, **{k: Scheduling(v) for k, v in scheduling.items()}}
        failure = {k: Scheduling(v) for k, v in failure_scheduling.items()}
        return SchedulingPolicy(on_success=success, on_failure=failure)

    def names(self) -> tuple[str, ...]:
        return tuple(FUNCTIONS)

    def declarations(self) -> list[dict[str, Any]]:
        """Plain declarations, like the home's; the Live door adds the family's behaviour."""
        return [
            {"name": f.name, "description": f.purpose, "parameters": schema_from_model(f.arguments)}
            for f in FUNCTIONS.values()
        ]

    def run(self, call_id: str, name: str, arguments: Any) -> ToolOutcome:
        """Answer one call at once. Never raises for bad input."""
        started = self._clock()
        try:
            kind, response = self._answer(name, arguments)
        except Exception:  # a bug here must still answer the model exactly once
            log.exception("device function %s failed inside EdgeVoice", name)
            kind, response = OutcomeKind.BACKEND_FAILURE, {
                "ok": False,
                "error": "an internal error stopped this action",
            }
        args = dict(arguments) if isinstance(arguments, Mapping) else {}
        outcome = ToolOutcome(
            id=call_id,
            name=name,
            args=args,
            response=response,
            scheduling=self._policy.choose(name, kind).value,
            ok=kind.ok,
            duration_s=max(0.0, self._clock() - started),
            kind=kind,
        )
        if outcome.ok:
            log.info("device function %s(%s): %s", name, _args_text(args), response["result"])
        else:
            log.warning("device function %s(%s) refused: %s", name, _args_text(args), response["error"])
        return outcome

    def _answer(self, name: str, arguments: Any) -> tuple[OutcomeKind, dict[str, Any]]:
        function = FUNCTIONS.get(name)
        if function is None:
            return _invalid(f"there is no function called {name!r}", ", ".join(FUNCTIONS))
        args = validated_arguments(function, arguments)
        if isinstance(args, str):
            return _invalid(args, signature(function))
        try:
            return getattr(self, "_" + name)(args)
        except TimerError as exc:
            return _invalid(str(exc))

    def _set_timer(self, args: SetTimerArgs) -> tuple[OutcomeKind, dict[str, Any]]:
        seconds = (args.hours or 0) * 3600 + (args.minutes or 0) * 60 + (args.seconds or 0)
        if seconds <= 0:
            return _invalid("a timer needs a duration", "hours, minutes and/or seconds")
        controls = self._controls
        timer = controls.timers.set(args.name, seconds, controls.now())
        controls.timers_changed()
        what = "timer" if timer.name == "timer" else f"{timer.name} timer"
        return _ok(
            OutcomeKind.COMPLETED,
            f"The {what} is set for {describe_duration(seconds)}.",
            **_timer_state(timer, seconds),
        )

    def _get_timers(self, args: GetTimersArgs) -> tuple[OutcomeKind, dict[str, Any]]:
        controls = self._controls
        now = controls.now()
        if args.name:
            timer = controls.timers.find(args.name)
            left = timer.remaining_s(now)
            return _ok(
                OutcomeKind.STATE_READ,
                f"The {timer.name} timer has {describe_duration(left)} left.",
                **_timer_state(timer, left),
            )
        running = controls.timers.running(now)
        if not running:
            return _ok(OutcomeKind.STATE_READ, "No timer is running.", timers=[])
        text = "; ".join(f"{t.name}: {describe_duration(left)} left" for t, left in running)
        return _ok(
            OutcomeKind.STATE_READ, text + ".", timers=[_timer_state(t, left) for t, left in running]
        )

    def _cancel_timer(self, args: CancelTimerArgs) -> tuple[OutcomeKind, dict[str, Any]]:
        controls = self._controls
        name = args.name
        if name is None and len(controls.timers.running(controls.now())) > 1:
            name = "all"
        cancelled = controls.timers.cancel(name)
        controls.timers_changed()
        names = ", ".join(t.name for t in cancelled)
        return _ok(OutcomeKind.COMPLETED, f"Cancelled: {names}.", cancelled=[t.name for t in cancelled])

    def _set_volume(self, args: SetVolumeArgs) -> tuple[OutcomeKind, dict[str, Any]]:
        if (args.level is None) == (args.change is None):
            return _invalid("give either a level or a change", "level 0-10, or change louder|quieter")
        controls = self._controls
        level = args.level
        if level is None:
            step = 1 if args.change == "louder" else -1
            level = min(MAX_VOLUME_LEVEL, max(0, controls.volume_level + step))
        controls.set_volume_level(level)
        return _ok(OutcomeKind.COMPLETED, f"The volume is now {level} of 10.", volume=level)

    def _mute_microphone(self, args: MuteMicrophoneArgs) -> tuple[OutcomeKind, dict[str, Any]]:
        self._controls.set_muted(args.muted)
        text = "The microphone is muted." if args.muted else "The microphone is on."
        return _ok(OutcomeKind.COMPLETED, text, muted=args.muted)

    def describe_state(self) -> str:
        controls = self._controls
        running = controls.timers.running(controls.now())
        timers = ", ".join(f"{t.name} {describe_duration(left)} left" for t, left in running)
        return (
            f"Device: volume {controls.volume_level} of 10, microphone "
            f"{'muted' if controls.muted else 'on'}, timers: {timers or 'none'}"
        )


class HomeToolbox(Protocol):
    def declarations(self) -> list[dict[str, Any]]: ...
    def start(self, call: ToolCall, on_done: OnDone) -> None: ...
    def cancel(self, ids: Iterable[str]) -> list[str]: ...
    def describe_state(self) -> str: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: Any) -> Any: ...


class DeviceToolbox:
    """The home's toolbox (if any) and the device's functions behind one interface."""

    def __init__(self, home: HomeToolbox | None, device: DeviceFunctions | None) -> None:
        self.home = home
        self.device = device

    def __getattr__(self, name: str) -> Any:
        # The home toolbox's own properties (backend, registry, pending) read through.
        home = self.__dict__.get("home")
        if home is None:
            raise AttributeError(name)
        return getattr(home, name)

    def __repr__(self) -> str:
        return f"DeviceToolbox(home={self.home!r}, device_functions={self.device is not None})"

    def declarations(self) -> list[dict[str, Any]]:
        home = self.home.declarations() if self.home is not None else []
        device = self.device.declarations() if self.device is not None else []
        taken = {d["name"] for d in device}
        return [d for d in home if d["name"] not in taken] + device

    def start(self, call: ToolCall, on_done: OnDone) -> None:
        if self.device is not None and call.name in FUNCTIONS:
            outcome = self.device.run(call.id or "", call.name, call.args)
            # On the next loop iteration, like every other outcome, never re-entrantly.
            asyncio.get_running_loop().call_soon(on_done, outcome)
        elif self.home is not None:
            self.home.start(call, on_done)
        else:
            outcome = ToolOutcome(
                id=call.id or "",
                name=call.name or "",
                args={},
                response={"ok": False, "error": "this device has no smart-home functions configured"},
                scheduling=Scheduling.INTERRUPT.value,
                ok=False,
                duration_s=0.0,
                kind=OutcomeKind.INVALID_REQUEST,
            )
            asyncio.get_running_loop().call_soon(on_done, outcome)

    def cancel(self, ids: Iterable[str]) -> list[str]:
        # Device functions finish before they could be cancelled.
        return self.home.cancel(ids) if self.home is not None else []

    def describe_state(self) -> str:
        parts = []
        if self.home is not None:
            parts.append(self.home.describe_state())
        if self.device is not None:
            parts.append(self.device.describe_state())
        return "\n".join(parts)

    async def __aenter__(self) -> DeviceToolbox:
        if self.home is not None:
            await self.home.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.home is not None:
            await self.home.__aexit__(*exc_info)


def _args_text(args: Mapping[str, Any]) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in args.items())
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = [
    "DEVICE_SUCCESS_SCHEDULING",
    "FUNCTIONS",
    "MAX_VOLUME_LEVEL",
    "DeviceControls",
    "DeviceFunctions",
    "DeviceToolbox",
]

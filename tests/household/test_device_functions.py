"""The device's own functions: declared NON_BLOCKING, checked, answered with the scheduling
of their outcome; bad input is an answer, never a crash."""

from __future__ import annotations

import asyncio

import pytest
from google.genai import types

from edgevoice.core.families import DEFAULT_MODEL, family_for
from edgevoice.core.timers import TimerBook
from edgevoice.live import sdk
from edgevoice.live.session_config import declarations_for
from edgevoice.tools.device_functions import DeviceFunctions, DeviceToolbox


class Controls:
    def __init__(self) -> None:
        self.timers = TimerBook()
        self.t = 100.0
        self.volume_level = 7
        self.muted = False
        self.saved = 0

    def now(self) -> float:
        return self.t

    def timers_changed(self) -> None:
        self.saved += 1

    def set_volume_level(self, level: int) -> None:
        self.volume_level = level

    def set_muted(self, muted: bool) -> None:
        self.muted = muted


@pytest.fixture
def controls() -> Controls:
    return Controls()


@pytest.fixture
def functions(controls: Controls) -> DeviceFunctions:
    return DeviceFunctions(controls, DeviceFunctions.policy_from({}, {}))


def test_every_function_is_declared_non_blocking_with_a_schema(functions: DeviceFunctions) -> None:
    # As the model sees them: through the Live door, for the default model's family.
    declarations = sdk.function_declarations(
        declarations_for(family_for(DEFAULT_MODEL).family, functions.declarations())
    )
    assert [d.name for d in declarations] == [
        "set_timer", "get_timers", "cancel_timer", "set_volume", "mute_microphone",
    ]
    assert all(d.behavior == types.Behavior.NON_BLOCKING for d in declarations)
    set_timer = declarations[0].parameters
    assert set_timer is not None
    assert set(set_timer.properties or {}) == {"name", "hours", "minutes", "seconds"}


def test_timers_set_queried_and_cancelled_with_scheduling_per_outcome(
    functions: DeviceFunctions, controls: Controls
) -> None:
    done = functions.run("1", "set_timer", {"name": "Pasta", "minutes": 9})
    assert done.ok and done.scheduling == "WHEN_IDLE"
    assert done.response["result"] == "The pasta timer is set for 9 minutes."
    functions.run("2", "set_timer", {"name": "eggs", "minutes": 5})
    controls.t += 60
    asked = functions.run("3", "get_timers", {"name": "the pasta timer"})
    assert asked.ok and asked.response["result"] == "The pasta timer has 8 minutes left."
    assert asked.scheduling == "WHEN_IDLE"  # the user is waiting for this answer
    everything = functions.run("4", "get_timers", {})
    assert everything.response["result"] == "eggs: 4 minutes left; pasta: 8 minutes left."
    # "cancel the timer" with two running: both go, and the answer names them.
    cancelled = functions.run("5", "cancel_timer", {})
    assert sorted(cancelled.response["state"]["cancelled"]) == ["eggs", "pasta"]
    assert controls.saved == 3


@pytest.mark.parametrize(
    ("name", "args", "error"),
    [
        ("set_timer", {}, "a timer needs a duration"),
        ("set_timer", {"minutes": -1}, "minutes must be"),
        ("set_timer", {"minutes": "soon"}, "minutes must be a number"),
        ("set_timer", {"hours": 30}, "hours must be between 0 and 24"),
        ("set_timer", [1, 2], "the arguments must be a JSON object"),
        ("get_timers", {"name": "rice"}, "no timer is running"),
        ("cancel_timer", {"name": "rice"}, "no timer is running"),
        ("set_volume", {}, "give either a level or a change"),
        ("set_volume", {"level": 11}, "level must be between 0 and 10"),
        ("set_volume", {"level": 3, "change": "louder"}, "give either a level or a change"),
        ("mute_microphone", {"muted": "maybe"}, "muted must be true or false"),
        ("set_alarm_clock", {}, "there is no function called 'set_alarm_clock'"),
    ],
)
def test_bad_calls_are_answered_in_words(
    functions: DeviceFunctions, name: str, args: object, error: str
) -> None:
    outcome = functions.run("x", name, args)
    assert not outcome.ok and outcome.kind.value == "invalid_request"
    assert error in outcome.response["error"]
    assert outcome.scheduling == "WHEN_IDLE"


def test_volume_steps_and_mute(functions: DeviceFunctions, controls: Controls) -> None:
    louder = functions.run("1", "set_volume", {"change": "louder"})
    assert louder.response["result"] == "The volume is now 8 of 10."
    functions.run("2", "set_volume", {"level": 10})
    assert functions.run("3", "set_volume", {"change": "louder"}).response["state"] == {"volume": 10}
    assert functions.run("4", "mute_microphone", {}).response["state"] == {"muted": True}
    assert controls.muted


def test_configured_scheduling_overrides_the_defaults(controls: Controls) -> None:
    policy = DeviceFunctions.policy_from({"set_timer": "SILENT"}, {"set_volume": "INTERRUPT"})
    functions = DeviceFunctions(controls, policy)
    assert functions.run("1", "set_timer", {"seconds": 5}).scheduling == "SILENT"
    assert functions.run("2", "set_volume", {}).scheduling == "INTERRUPT"


async def test_the_toolbox_routes_device_calls_and_answers_on_the_next_loop_iteration(
    functions: DeviceFunctions,
) -> None:
    toolbox = DeviceToolbox(None, functions)
    outcomes: list = []
    toolbox.start(types.FunctionCall(id="a", name="set_timer", args={"seconds": 30}), outcomes.append)
    toolbox.start(types.FunctionCall(id="b", name="set_light", args={}), outcomes.append)
    assert outcomes == []  # never re-entrant
    await asyncio.sleep(0)
    assert [(o.id, o.ok) for o in outcomes] == [("a", True), ("b", False)]
    assert "no smart-home functions" in outcomes[1].response["error"]

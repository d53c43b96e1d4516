"""The runner: calls never block the loop, run concurrently, time out, and can be cancelled."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from edgevoice.core.tool_scheduling import OutcomeKind
from edgevoice.tools import ToolBox
from edgevoice.tools.backends.simulated import SimulatedHome
from edgevoice.tools.confirmation import ConfirmationGuard
from edgevoice.tools.entities import EntityDirectory
from edgevoice.tools.functions import FunctionRegistry
from edgevoice.tools.model import Command, Entity
from edgevoice.tools.runner import ToolRunner
from edgevoice.tools.settings import HomeSettings

pytestmark = pytest.mark.asyncio


def light_on(call_id: str, entity: str = "kitchen light") -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name="set_light", args={"entity": entity, "on": True})


def build(backend: Any, home: HomeSettings | None = None, **runner: Any) -> ToolBox:
    """A ToolBox around a given backend (the real pieces otherwise)."""
    home = home or HomeSettings()
    directory = EntityDirectory.from_settings(home)
    registry = FunctionRegistry(home, directory, ConfirmationGuard(None))
    return ToolBox(home, registry, backend, ToolRunner(registry, backend, **runner))


def simulated(tmp_path: Path, **simulated: Any) -> ToolBox:
    home = HomeSettings(simulated={"persist": False, **simulated})
    return ToolBox.from_settings(home, state_dir=tmp_path, environ={})


class TimedHome(SimulatedHome):
    """The simulated home, recording when each command starts and ends."""

    def __init__(self, home: HomeSettings):
        super().__init__(EntityDirectory.from_settings(home), home.simulated)
        self.spans: dict[str, tuple[float, float]] = {}

    async def execute(self, command: Command) -> Mapping[str, Any]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            return await super().execute(command)
        finally:
            self.spans[command.entity.id] = (started, loop.time())


class StuckHome:
    """A backend whose commands never finish; records the cancellation it receives."""

    name = "stuck"

    def __init__(self) -> None:
        self.entered: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}
        self.closed = False

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    def _events(self, entity_id: str) -> tuple[asyncio.Event, asyncio.Event]:
        return self.entered.setdefault(entity_id, asyncio.Event()), self.cancelled.setdefault(
            entity_id, asyncio.Event()
        )

    async def execute(self, command: Command) -> Mapping[str, Any]:
        entered, cancelled = self._events(command.entity.id)
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async def read_state(self, entity: Entity) -> Mapping[str, Any]:
        raise RuntimeError("a bug in the backend")

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        return {}


async def test_a_two_second_call_never_blocks_the_loop(tmp_path, outcomes):
    box = simulated(tmp_path, latency_s=2.0)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.005)  # the measurement itself, not synchronisation
            now = loop.time()
            gaps.append(now - last)
            last = now

    async with box:
        ticking = asyncio.create_task(ticker())
        box.start(light_on("slow-1"), outcomes)
        # start() returned without running anything: the call is pending, nothing answered.
        assert box.pending == {"slow-1"}
        assert outcomes.items == []
        outcome = await outcomes.get("slow-1")
        stop.set()
        await ticking

    assert (outcome.id, outcome.name, outcome.scheduling, outcome.ok) == (
        "slow-1",
        "set_light",
        "WHEN_IDLE",
        True,
    )
    assert outcome.response["result"] == "Kitchen light is on at 100% brightness, warm white."
    assert outcome.duration_s >= 2.0
    assert outcome.as_text() == (
        "Result of your earlier set_light call: Kitchen light is on at 100% brightness, warm white."
    )
    assert len(gaps) > 100  # the loop kept ticking through the whole call
    # A call run on the loop would stall it for its whole 2 s; scheduling noise on a busy
    # machine is tens of milliseconds. How short the stalls are is the benchmark's business.
    assert max(gaps) < 0.5, f"the loop stalled for {max(gaps) * 1000:.1f} ms"
    assert outcomes.threads == [threading.get_ident()]  # on_done ran on the loop's thread


async def test_calls_of_one_turn_run_concurrently(outcomes):
    home = HomeSettings(
        simulated={
            "persist": False,
            "entity_latency_s": {
                "light.kitchen": 0.3,
                "light.living_room": 0.4,
                "cover.garage_door": 0.5,
            },
        }
    )
    backend = TimedHome(home)
    box = build(backend, home)
    loop = asyncio.get_running_loop()
    async with box:
        started = loop.time()
        box.start(light_on("a", "kitchen light"), outcomes)
        box.start(light_on("b", "living room light"), outcomes)
        box.start(
            types.FunctionCall(id="c", name="set_cover", args={"entity": "garage door", "action": "open"}),
            outcomes,
        )
        await outcomes.count(3)
        elapsed = loop.time() - started
    # Every command started before any finished: they overlapped.
    assert max(start for start, _ in backend.spans.values()) < min(end for _, end in backend.spans.values())
    assert sorted(outcomes.ids()) == ["a", "b", "c"]
    assert all(outcome.ok for outcome in outcomes.items)
    assert elapsed < 1.0  # near the slowest (0.5 s), well below the sum (1.2 s)


async def test_cancel_stops_the_backend_and_produces_no_outcome(outcomes):
    backend = StuckHome()
    box = build(backend)
    async with box:
        box.start(light_on("doomed", "kitchen light"), outcomes)
        await asyncio.wait_for(backend._events("light.kitchen")[0].wait(), 5)
        assert box.cancel(["doomed", "never-issued"]) == ["doomed"]
        await asyncio.wait_for(backend.cancelled["light.kitchen"].wait(), 5)
        assert box.pending == frozenset()
        # A later call is answered; the cancelled one never is.
        box.start(types.FunctionCall(id="after", name="set_light", args={}), outcomes)
        await outcomes.get("after")
        assert box.cancel(["doomed"]) == []
    assert outcomes.ids() == ["after"]


async def test_a_cancelled_simulated_call_leaves_the_house_unchanged(tmp_path, outcomes):
    box = simulated(tmp_path, entity_latency_s={"light.kitchen": 0.2, "light.living_room": 0.4})
    async with box:
        box.start(light_on("withdrawn", "kitchen light"), outcomes)
        box.start(light_on("kept", "living room light"), outcomes)
        assert box.cancel(["withdrawn"]) == ["withdrawn"]
        await outcomes.get("kept")  # the withdrawn call would have finished first
        states = box.backend.known_states()
    assert outcomes.ids() == ["kept"]
    assert states["light.kitchen"]["state"] == "off"
    assert states["light.living_room"]["state"] == "on"


async def test_per_function_timeout(tmp_path, outcomes, caplog):
    home = HomeSettings(
        function_timeout_s={"set_cover": 0.2},
        simulated={"persist": False, "entity_latency_s": {"cover.garage_door": 30}},
    )
    box = ToolBox.from_settings(home, state_dir=tmp_path, environ={})
    async with box:
        box.start(
            types.FunctionCall(id="t", name="set_cover", args={"entity": "garage door", "action": "open"}),
            outcomes,
        )
        outcome = await outcomes.get("t")
        state = box.backend.known_states()["cover.garage_door"]
    assert outcome.kind is OutcomeKind.TIMEOUT
    assert outcome.scheduling == "INTERRUPT" and not outcome.ok
    assert outcome.response == {
        "ok": False,
        "error": "Garage door did not confirm within 0.2 seconds; it may or may not have changed",
    }
    assert outcome.as_text().startswith("Your earlier set_cover call failed: Garage door did not")
    assert 0.2 <= outcome.duration_s < 5
    assert state["state"] == "closed"
    assert "did not confirm within 0.2 seconds" in caplog.text


async def test_every_call_is_answered_exactly_once_on_the_loop_thread(tmp_path, outcomes):
    box = simulated(tmp_path, latency_s=0.01)
    calls = [light_on(f"ok-{n}") for n in range(5)] + [
        types.FunctionCall(id=f"bad-{n}", name="set_light", args={"entity": "moon"}) for n in range(5)
    ]
    async with box:
        for call in calls:
            box.start(call, outcomes)
        await outcomes.count(10)
        # Nothing more is coming: everything has finished.
        assert box.pending == frozenset()
    assert sorted(outcomes.ids()) == sorted(call.id for call in calls)
    assert set(outcomes.threads) == {threading.get_ident()}


async def test_a_duplicate_call_id_is_answered_without_running_twice(tmp_path, outcomes):
    box = simulated(tmp_path, latency_s=0.2)
    async with box:
        box.start(light_on("same"), outcomes)
        box.start(light_on("same", "living room light"), outcomes)
        first, second = await outcomes.count(2)
        states = box.backend.known_states()
    assert first.response == {"ok": False, "error": "call id 'same' is already running"}
    assert second.ok and second.response["state"]["state"] == "on"
    assert states["light.living_room"]["state"] == "off"


async def test_too_many_calls_at_once_are_refused(outcomes):
    backend = StuckHome()
    box = build(backend, max_pending_calls=2)
    async with box:
        box.start(light_on("1", "kitchen light"), outcomes)
        box.start(light_on("2", "living room light"), outcomes)
        box.start(light_on("3", "kitchen light"), outcomes)
        refused = await outcomes.get("3")
        assert box.pending == {"1", "2"}
    assert refused.kind is OutcomeKind.REFUSED and refused.scheduling == "INTERRUPT"
    assert refused.response["error"] == "too many actions at once (2 running)"
    assert outcomes.ids() == ["3"]


async def test_leaving_the_toolbox_cancels_running_calls_without_outcomes(outcomes):
    backend = StuckHome()
    box = build(backend)
    async with box:
        box.start(light_on("left-running"), outcomes)
        await asyncio.wait_for(backend._events("light.kitchen")[0].wait(), 5)
    assert backend.cancelled["light.kitchen"].is_set()
    assert backend.closed
    assert outcomes.items == []


async def test_a_toolbox_that_is_not_open_answers_with_an_error(tmp_path, outcomes):
    box = simulated(tmp_path)
    box.start(light_on("early"), outcomes)
    outcome = await outcomes.get("early")
    assert outcome.response == {"ok": False, "error": "home control is not running"}


async def test_a_crashing_backend_becomes_a_failure_outcome(outcomes, caplog):
    box = build(StuckHome())
    async with box:
        box.start(
            types.FunctionCall(id="read", name="get_state", args={"entity": "garage door"}),
            outcomes,
        )
        outcome = await outcomes.get("read")
    assert outcome.kind is OutcomeKind.BACKEND_FAILURE and outcome.scheduling == "INTERRUPT"
    assert outcome.response == {
        "ok": False,
        "error": "something went wrong while talking to Garage door",
    }
    assert "a bug in the backend" in caplog.text  # the traceback is in the log, not the reply


async def test_a_failing_on_done_does_not_break_the_runner(tmp_path, outcomes, caplog):
    box = simulated(tmp_path, latency_s=0)

    def explode(_outcome: Any) -> None:
        raise ValueError("callback bug")

    async with box:
        box.start(light_on("x"), explode)
        box.start(light_on("y", "living room light"), outcomes)
        await outcomes.get("y")
        await box.backend.close()  # flush pending saves
    assert "the on_done callback failed for tool call x set_light" in caplog.text


async def test_scheduling_overrides_from_the_configuration(tmp_path, outcomes):
    home = HomeSettings(
        scheduling={"get_state": "WHEN_IDLE", "set_light": "SILENT"},
        failure_scheduling={"set_light": "WHEN_IDLE"},
        simulated={"persist": False, "latency_s": 0, "always_fail": ["light.living_room"]},
    )
    box = ToolBox.from_settings(home, state_dir=Path("/nonexistent"), environ={})
    async with box:
        box.start(types.FunctionCall(id="s", name="get_state", args={"entity": "garage door"}), outcomes)
        box.start(light_on("l"), outcomes)
        box.start(light_on("f", "living room light"), outcomes)
        box.start(
            types.FunctionCall(id="c", name="set_cover", args={"entity": "garage door", "action": "open"}),
            outcomes,
        )
        await outcomes.count(4)
    scheduling = {outcome.id: outcome.scheduling for outcome in outcomes.items}
    assert scheduling == {"s": "WHEN_IDLE", "l": "SILENT", "f": "WHEN_IDLE", "c": "WHEN_IDLE"}


async def test_default_scheduling_of_a_state_read_is_silent(tmp_path, outcomes, caplog):
    caplog.set_level(logging.INFO, logger="edgevoice.tools")
    box = simulated(tmp_path, latency_s=0)
    async with box:
        box.start(
            types.FunctionCall(id="q", name="get_state", args={"entity": "is the garage door"}),
            outcomes,
        )
        box.start(types.FunctionCall(id="g", name="get_state", args={"entity": "garage door"}), outcomes)
        await outcomes.count(2)
    by_id = {outcome.id: outcome for outcome in outcomes.items}
    assert by_id["g"].kind is OutcomeKind.STATE_READ and by_id["g"].scheduling == "SILENT"
    assert by_id["g"].response == {
        "ok": True,
        "result": "Garage door is closed.",
        "state": {"state": "closed", "position": 0},
    }
    assert by_id["q"].kind is OutcomeKind.INVALID_REQUEST
    assert "tool call g get_state(entity='garage door') done" in caplog.text

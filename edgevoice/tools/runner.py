"""Runs the model's function calls: one asyncio task per call, never waited on by the caller.

``start()`` returns at once; the call's task checks the arguments (the registry), acts on
the house (the backend) under a timeout, picks the response's scheduling (the sans-IO
policy) and hands a :class:`ToolOutcome` to ``on_done`` on the loop. ``cancel()`` cancels
calls the model withdrew: their backend coroutine sees ``CancelledError`` and no outcome is
produced. Bad input never raises out of here: it becomes an error outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgevoice.core.tool_scheduling import OutcomeKind, SchedulingPolicy
from edgevoice.tools.backends.base import HomeBackend
from edgevoice.tools.functions import FunctionRegistry, GroupPlan, Rejection, redact_arguments
from edgevoice.tools.model import BackendError, Entity, StateQuery
from edgevoice.tools.states import describe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one call: what a ``FunctionResponse`` carries (id, name, response,
    scheduling), sent by the Live door.

    ``args`` are the call's arguments with secrets (the confirmation code) redacted.
    ``response`` is ``{"ok": true, "result": "<sentence>", "state": {...}}`` or
    ``{"ok": false, "error": "<what was wrong>", "allowed": "<what is allowed>"}``
    (``allowed`` only when there is something useful to say).
    """

    id: str
    name: str
    args: dict[str, Any]
    response: dict[str, Any]
    scheduling: str  # "INTERRUPT" | "WHEN_IDLE" | "SILENT"
    ok: bool
    duration_s: float
    kind: OutcomeKind = field(default=OutcomeKind.COMPLETED)

    def as_text(self) -> str:
        """One sentence for the model when the call's session is gone (a new session ignores
        responses to ids it never issued): send it as text in ``client_content`` instead."""
        if self.ok:
            return f"Result of your earlier {self.name} call: {self.response.get('result', 'done')}"
        error = self.response.get("error", "unknown error")
        return f"Your earlier {self.name or 'function'} call failed: {error}"


OnDone = Callable[[ToolOutcome], None]


@dataclass
class _Call:
    id: str
    name: str
    args: dict[str, Any]
    started: float


class ToolRunner:
    def __init__(
        self,
        registry: FunctionRegistry,
        backend: HomeBackend,
        policy: SchedulingPolicy | None = None,
        *,
        call_timeout_s: float = 10.0,
        function_timeout_s: Mapping[str, float] | None = None,
        max_pending_calls: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._registry = registry
        self._backend = backend
        self._policy = policy or SchedulingPolicy()
        self._call_timeout_s = call_timeout_s
        self._function_timeout_s = dict(function_timeout_s or {})
        self._max_pending = max_pending_calls
        self._clock = clock
        # Keyed by call id; calls without an id get a private key (they cannot be cancelled).
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._anonymous = (f"\0anonymous-{n}" for n in itertools.count())
        self._closed = False

    def use_registry(self, registry: FunctionRegistry) -> None:
        """Check calls against these functions from now on (running calls keep theirs)."""
        self._registry = registry

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(key for key in self._tasks if not key.startswith("\0"))

    def timeout_for(self, name: str) -> float:
        return self._function_timeout_s.get(name, self._call_timeout_s)

    def start(self, call: Any, on_done: OnDone) -> None:
        """Run ``call`` (anything with id/name/args attributes, or a mapping of them) in its own
        task. Never blocks; never raises for any ``call``. Must run on the event loop."""
        loop = asyncio.get_running_loop()
        record = _unpack(call, self._clock())
        key = record.id or next(self._anonymous)
        if self._closed:
            refusal = Rejection(OutcomeKind.INVALID_REQUEST, "home control is shutting down")
        elif key in self._tasks:
            refusal = Rejection(
                OutcomeKind.INVALID_REQUEST, f"call id {record.id!r} is already running"
            )
        elif len(self._tasks) >= self._max_pending:
            refusal = Rejection(
                OutcomeKind.REFUSED,
                f"too many actions at once ({self._max_pending} running)",
                "wait for the running ones to finish",
            )
        else:
            refusal = None
        if refusal is not None:
            self._refuse(loop, record, refusal, on_done)
            return
        task = loop.create_task(
            self._run(key, record, call, on_done), name=f"tool call {record.name} {key!r}"
        )
        self._tasks[key] = task
        task.add_done_callback(lambda _task, key=key: self._forget(key, _task))

    def reject(self, call: Any, on_done: OnDone, error: str) -> None:
        """Answer ``call`` with an error without running it (on the next loop iteration)."""
        record = _unpack(call, self._clock())
        self._refuse(
            asyncio.get_running_loop(),
            record,
            Rejection(OutcomeKind.INVALID_REQUEST, error),
            on_done,
        )

    def _refuse(
        self, loop: asyncio.AbstractEventLoop, record: _Call, refusal: Rejection, on_done: OnDone
    ) -> None:
        # Answered on the next loop iteration, like every other outcome, never re-entrantly.
        loop.call_soon(
            self._deliver, on_done, self._finish(record, refusal.kind, refusal.response())
        )
        log.warning(
            "tool call %s %s refused: %s", record.id or "(no id)", record.name, refusal.error
        )

    def cancel(self, ids: Iterable[str]) -> list[str]:
        """Cancel the named calls; returns the ids actually cancelled (no outcome for them)."""
        cancelled = []
        for call_id in ids:
            if not isinstance(call_id, str) or call_id.startswith("\0"):
                continue
            task = self._tasks.pop(call_id, None)
            if task is not None and task.cancel():
                cancelled.append(call_id)
        if cancelled:
            log.info("tool calls cancelled: %s", ", ".join(cancelled))
        return cancelled

    async def aclose(self) -> None:
        """Cancel every running call (no outcomes) and wait until they have stopped."""
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("stopping %d running tool call(s)", len(tasks))
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- internals ----------------------------------------------------------------------------

    async def _run(self, key: str, record: _Call, call: Any, on_done: OnDone) -> None:
        try:
            outcome = await self._outcome(record, call)
        except Exception:  # a bug here must still answer the model exactly once
            log.exception("tool call %s %s failed inside EdgeVoice", record.id, record.name)
            outcome = self._finish(
                record,
                OutcomeKind.BACKEND_FAILURE,
                {"ok": False, "error": "an internal error stopped this action"},
            )
        if self._tasks.get(key) is asyncio.current_task():
            del self._tasks[key]
        self._deliver(on_done, outcome)

    async def _outcome(self, record: _Call, call: Any) -> ToolOutcome:
        plan = self._registry.prepare(record.name, _raw_args(call), self._clock())
        if isinstance(plan, Rejection):
            outcome = self._finish(record, plan.kind, plan.response())
            log.warning(
                "tool call %s %s(%s) rejected: %s",
                record.id or "(no id)",
                record.name or "(no name)",
                _args_text(record.args),
                plan.error,
            )
            return outcome
        return await self._act(record, plan)

    async def _act(self, record: _Call, plan: Any) -> ToolOutcome:
        if isinstance(plan, GroupPlan):
            return await self._act_on_group(record, plan)
        kind, text, state = await self._carry_out(record, plan)
        if state is None:
            return self._failed(record, kind, text)
        response = {"ok": True, "result": text, "state": state}
        outcome = self._finish(record, kind, response)
        log.info(
            "tool call %s %s(%s) done in %.2f s: %s",
            record.id,
            record.name,
            _args_text(record.args),
            outcome.duration_s,
            response["result"],
        )
        return outcome

    async def _carry_out(
        self, record: _Call, plan: Any
    ) -> tuple[OutcomeKind, str, dict[str, Any] | None]:
        """(kind, sentence, state): the state is None when it failed, the sentence says why."""
        entity: Entity = plan.entity
        timeout = self.timeout_for(record.name)
        reading = isinstance(plan, StateQuery)
        try:
            async with asyncio.timeout(timeout):
                state = await (
                    self._backend.read_state(entity) if reading else self._backend.execute(plan)
                )
        except TimeoutError:
            error = (
                f"{entity.name} did not answer within {timeout:g} seconds"
                if reading
                else f"{entity.name} did not confirm within {timeout:g} seconds; "
                "it may or may not have changed"
            )
            return OutcomeKind.TIMEOUT, error, None
        except BackendError as exc:
            return OutcomeKind.BACKEND_FAILURE, str(exc), None
        except Exception:
            log.exception(
                "tool call %s %s: the %s backend failed", record.id, record.name, self._backend.name
            )
            return (
                OutcomeKind.BACKEND_FAILURE,
                f"something went wrong while talking to {entity.name}",
                None,
            )
        state = dict(state)
        kind = OutcomeKind.STATE_READ if reading else OutcomeKind.COMPLETED
        return kind, describe(entity, state), state

    async def _act_on_group(self, record: _Call, group: GroupPlan) -> ToolOutcome:
        """Every entity of the group at once; the result says per entity what happened."""
        results = await asyncio.gather(*(self._carry_out(record, plan) for plan in group.plans))
        per_entity = []
        for plan, (_kind, text, state) in zip(group.plans, results, strict=True):
            item: dict[str, Any] = {"entity": plan.entity.name, "ok": state is not None}
            item["result" if state is not None else "error"] = text
            per_entity.append(item)
        failed = [item for item in per_entity if not item["ok"]]
        done = len(per_entity) - len(failed)
        summary = " ".join(item.get("result") or f"{item['entity']}: {item['error']}." for item in per_entity)
        if not failed:
            kind = results[0][0]
            response: dict[str, Any] = {"ok": True, "result": summary, "results": per_entity}
        else:
            kind = OutcomeKind.BACKEND_FAILURE if not done else OutcomeKind.COMPLETED
            response = {
                "ok": False,
                "error": f"{done} of {len(per_entity)} done. " + summary,
                "results": per_entity,
            }
        outcome = self._finish(record, kind, response)
        log.info(
            "tool call %s %s(%s) on %d entities done in %.2f s: %s",
            record.id,
            record.name,
            _args_text(record.args),
            len(per_entity),
            outcome.duration_s,
            summary,
        )
        return outcome

    def _failed(self, record: _Call, kind: OutcomeKind, error: str) -> ToolOutcome:
        log.warning(
            "tool call %s %s(%s) failed (%s): %s",
            record.id,
            record.name,
            _args_text(record.args),
            kind.value,
            error,
        )
        return self._finish(record, kind, {"ok": False, "error": error})

    def _finish(self, record: _Call, kind: OutcomeKind, response: dict[str, Any]) -> ToolOutcome:
        return ToolOutcome(
            id=record.id,
            name=record.name,
            args=record.args,
            response=response,
            scheduling=self._policy.choose(record.name, kind).value,
            ok=kind.ok,
            duration_s=max(0.0, self._clock() - record.started),
            kind=kind,
        )

    def _deliver(self, on_done: OnDone, outcome: ToolOutcome) -> None:
        try:
            on_done(outcome)
        except Exception:
            log.exception(
                "the on_done callback failed for tool call %s %s", outcome.id, outcome.name
            )

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:  # a bug in this module
            log.error("tool call task %s crashed", key, exc_info=task.exception())


def _unpack(call: Any, now: float) -> _Call:
    call_id, name = _field(call, "id"), _field(call, "name")
    return _Call(
        id=call_id if isinstance(call_id, str) else ("" if call_id is None else str(call_id)),
        name=name if isinstance(name, str) else "",
        args=redact_arguments(_raw_args(call)),
        started=now,
    )


def _raw_args(call: Any) -> Any:
    return _field(call, "args")


def _field(call: Any, name: str) -> Any:
    try:
        return call.get(name) if isinstance(call, Mapping) else getattr(call, name, None)
    except Exception:  # a broken object from the far side: treat the field as absent
        return None


def _args_text(args: Mapping[str, Any]) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in args.items())
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["OnDone", "ToolOutcome", "ToolRunner"]

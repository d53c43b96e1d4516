"""The states of the home as Home Assistant last told them, kept current by its events.

Fed with the ``get_states`` snapshot and every ``state_changed`` event; a caller can wait
until an entity's state satisfies a test (the service client waits for a cover to reach
its position this way). An entity removed from HA wakes its waiters with ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

RawState = Mapping[str, Any]


class EntityRemoved(Exception):
    """The entity disappeared from Home Assistant while someone waited on it."""


class LiveStates:
    def __init__(self) -> None:
        self._states: dict[str, RawState] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def __contains__(self, entity_id: str) -> bool:
        return entity_id in self._states

    def get(self, entity_id: str) -> RawState | None:
        return self._states.get(entity_id)

    def all(self) -> Mapping[str, RawState]:
        return dict(self._states)

    def replace_all(self, states: Mapping[str, RawState]) -> None:
        gone = set(self._states) - set(states)
        self._states = dict(states)
        for entity_id in [*states, *gone]:
            self._wake(entity_id)

    def apply_event(self, data: Mapping[str, Any]) -> tuple[str, bool] | None:
        """Apply a ``state_changed`` event's data; returns (entity id, whether it is new or
        removed or renamed), or None for an unreadable event."""
        entity_id = data.get("entity_id")
        if not isinstance(entity_id, str):
            return None
        new = data.get("new_state")
        old = self._states.get(entity_id)
        if isinstance(new, Mapping):
            self._states[entity_id] = new
            structural = old is None or _friendly_name(old) != _friendly_name(new)
        else:
            self._states.pop(entity_id, None)
            structural = True
        self._wake(entity_id)
        return entity_id, structural

    async def wait_for(
        self, entity_id: str, satisfied: Callable[[RawState], bool], timeout_s: float
    ) -> RawState | None:
        """The entity's state once ``satisfied`` (or the latest one after ``timeout_s``).
        Raises :class:`EntityRemoved` when the entity goes away meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            state = self._states.get(entity_id)
            if state is None:
                raise EntityRemoved(entity_id)
            if satisfied(state):
                return state
            left = deadline - loop.time()
            if left <= 0:
                return state
            event = self._changed.setdefault(entity_id, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), left)
            except TimeoutError:
                return self._states.get(entity_id) or state

    def _wake(self, entity_id: str) -> None:
        event = self._changed.pop(entity_id, None)
        if event is not None:
            event.set()


def _friendly_name(state: RawState) -> Any:
    attributes = state.get("attributes")
    return attributes.get("friendly_name") if isinstance(attributes, Mapping) else None


__all__ = ["EntityRemoved", "LiveStates", "RawState"]

"""What the core's state machines share: a transition table and a named mismatch.

Each machine (the connection, the server's turn, an utterance) keeps its states as an Enum
and every legal move in one table ``{state: {trigger: next_state}}``, in the manner of
h11's ``_state.py``. A trigger that the table does not list for the current state raises
:class:`NotInState` *before* anything changes, so the caller can decide what to do (the
conversation logs the decision and goes on) with the machine exactly as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Generic, TypeVar

S = TypeVar("S", bound=Enum)
T = TypeVar("T", bound=Enum)


class NotInState(Exception):
    """A trigger arrived in a state that does not accept it (nothing was changed)."""

    def __init__(self, machine: str, state: Enum, trigger: Enum) -> None:
        super().__init__(f"{machine}: {trigger.name} does not fit state {state.name}")
        self.machine = machine
        self.state = state
        self.trigger = trigger


def transition(machine: str, table: Mapping[S, Mapping[T, S]], state: S, trigger: T) -> S:
    """The state ``trigger`` leads to from ``state``; :class:`NotInState` if none."""
    try:
        return table[state][trigger]
    except KeyError:
        raise NotInState(machine, state, trigger) from None


class Machine(Generic[S, T]):
    """A state and the table of its legal moves."""

    name = "machine"

    def __init__(self, initial: S, table: Mapping[S, Mapping[T, S]]) -> None:
        self.state = initial
        self._table = table

    def accepts(self, trigger: T) -> bool:
        return trigger in self._table.get(self.state, {})

    def fire(self, trigger: T) -> S:
        """Move on ``trigger``; raise :class:`NotInState` (and stay put) if it does not fit."""
        self.state = transition(self.name, self._table, self.state, trigger)
        return self.state

"""What every smart-home backend offers the runner."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from edgevoice.tools.model import BackendError, Command, Entity


class HomeBackend(Protocol):
    """A house to act on. States are in the neutral shapes of :mod:`edgevoice.tools.states`.

    ``execute`` and ``read_state`` raise :class:`BackendError` with a sentence the model can
    repeat; any other exception is treated as a bug and reported as a backend failure. Both
    must be safe to cancel (the runner cancels calls the model withdrew).
    """

    name: str

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def execute(self, command: Command) -> Mapping[str, Any]:
        """Carry out the command; return the entity's state afterwards."""
        ...

    async def read_state(self, entity: Entity) -> Mapping[str, Any]: ...

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        """The last state known for each entity id, without I/O (for describe_state)."""
        ...


__all__ = ["BackendError", "HomeBackend"]

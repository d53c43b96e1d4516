"""When the model should speak about a finished smart-home call (sans-IO).

A NON_BLOCKING function's response carries a ``scheduling`` that tells the Live model what
to do with it: ``INTERRUPT`` (stop talking and say it now), ``WHEN_IDLE`` (say it after the
current sentence) or ``SILENT`` (just remember it). This module only decides; nothing here
touches asyncio, sockets or clocks.

Documented defaults (:data:`DEFAULT_SCHEDULING`):

=====================  ===========  ====================================================
outcome                scheduling   why
=====================  ===========  ====================================================
``COMPLETED``          WHEN_IDLE    an action worked: confirm it without cutting the
                                    model off mid-sentence
``STATE_READ``         SILENT       a state read (``get_state``) feeds the model's
                                    knowledge; it is used when the model next speaks
``INVALID_REQUEST``    WHEN_IDLE    the model asked for something impossible (unknown
                                    device, bad value): nothing happened in the house,
                                    so it can correct itself after its sentence
``REFUSED``            INTERRUPT    a sensitive action was refused (no confirmation code,
                                    locks not allowed): the user must hear it now
``BACKEND_FAILURE``    INTERRUPT    the house did not do what the user asked
``TIMEOUT``            INTERRUPT    no confirmation in time: the user must not assume
                                    it happened
=====================  ===========  ====================================================

Per-function overrides come from the configuration: ``on_success`` applies to
``COMPLETED``/``STATE_READ``, ``on_failure`` to every other kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class Scheduling(StrEnum):
    """The wire values of ``google.genai.types.FunctionResponseScheduling`` we use."""

    INTERRUPT = "INTERRUPT"
    WHEN_IDLE = "WHEN_IDLE"
    SILENT = "SILENT"


class OutcomeKind(StrEnum):
    COMPLETED = "completed"
    STATE_READ = "state_read"
    INVALID_REQUEST = "invalid_request"
    REFUSED = "refused"
    BACKEND_FAILURE = "backend_failure"
    TIMEOUT = "timeout"

    @property
    def ok(self) -> bool:
        return self in (OutcomeKind.COMPLETED, OutcomeKind.STATE_READ)


DEFAULT_SCHEDULING: Mapping[OutcomeKind, Scheduling] = MappingProxyType(
    {
        OutcomeKind.COMPLETED: Scheduling.WHEN_IDLE,
        OutcomeKind.STATE_READ: Scheduling.SILENT,
        OutcomeKind.INVALID_REQUEST: Scheduling.WHEN_IDLE,
        OutcomeKind.REFUSED: Scheduling.INTERRUPT,
        OutcomeKind.BACKEND_FAILURE: Scheduling.INTERRUPT,
        OutcomeKind.TIMEOUT: Scheduling.INTERRUPT,
    }
)


@dataclass(frozen=True)
class SchedulingPolicy:
    """Chooses the scheduling of one finished call.

    ``on_success`` / ``on_failure`` map a function name to the scheduling that replaces the
    default for its successful / failed outcomes.
    """

    on_success: Mapping[str, Scheduling] = field(default_factory=dict)
    on_failure: Mapping[str, Scheduling] = field(default_factory=dict)

    def choose(self, function: str, kind: OutcomeKind) -> Scheduling:
        overrides = self.on_success if kind.ok else self.on_failure
        override = overrides.get(function)
        if override is not None:
            return Scheduling(override)
        return DEFAULT_SCHEDULING[kind]


__all__ = ["DEFAULT_SCHEDULING", "OutcomeKind", "Scheduling", "SchedulingPolicy"]

"""A local Gemini Live API emulator: the far side of the daemon's websocket, for tests.

See ``docs/scenarios.md`` for the scenario format and :mod:`edgevoice_testbed.emulator.faults` for
fault specifications. Names are imported on first use so that ``edgevoice --help`` does
not pay for the websocket, TLS and audio libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ApiKeyAuthenticator": "auth",
    "AuthDecision": "auth",
    "Authenticator": "auth",
    "OffsetClock": "clock",
    "Fault": "faults",
    "Trigger": "faults",
    "parse_fault": "faults",
    "parse_trigger": "faults",
    "ConnectionRecord": "records",
    "FaultRecord": "records",
    "HistoryEntry": "records",
    "ReceivedFrame": "records",
    "ReplyRecord": "records",
    "SentFrame": "records",
    "ToolCallRecord": "records",
    "ToolResponseRecord": "records",
    "UtteranceRecord": "records",
    "Scenario": "scenario",
    "ScenarioError": "scenario",
    "Emulator": "server",
    "EmulatorThread": "server",
}

__all__ = [
    "ApiKeyAuthenticator",
    "AuthDecision",
    "Authenticator",
    "ConnectionRecord",
    "Emulator",
    "EmulatorThread",
    "Fault",
    "FaultRecord",
    "HistoryEntry",
    "OffsetClock",
    "ReceivedFrame",
    "ReplyRecord",
    "Scenario",
    "ScenarioError",
    "SentFrame",
    "ToolCallRecord",
    "ToolResponseRecord",
    "Trigger",
    "UtteranceRecord",
    "parse_fault",
    "parse_trigger",
]

if TYPE_CHECKING:
    from edgevoice_testbed.emulator.auth import ApiKeyAuthenticator, AuthDecision, Authenticator
    from edgevoice_testbed.emulator.clock import OffsetClock
    from edgevoice_testbed.emulator.faults import Fault, Trigger, parse_fault, parse_trigger
    from edgevoice_testbed.emulator.records import (
        ConnectionRecord,
        FaultRecord,
        HistoryEntry,
        ReceivedFrame,
        ReplyRecord,
        SentFrame,
        ToolCallRecord,
        ToolResponseRecord,
        UtteranceRecord,
    )
    from edgevoice_testbed.emulator.scenario import Scenario, ScenarioError
    from edgevoice_testbed.emulator.server import Emulator, EmulatorThread


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgevoice_testbed.emulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgevoice_testbed.emulator.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

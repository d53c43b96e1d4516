"""Fault specifications: what goes wrong on the emulated server, and when.

A fault is written ``KIND[@WHEN]``::

    drop@utterance:2:frame:10     abort the TCP connection after frame 10 of utterance 2
    close:1011@reply:1:chunk:3    close with code 1011 after chunk 3 of the reply to utterance 1
    goaway:5                      send goAway {timeLeft: "5s"}, close 5 s later (untriggered in
                                  a scenario or --fault: 5 s after the first session starts)
    goaway:50:1008                the same, closing with 1008 instead of goaway_close_code
    refuse:3@utterance:1:frame:1  drop, then refuse every new connection for 3 s
    stall@reply:2:chunk:1         stop sending anything on that connection
    delay:1500                    delay the next reply by 1.5 s
    restart@utterance:3:frame:5   (for ``edgevoice simulate``; the emulator ignores it)

The real service's habits, from their trigger on (or at once without one):

    quota:60                      answer websocket upgrades with HTTP 429 for 60 s
    slow_pong:25                  answer pings 25 s late
    not_resumable:2               sessionResumptionUpdate every 2 s (resumable: false while busy)
    duplicate_calls               the next turn's calls also as modelTurn functionCall parts
    no_turn_complete              the next turn ends with generationComplete only
    silent_turn                   the next turn is turnComplete with no content
    refuse_resume                 refuse the next resume at its setup: close 1007 "Request
                                  contains an invalid argument." (no setupComplete), and that
                                  session's handles are gone (armed from its trigger on)
    refuse_resume:1011            the same with another close code

The same parser serves the emulator and the ``simulate`` command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["drop", "close", "goaway", "refuse", "stall", "delay", "restart", "quota",
                    "slow_pong", "not_resumable", "duplicate_calls", "no_turn_complete",
                    "silent_turn", "refuse_resume"]
TriggerKind = Literal["utterance", "reply"]

FAULT_KINDS: tuple[str, ...] = ("drop", "close", "goaway", "refuse", "stall", "delay", "restart",
                                 "quota", "slow_pong", "not_resumable", "duplicate_calls",
                                 "no_turn_complete", "silent_turn", "refuse_resume")
# Habits that change what the next model turn looks like.
TURN_HABITS = frozenset({"duplicate_calls", "no_turn_complete", "silent_turn"})
_KIND_SYNTAX = ("drop, close:CODE, goaway:SECONDS[:CODE], refuse:SECONDS, stall, delay:MS, "
                "restart, quota:SECONDS, slow_pong:SECONDS, not_resumable:SECONDS, "
                "duplicate_calls, no_turn_complete, silent_turn or refuse_resume[:CODE]")
_WHEN_SYNTAX = "utterance:N:frame:K or reply:N:chunk:K (N, K counted from 1)"
_NEEDS_VALUE = {"close": "CODE", "goaway": "SECONDS", "refuse": "SECONDS", "delay": "MS",
                "quota": "SECONDS", "slow_pong": "SECONDS", "not_resumable": "SECONDS"}
# Kinds whose value may be left out, and what it means then.
_MAY_HAVE_VALUE = {"refuse_resume": "CODE"}
# What the real service closed a refused resume with (live-models.md: a resume after a
# 1011 "Deadline expired" close was refused with 1007; the text is its usual 1007 reason).
REFUSE_RESUME_CODE = 1007

# Codes a server may put in a close frame (RFC 6455 7.4; 1005, 1006 and 1015 are
# reserved for reporting and never sent).
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                   1012, 1013, 1014})

_WHEN_RE = re.compile(r"^(utterance):(\d+):frame:(\d+)$|^(reply):(\d+):chunk:(\d+)$")


@dataclass(frozen=True)
class Trigger:
    """The moment a fault fires: after frame K of utterance N, or after chunk K of reply N."""

    kind: TriggerKind
    utterance: int
    index: int

    def __str__(self) -> str:
        unit = "frame" if self.kind == "utterance" else "chunk"
        return f"{self.kind}:{self.utterance}:{unit}:{self.index}"


@dataclass(frozen=True)
class Fault:
    """One fault. ``value`` is the close code, the seconds or the milliseconds of the kind."""

    kind: FaultKind
    value: float | None = None
    when: Trigger | None = None
    reason: str | None = None
    close_code: int | None = None
    """A ``goaway``'s close code (``goaway:S:CODE``); None: the scenario's."""

    @property
    def code(self) -> int:
        """Close code of a ``close`` or ``refuse_resume`` fault."""
        if self.kind == "refuse_resume" and self.value is None:
            return REFUSE_RESUME_CODE
        return int(self.value or 0)

    @property
    def seconds(self) -> float:
        """Duration of a ``goaway`` or ``refuse`` fault, or of a ``delay`` in seconds."""
        value = float(self.value or 0.0)
        return value / 1000.0 if self.kind == "delay" else value

    def __str__(self) -> str:
        text = self.kind
        if self.value is not None:
            text += f":{_format_number(self.value)}"
        if self.close_code is not None:
            text += f":{self.close_code}"
        if self.when is not None:
            text += f"@{self.when}"
        return text


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_trigger(text: str) -> Trigger:
    """Parse ``utterance:N:frame:K`` or ``reply:N:chunk:K``; ValueError names the problem."""
    match = _WHEN_RE.match(text.strip())
    if not match:
        raise ValueError(f"bad fault time {text!r}: expected {_WHEN_SYNTAX}")
    if match.group(1):
        kind, n, k = "utterance", int(match.group(2)), int(match.group(3))
    else:
        kind, n, k = "reply", int(match.group(5)), int(match.group(6))
    if n < 1 or k < 1:
        raise ValueError(f"bad fault time {text!r}: N and K count from 1")
    return Trigger(kind, n, k)  # type: ignore[arg-type]


def parse_fault(spec: str) -> Fault:
    """Parse ``KIND[:VALUE][@WHEN]`` into a :class:`Fault`.

    Raises ValueError with a message that quotes the spec and says what was expected.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"bad fault {spec!r}: empty (expected {_KIND_SYNTAX}, optionally @WHEN)")
    text = spec.strip()
    head, sep, when_text = text.partition("@")
    if sep and not when_text:
        raise ValueError(f"bad fault {spec!r}: nothing after '@' (expected {_WHEN_SYNTAX})")
    kind, colon, value_text = head.partition(":")
    kind = kind.strip().lower()
    if kind not in FAULT_KINDS:
        raise ValueError(f"bad fault {spec!r}: unknown kind {kind!r} (expected {_KIND_SYNTAX})")
    value: float | None = None
    close_code = None
    if kind == "goaway" and value_text.count(":") == 1:
        value_text, _, code_text = value_text.partition(":")
        try:
            close_code = int(code_text)
        except ValueError:
            raise ValueError(f"bad fault {spec!r}: the close code of goaway:SECONDS:CODE must "
                             f"be a whole number, got {code_text!r}") from None
        _check_value(spec, "close", float(close_code))
    if kind in _MAY_HAVE_VALUE and colon:
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(
                f"bad fault {spec!r}: {_MAY_HAVE_VALUE[kind]} of {kind} must be a whole number, "
                f"got {value_text!r}"
            ) from None
        _check_value(spec, "close", value)
    elif kind in _NEEDS_VALUE:
        if not colon or not value_text.strip():
            raise ValueError(
                f"bad fault {spec!r}: {kind} needs a value ({kind}:{_NEEDS_VALUE[kind]})")
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(
                f"bad fault {spec!r}: {_NEEDS_VALUE[kind]} of {kind} must be a number, "
                f"got {value_text!r}"
            ) from None
        _check_value(spec, kind, value)
    elif colon:
        raise ValueError(f"bad fault {spec!r}: {kind} takes no value")
    when = None
    if sep:
        try:
            when = parse_trigger(when_text)
        except ValueError as exc:
            raise ValueError(f"bad fault {spec!r}: {exc}") from None
    return Fault(kind, value, when, close_code=close_code)  # type: ignore[arg-type]


def make_fault(
    kind: str, value: float | None = None, when: str | Trigger | None = None,
    reason: str | None = None, close_code: int | None = None,
) -> Fault:
    """Build a fault from parts (the object form of a scenario's ``faults`` entries)."""
    spec = kind if value is None else f"{kind}:{_format_number(value)}"
    fault = parse_fault(spec)
    trigger = parse_trigger(when) if isinstance(when, str) else when
    if reason is not None and fault.kind not in ("close", "goaway", "refuse_resume"):
        raise ValueError(f"bad fault {spec!r}: only close, goaway and refuse_resume take a reason")
    if close_code is not None:
        if fault.kind != "goaway":
            raise ValueError(f"bad fault {spec!r}: only goaway takes a code")
        _check_value(spec, "close", float(close_code))
    return Fault(fault.kind, fault.value, trigger, reason,
                 close_code if close_code is not None else fault.close_code)


def _check_value(spec: str, kind: str, value: float) -> None:
    if kind == "close":
        if not value.is_integer() or not (
            int(value) in _SENDABLE_CLOSE_CODES or 3000 <= value <= 4999
        ):
            raise ValueError(
                f"bad fault {spec!r}: {_format_number(value)} is not a close code a server can "
                "send (1000-1003, 1007-1014 or 3000-4999)"
            )
    elif kind == "slow_pong" and not 0 <= value <= 60:
        raise ValueError(f"bad fault {spec!r}: slow_pong takes 0 to 60 seconds")
    elif kind == "not_resumable" and not value > 0:
        raise ValueError(f"bad fault {spec!r}: not_resumable needs an interval > 0 seconds")
    elif value < 0 or value != value or value == float("inf"):
        raise ValueError(f"bad fault {spec!r}: {kind} value must be a finite number >= 0")

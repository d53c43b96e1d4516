"""Scenario files: what the emulated model hears, says and calls, and what goes wrong.

A scenario is JSON validated by pydantic; ``docs/scenarios.md`` is the reference. Turn i
of ``turns`` answers the i-th utterance of a conversation; ``default`` answers the rest.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from edgevoice.errors import UserError
from edgevoice_testbed.emulator.faults import Fault, make_fault, parse_fault

_PLACEMENT_RE = re.compile(r"^(before_reply|after_reply|after_chunk:(\d+))$")
PLACEMENT_SYNTAX = "before_reply, after_chunk:N (N from 1) or after_reply"


class ScenarioError(UserError):
    """A scenario file that cannot be used; the message names the file and the field."""


def _coerce_fault(value: Any) -> Fault:
    if isinstance(value, Fault):
        return value
    if isinstance(value, str):
        return parse_fault(value)
    if isinstance(value, dict):
        allowed = {"kind", "value", "when", "reason", "code"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown fault field(s) {unknown} (expected {sorted(allowed)})")
        if "kind" not in value:
            raise ValueError("a fault object needs 'kind'")
        return make_fault(value["kind"], value.get("value"), value.get("when"),
                          value.get("reason"), value.get("code"))
    raise ValueError("a fault is a string like 'drop@utterance:2:frame:10' or an object")


FaultField = Annotated[Fault, PlainValidator(_coerce_fault), PlainSerializer(str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_placement(value: str) -> str:
    match = _PLACEMENT_RE.match(value)
    if not match or (match.group(2) is not None and int(match.group(2)) < 1):
        raise ValueError(f"{value!r} is not a placement (expected {PLACEMENT_SYNTAX})")
    return value


def placement_chunk(value: str) -> int | None:
    """The chunk number of ``after_chunk:N``; None for before_reply/after_reply."""
    match = _PLACEMENT_RE.match(value)
    return int(match.group(2)) if match and match.group(2) else None


class ToolCallSpec(_Model):
    """A function call the model issues while answering a turn."""

    name: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(default=None, min_length=1)
    when: str = "before_reply"
    follow_up: str | None = None
    """Spoken when this call's response arrives (the turn's ``follow_up`` waits for all)."""

    @field_validator("when")
    @classmethod
    def _when_is_placement(cls, value: str) -> str:
        return _check_placement(value)


class CancelSpec(_Model):
    """Cancel the turn's outstanding calls after a delay and/or when the user barges in."""

    after_ms: float | None = Field(default=None, ge=0)
    on_barge_in: bool = False
    calls: list[str] | None = None
    """Ids or names of the calls to cancel; default: all of the turn's calls."""

    @model_validator(mode="after")
    def _something(self) -> CancelSpec:
        if self.after_ms is None and not self.on_barge_in:
            raise ValueError("cancel needs after_ms or on_barge_in: true")
        return self


class InjectSpec(_Model):
    """A raw frame (possibly malformed) sent at a point of the reply."""

    when: str = "before_reply"
    text: str | None = None
    binary_base64: str | None = None

    @field_validator("when")
    @classmethod
    def _when_is_placement(cls, value: str) -> str:
        return _check_placement(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> InjectSpec:
        if (self.text is None) == (self.binary_base64 is None):
            raise ValueError("inject needs exactly one of text or binary_base64")
        if self.binary_base64 is not None:
            import base64
            import binascii

            try:
                base64.b64decode(self.binary_base64, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("binary_base64 is not valid base64") from None
        return self

    @property
    def payload(self) -> str | bytes:
        if self.text is not None:
            return self.text
        import base64

        return base64.b64decode(self.binary_base64 or "")


class Turn(_Model):
    """The model's side of one exchange."""

    input_transcript: str | None = None
    reply: str = ""
    output_transcript: str | None = None
    reply_delay_ms: float = Field(default=0.0, ge=0)
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    cancel: CancelSpec | None = None
    follow_up: str | None = None
    inject: list[InjectSpec] = Field(default_factory=list)
    match: str | None = None
    """For ``text_turns``: a regular expression searched (case-insensitively) in the typed
    prompt; none matches every prompt."""
    alternatives: list[Turn] = Field(default_factory=list)
    """Used in order when the client did not declare every function this turn calls."""
    silent: bool = False
    """The service's silent stall: ``turnComplete`` with no content at all."""
    turn_complete: bool = True
    """False: the turn ends with ``generationComplete`` and no ``turnComplete``."""
    duplicate_calls: bool = False
    """Send each call twice: as ``toolCall`` and as ``modelTurn.parts[].functionCall``."""

    @field_validator("match")
    @classmethod
    def _match_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"match {value!r} is not a regular expression: {exc}") from None
        return value

    @property
    def spoken_transcript(self) -> str:
        return self.reply if self.output_transcript is None else self.output_transcript

    @model_validator(mode="after")
    def _ids_unique(self) -> Turn:
        ids = [call.id for call in self.tool_calls if call.id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("tool call ids must be unique within a turn")
        if self.cancel is not None and not self.tool_calls:
            raise ValueError("cancel without tool_calls")
        return self


DEFAULT_TURN = Turn(input_transcript="Hello.", reply="Hello! How can I help?")


class Scenario(_Model):
    """A whole scenario. Build with :meth:`load`, :meth:`model_validate` or :meth:`default`."""

    name: str | None = None
    description: str | None = None
    turns: list[Turn] = Field(default_factory=list)
    default_turn: Turn = Field(default=DEFAULT_TURN, alias="default")
    """Answers utterances beyond ``turns`` (and ``clientContent`` turns)."""
    faults: list[FaultField] = Field(default_factory=list)
    voice: Literal["espeak", "tone"] = "espeak"
    espeak_voice: str = Field(default="en-us", pattern=r"^[A-Za-z0-9_+\-]+$")
    chunk_ms: int = Field(default=200, ge=10, le=5000)
    pace: float | Literal["fast"] = 4.0
    """Real-time factor of the reply audio (4.0: four times faster than playback)."""
    handle_ttl_s: float = Field(default=7200.0, gt=0)
    handles_kept_per_session: int = Field(default=100, ge=1)
    """Older handles of a session than this many newest are forgotten (refused 1007)."""
    usage_metadata: bool = True
    output_transcript_mode: Literal["spread", "first", "separate"] = "spread"
    resumption_update_style: Literal["explicit", "proto3"] = "explicit"
    """``explicit`` sends ``{resumable: false}``; ``proto3`` omits false/empty fields."""
    goaway_close_code: int = Field(default=1011, ge=1000, le=4999)
    text_turns: list[Turn] = Field(default_factory=list)
    """Answer typed prompts (``clientContent`` with ``turnComplete``, realtime text): the
    first whose ``match`` matches, else ``default``."""
    models: dict[str, str] = Field(default_factory=dict)
    """Model ids to accept besides the ones Google serves, each mapped to a family name."""
    synchronous_call_input: Literal["family", "close", "cancel", "cancel_later"] = "family"
    """Realtime input while a synchronous call is unanswered: ``family`` does what the
    model's family does (2.5 closes 1008, 3.8 cancels the call, 3.1 cancels it 12 s later)."""
    frames: Literal["binary", "text"] = "binary"
    """Websocket frame type of server messages (the real service sends binary frames)."""
    duplicate_calls: bool = False
    """Every function call also as ``modelTurn.parts[].functionCall`` (as some models do)."""
    resumption_updates_every_s: float | None = Field(default=None, gt=0)
    """Send ``sessionResumptionUpdate`` unasked this often: ``resumable: false`` while the
    model speaks or a call is pending, a new handle otherwise."""
    call_undeclared_functions: bool = False
    """A hostile model for robustness tests: call functions the client never declared
    (the real service does not; by default such a turn falls back, see ``alternatives``)."""
    pong_delay_s: float = Field(default=0.0, ge=0, le=60)
    """Answer websocket pings this late (the service's pongs were measured at 8-30 s)."""

    @field_validator("models")
    @classmethod
    def _families_known(cls, value: dict[str, str]) -> dict[str, str]:
        from edgevoice_testbed.emulator.setup_rules import family_names

        names = family_names()
        for model, family in value.items():
            if family not in names:
                raise ValueError(f"model {model!r}: unknown family {family!r} "
                                 f"(expected one of {', '.join(names)})")
        return value

    @field_validator("pace", mode="before")
    @classmethod
    def _pace_positive(cls, value: Any) -> float | str:
        if value == "fast":
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(
                f'pace must be a number > 0 (real-time factor) or "fast", got {value!r}')
        return float(value)

    def turn_for(self, utterance: int) -> Turn:
        """The turn answering the ``utterance``-th utterance (1-based) of a conversation."""
        if 1 <= utterance <= len(self.turns):
            return self.turns[utterance - 1]
        return self.default_turn

    def text_turn_for(self, prompt: str) -> Turn:
        """The turn answering a typed prompt."""
        for turn in self.text_turns:
            if turn.match is None or re.search(turn.match, prompt, re.IGNORECASE):
                return turn
        return self.default_turn

    def spoken_texts(self) -> set[str]:
        """Every text the emulator may speak (to render audio ahead of time)."""
        texts: set[str] = set()
        turns = [*self.turns, *self.text_turns, self.default_turn]
        for turn in turns:
            turns.extend(alt for alt in turn.alternatives if alt not in turns)
            texts.add(turn.reply)
            if turn.follow_up:
                texts.add(turn.follow_up)
            texts.update(call.follow_up for call in turn.tool_calls if call.follow_up)
        return {text for text in texts if text}

    @property
    def chunk_interval(self) -> float:
        """Seconds between reply chunks."""
        return 0.0 if self.pace == "fast" else self.chunk_ms / 1000.0 / float(self.pace)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read and validate a scenario file; :class:`ScenarioError` says what is wrong."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"scenario {path}: cannot read: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"scenario {path}: not valid JSON: {exc.msg} at line {exc.lineno} "
                f"column {exc.colno}"
            ) from None
        return cls.from_data(data, source=str(path))

    @classmethod
    def from_data(cls, data: Any, source: str = "<data>") -> Scenario:
        """Validate decoded JSON; :class:`ScenarioError` names the field that is wrong."""
        if not isinstance(data, dict):
            raise ScenarioError(f"scenario {source}: the top level must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ScenarioError(f"scenario {source}: {describe_errors(exc)}") from None

    @classmethod
    def default(cls) -> Scenario:
        """The packaged ``scenarios/default.json``."""
        ref = resources.files("edgevoice_testbed.emulator").joinpath("scenarios/default.json")
        return cls.from_data(json.loads(ref.read_text(encoding="utf-8")),
                             source="testbed/edgevoice_testbed/emulator/scenarios/default.json")


def describe_errors(exc: ValidationError) -> str:
    """One line per problem: ``turns[0].tool_calls[1].when: <message>``."""
    parts = []
    for error in exc.errors():
        location = ""
        for item in error["loc"]:
            if isinstance(item, int):
                location += f"[{item}]"
            else:
                # Union members and validator names appear in loc; they are noise to a reader.
                if item in {"float", "literal['fast']", "str", "dict[str,any]",
                            "function-plain[_coerce_fault()]"}:
                    continue
                location += f".{item}" if location else str(item)
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location or '(top level)'}: {message}")
    # Several errors about one field (union branches) say the same thing twice.
    unique = list(dict.fromkeys(parts))
    return "; ".join(unique)

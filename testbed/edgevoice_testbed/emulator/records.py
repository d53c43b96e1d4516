"""What the emulator saw and did, kept for tests to inspect.

Records are appended to plain lists and updated in place by the emulator's loop; reading
them from another thread is safe (append-only lists, attributes replaced atomically).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReceivedFrame:
    """One client frame: ``message`` is normalised camelCase (None if it did not parse)."""

    t: float
    connection_id: int
    message: dict[str, Any] | None
    raw: str | bytes


@dataclass
class SentFrame:
    """One server frame: ``message`` for JSON frames, ``raw`` is what went on the wire."""

    t: float
    connection_id: int
    message: dict[str, Any] | None
    raw: str | bytes


@dataclass
class ConnectionRecord:
    id: int
    path: str
    opened_t: float
    api_version: str | None = None
    method: str | None = None
    api_key_present: bool = False
    api_key_fingerprint: str | None = None
    """sha256(key)[:8]: tells keys apart without storing them."""
    auth_scheme: str | None = None
    auth_rejected: str | None = None
    setup: dict[str, Any] | None = None
    """The setup frame as the client sent it (normalised)."""
    effective_setup: dict[str, Any] | None = None
    """The setup the session runs with: ``setup`` with an ephemeral token's locked fields."""
    locked_fields: list[str] | None = None
    """Fields the ephemeral token locked (``["*"]``: all); None without constraints."""
    resumed_handle: str | None = None
    family: str | None = None
    """The model family the setup's model id names (``edgevoice.core.families``)."""
    session_id: int | None = None
    accepted: bool = False
    """True once setupComplete was sent."""
    closed_t: float | None = None
    close_code: int | None = None
    close_reason: str | None = None
    closed_by: str | None = None
    """``server`` (close frame sent first), ``client``, ``abort`` (no close frame) or ``lost``."""
    stray_audio_frames: int = 0
    """Audio frames received outside an utterance (recorded, discarded)."""
    error: str | None = None

    @property
    def model(self) -> str | None:
        return (self.setup or {}).get("model")

    @property
    def is_open(self) -> bool:
        return self.closed_t is None


@dataclass
class UtteranceRecord:
    """One utterance (activityStart .. activityEnd); ``complete`` once activityEnd arrived."""

    turn: int
    connection_id: int
    rate: int | None
    start_t: float
    end_t: float | None = None
    frames: int = 0
    complete: bool = False
    _buffer: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def audio(self) -> bytes:
        return bytes(self._buffer)


@dataclass
class ReplyRecord:
    """One spoken model turn; ``audio`` holds exactly the PCM bytes sent (24 kHz S16_LE)."""

    turn: int | None
    """Utterance number it answers; None for follow-ups and clientContent replies."""
    connection_id: int
    kind: str
    """``reply`` (to an utterance), ``follow_up`` (after a tool response) or ``client``."""
    text: str
    start_t: float
    chunks: int = 0
    interrupted: bool = False
    finished: bool = False
    """True once turnComplete was sent (also after an interruption)."""
    end_t: float | None = None
    # Views into the voice's cached render, not copies: a long run repeats the same few
    # texts, and copying their audio into every record grew memory with every reply.
    _chunks: list[memoryview] = field(default_factory=list, repr=False)
    audio_bytes: int = 0

    def add_audio(self, chunk: memoryview) -> None:
        self._chunks.append(chunk)
        self.audio_bytes += len(chunk)

    @property
    def audio(self) -> bytes:
        return b"".join(self._chunks)


@dataclass
class ToolCallRecord:
    t: float
    connection_id: int
    turn: int | None
    id: str
    name: str
    args: dict[str, Any]
    declared: bool
    """Whether the setup declared a function of that name."""
    cancelled_t: float | None = None
    response_t: float | None = None


@dataclass
class ToolResponseRecord:
    t: float
    connection_id: int
    id: str | None
    name: str | None
    response: Any
    scheduling: str | None
    known: bool
    """False when this session never issued (or already settled) that call id: ignored."""


@dataclass
class SkippedCall:
    """A scripted call the emulator did not make because the client never declared it."""

    t: float
    connection_id: int
    turn: int | None
    name: str
    declared: tuple[str, ...]


@dataclass
class FaultRecord:
    t: float
    connection_id: int | None
    fault: str


@dataclass(frozen=True)
class HistoryEntry:
    """One item of a session's conversation memory."""

    kind: str
    """``user``, ``model``, ``tool_call``, ``tool_response``, ``tool_cancellation``,
    ``client_content`` or ``text_input``."""
    text: str | None = None
    turn: int | None = None
    data: Any = None
    interrupted: bool = False

"""What happens to the device (events) and what the device should do about it (actions).

The conversation core (:mod:`edgevoice.core.conversation`) consumes events and returns
actions; adapters turn hardware and network happenings into events and execute actions.
Everything here is plain data: no I/O, no clock (times are passed in, in seconds of the
monotonic clock), so a sequence of events can be replayed in a test.

Sample positions count 16 kHz mono samples captured since the microphone opened: a button
event carries the position at which it happened so that an utterance starts and ends on the
exact sample, whatever the order in which the press and the audio reach the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# -- events: hardware --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pressed:
    position: int
    t: float


@dataclass(frozen=True, slots=True)
class Released:
    position: int
    t: float


@dataclass(frozen=True, slots=True)
class Captured:
    """One capture period: 16 kHz mono S16_LE starting at ``position``."""

    position: int
    pcm: bytes
    t: float


@dataclass(frozen=True, slots=True)
class PlaybackIdle:
    """The speaker has played everything it was given (or was interrupted)."""

    t: float


@dataclass(frozen=True, slots=True)
class DeviceProblem:
    """A device failed (``problem`` says how) or came back (``problem`` None)."""

    device: str  # "microphone" | "speaker" | "home"
    problem: str | None
    t: float


@dataclass(frozen=True, slots=True)
class NetworkChanged:
    """A network interface, address or route changed (the network may be back)."""

    t: float


@dataclass(frozen=True, slots=True)
class ToolDeclarationsChanged:
    """The functions the model must be offered changed (the home changed): the session is
    switched for a fresh one at the next quiet moment, never in the middle of an answer."""

    t: float


@dataclass(frozen=True, slots=True)
class Tick:
    """A deadline the core asked for (see ``Conversation.next_deadline``) has passed."""

    t: float


# -- events: the Live connection ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkUp:
    """setupComplete arrived on connection ``link``; ``resumed`` if it was opened with a handle."""

    link: int
    resumed: bool
    t: float


class DownCause(StrEnum):
    """Why a connection ended or could not be opened, as far as the Live door can tell.

    Only ``LOST`` is worth a quick retry; the others last minutes or hours whatever the
    client does, and retrying at once would only hammer the service.
    """

    LOST = "lost"  # the network, a server restart, a close with no known meaning
    QUOTA_EXHAUSTED = "quota_exhausted"  # HTTP 429 / RESOURCE_EXHAUSTED at the upgrade
    KEY_REJECTED = "key_rejected"  # 1007 "API key expired" and the like
    MODEL_NOT_FOUND = "model_not_found"  # 1008 "models/... is not found": retired or misspelt
    FRAME_TOO_LARGE = "frame_too_large"  # a server frame over the client's size limit


@dataclass(frozen=True, slots=True)
class LinkDown:
    """Connection ``link`` ended (closed, lost, or declared dead); ``code`` is the websocket
    close code when there was one (1006 for a connection lost without a close frame).
    ``cause`` says what the door made of it (how long a retry should wait)."""

    link: int
    code: int | None
    reason: str
    t: float
    cause: DownCause = DownCause.LOST


@dataclass(frozen=True, slots=True)
class LinkFailed:
    """A connection attempt did not reach setupComplete (``code``: the close code or the
    HTTP status of a refused upgrade)."""

    link: int
    code: int | None
    reason: str
    t: float
    cause: DownCause = DownCause.LOST


@dataclass(frozen=True, slots=True)
class ServerAudio:
    """Reply audio; ``chunk``: its number among the audio chunks the link has received."""

    link: int
    pcm: bytes
    t: float
    chunk: int = 0


@dataclass(frozen=True, slots=True)
class Transcript:
    link: int
    role: str  # "user" | "model"
    text: str
    t: float


@dataclass(frozen=True, slots=True)
class GenerationComplete:
    link: int
    t: float


@dataclass(frozen=True, slots=True)
class TurnComplete:
    link: int
    t: float


@dataclass(frozen=True, slots=True)
class Interrupted:
    link: int
    t: float


@dataclass(frozen=True, slots=True)
class ResumptionUpdate:
    link: int
    handle: str | None
    resumable: bool
    t: float


@dataclass(frozen=True, slots=True)
class GoAway:
    link: int
    time_left_s: float
    t: float


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCallsReceived:
    link: int
    calls: tuple[ToolCall, ...]
    t: float


@dataclass(frozen=True, slots=True)
class ToolCallsCancelled:
    link: int
    ids: tuple[str, ...]
    t: float


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool call finished (the tools room's outcome, reduced to what the core needs)."""

    id: str
    name: str
    response: dict[str, Any]
    scheduling: str  # "INTERRUPT" | "WHEN_IDLE" | "SILENT"
    t: float


@dataclass(frozen=True, slots=True)
class ServerProblem:
    """A server frame the client could not use (malformed, unknown). Logged and survived."""

    link: int
    description: str
    t: float


Event = (
    Pressed
    | Released
    | Captured
    | PlaybackIdle
    | DeviceProblem
    | NetworkChanged
    | ToolDeclarationsChanged
    | Tick
    | LinkUp
    | LinkDown
    | LinkFailed
    | ServerAudio
    | Transcript
    | GenerationComplete
    | TurnComplete
    | Interrupted
    | ResumptionUpdate
    | GoAway
    | ToolCallsReceived
    | ToolCallsCancelled
    | ToolResult
    | ServerProblem
)


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendActivityStart:
    link: int
    utterance: int


@dataclass(frozen=True, slots=True)
class SendAudio:
    """Samples of an utterance; ``position``: the capture position of the first one."""

    link: int
    pcm: bytes
    position: int

    @property
    def end(self) -> int:
        """The capture position just past the last sample (16-bit mono: 2 bytes a sample)."""
        return self.position + len(self.pcm) // 2


@dataclass(frozen=True, slots=True)
class SendActivityEnd:
    link: int
    utterance: int


@dataclass(frozen=True, slots=True)
class SendToolResponses:
    link: int
    results: tuple[ToolResult, ...]


@dataclass(frozen=True, slots=True)
class SendContext:
    """Text the model must know about (tool results or exchanges it lost in a reconnect)."""

    link: int
    text: str
    turn_complete: bool


@dataclass(frozen=True, slots=True)
class Connect:
    """Open connection ``link``, resuming ``handle`` when given. The previous connection is
    already closed (a resume is rejected while the old socket is open)."""

    link: int
    handle: str | None


@dataclass(frozen=True, slots=True)
class CloseLink:
    link: int
    reason: str


@dataclass(frozen=True, slots=True)
class PlayAudio:
    pcm: bytes
    chunk: int


@dataclass(frozen=True, slots=True)
class EndOfReply:
    """The model's audio for this turn is complete: play out what is buffered."""


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Fade out at once and drop everything queued (barge-in, interrupted, stale reply)."""


class Earcon(StrEnum):
    LISTENING = "listening"
    SENT = "sent"
    ERROR = "error"
    OFFLINE = "offline"
    RECONNECTED = "reconnected"


@dataclass(frozen=True, slots=True)
class PlayEarcon:
    earcon: Earcon


@dataclass(frozen=True, slots=True)
class RunTool:
    call: ToolCall


@dataclass(frozen=True, slots=True)
class CancelTools:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PersistHandle:
    handle: str | None  # None: forget the stored handle (rejected or expired)


@dataclass(frozen=True, slots=True)
class SavedCall:
    """A function an unanswered utterance's reply already ran: ``args`` as canonical JSON,
    ``response`` and ``scheduling`` None while (or if) its result is not known."""

    name: str
    args: str
    response: dict[str, Any] | None = None
    scheduling: str | None = None


@dataclass(frozen=True, slots=True)
class SavedUtterance:
    """An utterance kept across a restart: its whole audio, 16 kHz mono S16_LE, and the
    functions its reply already ran (so asking it again does not run them twice)."""

    number: int
    audio: bytes
    calls: tuple[SavedCall, ...] = ()


@dataclass(frozen=True, slots=True)
class SavedLedger:
    """What a restarted daemon must still do: the utterances not answered yet (in order)
    and the exchanges the next session must be told about (the reply in flight among
    them). Give it back to ``Conversation(ledger=...)`` after a restart."""

    utterances: tuple[SavedUtterance, ...] = ()
    context: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PersistLedger:
    """Store ``ledger`` so that it survives the process (write it atomically, replacing the
    previous one; an empty ledger may simply remove the file)."""

    ledger: SavedLedger


class DeviceState(StrEnum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"
    OFFLINE = "offline"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Status:
    state: DeviceState
    detail: str = ""

    def text(self) -> str:
        return f"{self.state.value}: {self.detail}" if self.detail else self.state.value


@dataclass(frozen=True, slots=True)
class Log:
    """Something worth a line in the journal; the core has no logger of its own."""

    level: int
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


Action = (
    SendActivityStart
    | SendAudio
    | SendActivityEnd
    | SendToolResponses
    | SendContext
    | Connect
    | CloseLink
    | PlayAudio
    | EndOfReply
    | StopPlayback
    | PlayEarcon
    | RunTool
    | CancelTools
    | PersistHandle
    | PersistLedger
    | Status
    | Log
)

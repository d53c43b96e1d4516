"""The emulated Live API, sans I/O: client frames in, server actions out, time passed in.

:class:`EmulatorCore` holds what outlives a connection (recordings, resumption handles,
faults, the refusal window). :class:`Connection` is one websocket's conversation: the
server adapter feeds it frames (:meth:`Connection.receive`), asks it what to send
(:meth:`Connection.poll`) and when to ask again (:meth:`Connection.next_deadline`), and
reports the end of the socket (:meth:`Connection.connection_lost`). Nothing here touches
sockets, tasks or clocks, so every protocol decision can be tested in microseconds.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from edgevoice.core.families import GEMINI_3_8, InterruptTiming, ModelFamily
from edgevoice_testbed.emulator.auth import (
    TOKEN_EXPIRED,
    AuthDecision,
    Authenticator,
    TokenAuthenticator,
    TokenResult,
    apply_constraints,
)
from edgevoice_testbed.emulator.faults import TURN_HABITS, Fault
from edgevoice_testbed.emulator.records import (
    ConnectionRecord,
    FaultRecord,
    HistoryEntry,
    ReceivedFrame,
    ReplyRecord,
    SentFrame,
    SkippedCall,
    ToolCallRecord,
    ToolResponseRecord,
    UtteranceRecord,
)
from edgevoice_testbed.emulator.scenario import (
    InjectSpec,
    Scenario,
    ToolCallSpec,
    Turn,
    placement_chunk,
)
from edgevoice_testbed.emulator.setup_rules import (
    REASON_INVALID_ARGUMENT,
    family_refusal,
    model_family,
    model_not_found,
    sends_transparent_index,
    unknown_field,
)
from edgevoice_testbed.emulator.vad import EnergyVad, VadSettings
from edgevoice_testbed.emulator.voice import OUTPUT_RATE, SAMPLE_WIDTH
from edgevoice_testbed.emulator.wire import duration_string, encode_frame, normalise, rate_from_mime

log = logging.getLogger(__name__)

PATH_RE = re.compile(
    r"^/ws/google\.ai\.generativelanguage\.(v1|v1beta|v1alpha)\.GenerativeService\."
    r"(BidiGenerateContent|BidiGenerateContentConstrained)$"
)
OUTPUT_MIME = f"audio/pcm;rate={OUTPUT_RATE}"
CLIENT_MESSAGE_KEYS = ("setup", "clientContent", "realtimeInput", "toolResponse")
SCHEDULINGS = ("INTERRUPT", "WHEN_IDLE", "SILENT")
DEFAULT_SCHEDULING = "WHEN_IDLE"
AUDIO_TOKENS_PER_SECOND = 32  # the Gemini API's documented audio token rate

# Close reasons in the words the real service uses where they are known.
REASON_INVALID_JSON = "Invalid JSON payload received."
REASON_INVALID_HANDLE = "invalid session resumption handle"
REASON_SESSION_ACTIVE = (
    "Session resumption failed: the session is still open on another connection."
)
REASON_NOT_SUPPORTED = "Operation is not implemented, or supported, or enabled."
# 3.1 takes input during a synchronous call as a new turn and cancels the call this much later.
SYNC_CALL_CANCEL_AFTER_S = 12.0
REASON_EXPLICIT_VAD = (
    "Explicit activity control is not supported when automatic activity detection is enabled."
)
DEFAULT_CLOSE_REASONS = {
    1000: "",
    1001: "The server is going away.",
    1007: "Request contains an invalid argument.",
    1008: "Operation is not permitted.",
    1011: "Internal error encountered.",
    1013: "The service is currently unavailable.",
}
HANDLE_SWEEP_EVERY = 256  # handle stores between sweeps for expired handles
# What the service said when it closed after a GoAway (live-models.md: sokuji 179 for 1011).
GOAWAY_CLOSE_REASONS = {
    1011: "Deadline expired before operation could complete.",
    1008: "The operation was aborted.",
}
GOAWAY_CLOSE_REASON = GOAWAY_CLOSE_REASONS[1011]
QUOTA_BODY = json.dumps({"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "Resource has been exhausted (e.g. check quota)."}})
# Faults that switch a habit of the service on rather than break one connection.
HABIT_KINDS = frozenset({"quota", "slow_pong", "not_resumable"}) | TURN_HABITS


# ---------------------------------------------------------------------------------------
# Actions the adapter carries out, in order.


@dataclass(frozen=True)
class SendFrame:
    """Send ``text`` (the JSON of ``message``): as a binary frame (UTF-8) when ``binary``,
    as the real service does, else as a text frame."""

    message: dict[str, Any]
    text: str
    binary: bool = False


@dataclass(frozen=True)
class SendRaw:
    """Send these exact bytes (binary frame) or text (text frame): injected, maybe malformed."""

    data: str | bytes


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Abort:
    """Drop the TCP connection without a close frame."""


Action = SendFrame | SendRaw | Close | Abort


@dataclass(frozen=True)
class HandshakeReject:
    status: int
    body: str


# ---------------------------------------------------------------------------------------
# Session state: what a resumption handle names.


@dataclass(frozen=True)
class PendingCall:
    id: str
    name: str
    turn: int | None
    follow_up: str | None
    group: int | None
    cancel_on_barge_in: bool
    blocking: bool = False


@dataclass
class FollowUpGroup:
    """A turn's ``follow_up``: spoken once every call of the turn is settled."""

    text: str
    remaining: set[str]
    responded: bool = False
    scheduling: str = DEFAULT_SCHEDULING


@dataclass(frozen=True)
class _HistoryNode:
    """One entry of a session's memory and the entries before it (never changed once
    made): a snapshot shares the whole history by holding its newest node."""

    entry: HistoryEntry
    previous: _HistoryNode | None
    length: int


@dataclass
class SessionState:
    id: int
    _history_tail: _HistoryNode | None = None
    turns: int = 0
    """Utterances the conversation has opened (utterance N is the N-th)."""
    pending_calls: dict[str, PendingCall] = field(default_factory=dict)
    groups: dict[int, FollowUpGroup] = field(default_factory=dict)

    @property
    def history(self) -> list[HistoryEntry]:
        entries = []
        node = self._history_tail
        while node is not None:
            entries.append(node.entry)
            node = node.previous
        entries.reverse()
        return entries

    def remember(self, entry: HistoryEntry) -> None:
        tail = self._history_tail
        self._history_tail = _HistoryNode(entry, tail, (tail.length if tail else 0) + 1)

    def copy(self) -> SessionState:
        """A snapshot: the history is shared (immutable), the small mutable parts copied.
        A deep copy per handle made memory grow with turns times handles."""
        return SessionState(
            id=self.id, _history_tail=self._history_tail, turns=self.turns,
            pending_calls=dict(self.pending_calls),
            groups={key: FollowUpGroup(group.text, set(group.remaining), group.responded,
                                       group.scheduling)
                    for key, group in self.groups.items()},
        )

    @property
    def signature(self) -> tuple[int, int, int]:
        length = self._history_tail.length if self._history_tail else 0
        return length, self.turns, len(self.pending_calls)


@dataclass
class _Handle:
    snapshot: SessionState
    connection_id: int
    issued_t: float


@dataclass
class _ArmedFault:
    fault: Fault
    fired: bool = False


@dataclass
class _SpeechRequest:
    kind: str  # reply | follow_up | client
    text: str
    transcript: str
    utterance: int | None = None
    turn: Turn | None = None
    delay: float = 0.0
    prompt_tokens: int = 0
    urgent: bool = False
    """An INTERRUPT result held until the user finished speaking (3.8): spoken first."""


@dataclass
class _Speech:
    request: _SpeechRequest
    record: ReplyRecord
    steps: deque[tuple[float, Callable[[float], None]]]
    chunks: list[memoryview | str]
    transcript_pieces: list[str]
    call_ids: dict[int, str]
    """Index in the turn's tool_calls -> the id assigned at start."""
    issued: set[str] = field(default_factory=set)
    group: int | None = None
    injections: list[InjectSpec] = field(default_factory=list)
    """One-shot frames armed with :meth:`EmulatorCore.arm_injections`."""
    habits: set[str] = field(default_factory=set)
    """Service habits this turn plays (``silent_turn``, ``no_turn_complete``, ...)."""
    waiting_for: set[str] = field(default_factory=set)
    """Synchronous calls this reply waits on: it goes on once they are answered."""


# ---------------------------------------------------------------------------------------


class EmulatorCore:
    """Server-wide state and recordings; creates a :class:`Connection` per websocket."""

    def __init__(
        self,
        scenario: Scenario,
        render: Callable[[str], bytes],
        authenticator: Authenticator | None = None,
        record_audio_frames: bool = True,
    ):
        self.scenario = scenario
        # Audio frames dominate the recordings (about 0.2 MB/s in a conversation); a long
        # benchmark can leave them out of received/sent (utterances and replies keep the PCM).
        self.record_audio_frames = record_audio_frames
        self.render = render
        # By default tokens the emulator issued are enforced and made-up ones still pass.
        self.authenticator: Authenticator = authenticator or TokenAuthenticator(
            accept_unissued_tokens=True)
        self.received: list[ReceivedFrame] = []
        self.sent: list[SentFrame] = []
        self.connections: list[ConnectionRecord] = []
        self.utterances: list[UtteranceRecord] = []
        self.replies: list[ReplyRecord] = []
        self.tool_calls: list[ToolCallRecord] = []
        self.tool_responses: list[ToolResponseRecord] = []
        self.skipped_calls: list[SkippedCall] = []
        self.fired_faults: list[FaultRecord] = []
        self.rejected_handshakes: list[tuple[float, str, int]] = []
        self.rest_requests: list[tuple[float, str, int]] = []
        self.errors: list[str] = []
        self._armed_injections: list[InjectSpec] = []
        self.refuse_until = float("-inf")
        self.current_session: SessionState | None = None
        # Scenario faults with a trigger wait for it; the others fire at the first session
        # (habits switch on at the first handshake).
        self._armed = [_ArmedFault(fault) for fault in scenario.faults if fault.when is not None]
        # A refused resume without a trigger is armed from the start: it refuses the first
        # resume, whichever connection that is.
        self._resume_refusals = [fault for fault in scenario.faults
                                 if fault.when is None and fault.kind == "refuse_resume"]
        self._startup_faults = [fault for fault in scenario.faults
                                if fault.when is None and fault.kind != "refuse_resume"]
        self._started = False
        self.quota_until = float("-inf")
        self.pong_delay_s = scenario.pong_delay_s
        self.resumption_updates_every_s = scenario.resumption_updates_every_s
        self._turn_habits: set[str] = set()
        self._next_setup_faults: list[Fault] = []
        self._pending_delay = 0.0
        self._handles: dict[str, _Handle] = {}
        self._session_handles: dict[int, deque[str]] = {}
        self._stores_since_sweep = 0
        self._open_sessions: dict[int, int] = {}
        self._live: dict[int, Connection] = {}
        self._session_ids = itertools.count(1)
        self._call_ids = itertools.count(1)

    # Handshake and connections -------------------------------------------------------

    def check_handshake(self, path: str, now: float) -> HandshakeReject | None:
        """None to accept the websocket upgrade, or the HTTP answer that refuses it."""
        status = None
        self._start_habits(now)
        if now < self.quota_until:
            status, body = 429, QUOTA_BODY
        elif now < self.refuse_until:
            status, body = 503, "The service is currently unavailable."
        elif not PATH_RE.match(urlsplit(path).path):
            status, body = 404, "Not Found"
        if status is None:
            return None
        # The query is dropped: a client may carry its key there (?key=...).
        self.rejected_handshakes.append((now, urlsplit(path).path, status))
        return HandshakeReject(status, body)

    def open_connection(self, path: str, headers: Mapping[str, str], now: float) -> Connection:
        match = PATH_RE.match(urlsplit(path).path)
        record = ConnectionRecord(
            id=len(self.connections) + 1, path=urlsplit(path).path, opened_t=now,
            api_version=match.group(1) if match else None,
            method=match.group(2) if match else None,
        )
        decision = self.authenticator.check(path, headers, now)
        record.api_key_present = decision.key_present
        record.api_key_fingerprint = decision.key_fingerprint
        record.auth_scheme = decision.scheme
        self.connections.append(record)
        connection = Connection(self, record, decision)
        self._live[record.id] = connection
        return connection

    def live_connections(self) -> list[Connection]:
        return list(self._live.values())

    # REST: ephemeral tokens ------------------------------------------------------------------

    def create_auth_token(self, version: str, headers: Mapping[str, str], body: Any,
                          wall_now: datetime, now: float) -> TokenResult:
        """``POST /{version}/auth_tokens`` (the SDK's ``auth_tokens.create``)."""
        issue = getattr(self.authenticator, "issue", None)
        if issue is None:
            result = TokenResult(501, {"error": {
                "code": 501, "status": "UNIMPLEMENTED",
                "message": "this emulator's authenticator does not issue tokens"}})
        else:
            result = issue(version, headers, body, wall_now, now)
        # The token is in the answer; only the status is recorded.
        self.rest_requests.append((now, f"/{version}/auth_tokens", result.status))
        return result

    @property
    def issued_tokens(self) -> list[Any]:
        """Tokens issued so far (fingerprints, times, uses; never the token)."""
        return list(getattr(self.authenticator, "issued", []))

    # One-shot injections ---------------------------------------------------------------------

    def arm_injections(self, injections: list[InjectSpec], *, replace: bool = False) -> None:
        """Send these raw frames once, at their placements in the next reply to an
        utterance (whatever its number, on whichever connection). ``replace`` drops
        injections armed before and not sent yet."""
        if replace:
            self._armed_injections = []
        self._armed_injections.extend(injections)

    def take_armed_injections(self) -> list[InjectSpec]:
        armed, self._armed_injections = self._armed_injections, []
        return armed

    # Faults ---------------------------------------------------------------------------

    def end_refusal(self) -> None:
        """Take new connections again now, whatever a ``refuse`` fault still had to run."""
        self.refuse_until = float("-inf")

    def inject_fault(self, fault: Fault, now: float) -> None:
        """Arm ``fault`` for its trigger, or fire it now when it has none."""
        if fault.when is not None:
            self._armed.append(_ArmedFault(fault))
            return
        if fault.kind == "restart":
            log.info("fault %s is for the simulate command; the emulator ignores it", fault)
            return
        if fault.kind == "delay":
            self.note_fault(fault, None, now)
            self.add_delay(fault.seconds)
            return
        if fault.kind in HABIT_KINDS:
            self.apply_habit(fault, None, now)
            return
        if fault.kind == "refuse_resume":
            self.arm_resume_refusal(fault)
            return
        target = self._latest_accepted()
        if fault.kind == "refuse":
            self.note_fault(fault, target.record.id if target else None, now)
            self.refuse_until = max(self.refuse_until, now + fault.seconds)
            if target is not None:
                target.terminate(Abort())
            return
        if target is None:
            self._next_setup_faults.append(fault)
            return
        target.fire_fault(fault, now)

    def apply_habit(self, fault: Fault, connection_id: int | None, now: float) -> None:
        """Switch on one of the service's habits (see :data:`HABIT_KINDS`)."""
        self.note_fault(fault, connection_id, now)
        if fault.kind == "quota":
            self.quota_until = max(self.quota_until, now + fault.seconds)
        elif fault.kind == "slow_pong":
            self.pong_delay_s = fault.seconds
        elif fault.kind == "not_resumable":
            self.resumption_updates_every_s = fault.seconds
            for connection in self._live.values():
                connection.start_periodic_updates(now)
        else:
            self._turn_habits.add(fault.kind)

    def take_turn_habits(self) -> set[str]:
        habits, self._turn_habits = self._turn_habits, set()
        return habits

    def _start_habits(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        for fault in [f for f in self._startup_faults if f.kind in HABIT_KINDS]:
            self._startup_faults.remove(fault)
            self.apply_habit(fault, None, now)

    def take_startup_faults(self) -> list[Fault]:
        """Untriggered scenario faults, for the first session that starts."""
        faults, self._startup_faults = self._startup_faults, []
        return faults

    def take_faults(self, kind: str, utterance: int, index: int) -> list[Fault]:
        """Faults due at this trigger; each fires once."""
        due = []
        for armed in self._armed:
            when = armed.fault.when
            if (not armed.fired and when is not None and when.kind == kind
                    and when.utterance == utterance and when.index == index):
                armed.fired = True
                due.append(armed.fault)
        return due

    def arm_resume_refusal(self, fault: Fault) -> None:
        """The next setup that resumes a session is refused with ``fault``'s close."""
        log.info("fault %s armed: the next resume will be refused", fault)
        self._resume_refusals.append(fault)

    def take_resume_refusal(self) -> Fault | None:
        return self._resume_refusals.pop(0) if self._resume_refusals else None

    def take_next_setup_faults(self) -> list[Fault]:
        faults, self._next_setup_faults = self._next_setup_faults, []
        return faults

    def note_fault(self, fault: Fault, connection_id: int | None, now: float) -> None:
        log.info("fault %s fires on connection %s", fault, connection_id)
        self.fired_faults.append(FaultRecord(now, connection_id, str(fault)))

    def add_delay(self, seconds: float) -> None:
        self._pending_delay += seconds

    def take_delay(self) -> float:
        delay, self._pending_delay = self._pending_delay, 0.0
        return delay

    def _latest_accepted(self) -> Connection | None:
        for connection in reversed(list(self._live.values())):
            if connection.record.accepted and not connection.closing:
                return connection
        return None

    # Sessions and handles ---------------------------------------------------------------

    def new_session(self) -> SessionState:
        return SessionState(id=next(self._session_ids))

    def new_call_id(self) -> str:
        return f"function-call-{next(self._call_ids)}"

    def store_handle(self, session: SessionState, connection_id: int, now: float) -> str:
        """Remember a snapshot of ``session`` under a new handle. Only handles that can
        still be resumed are kept: the newest ``handles_kept_per_session`` of a session,
        and none whose connection ended more than ``handle_ttl_s`` ago."""
        handle = "emu-" + secrets.token_urlsafe(16)
        self._handles[handle] = _Handle(session.copy(), connection_id, now)
        kept = self._session_handles.setdefault(session.id, deque())
        kept.append(handle)
        while len(kept) > self.scenario.handles_kept_per_session:
            self._handles.pop(kept.popleft(), None)
        self._stores_since_sweep += 1
        if self._stores_since_sweep >= HANDLE_SWEEP_EVERY:
            self._stores_since_sweep = 0
            self._drop_expired_handles(now)
        return handle

    def forget_session(self, session_id: int) -> None:
        """Every handle of the session stops working (the service refused to resume it:
        the session cannot continue, whichever of its handles a client tries next)."""
        for handle in self._session_handles.pop(session_id, ()):
            self._handles.pop(handle, None)

    def _handle_expired(self, entry: _Handle, now: float) -> bool:
        source = self.connections[entry.connection_id - 1]
        return source.closed_t is not None and now - source.closed_t > self.scenario.handle_ttl_s

    def _drop_expired_handles(self, now: float) -> None:
        for session_id, kept in list(self._session_handles.items()):
            alive = deque(handle for handle in kept if handle in self._handles
                          and not self._handle_expired(self._handles[handle], now))
            for handle in set(kept) - set(alive):
                self._handles.pop(handle, None)
            if alive:
                self._session_handles[session_id] = alive
            else:
                del self._session_handles[session_id]

    @property
    def handles_kept(self) -> int:
        """Resumption handles the emulator still holds (bounded; see :meth:`store_handle`)."""
        return len(self._handles)

    def resolve_handle(self, handle: str, now: float) -> SessionState | None:
        """The snapshot a handle names, or None if unknown or expired."""
        entry = self._handles.get(handle)
        if entry is None:
            return None
        if self._handle_expired(entry, now):
            return None
        return entry.snapshot.copy()

    def session_open_elsewhere(self, session_id: int, connection_id: int) -> bool:
        other = self._open_sessions.get(session_id)
        return other is not None and other != connection_id and other in self._live

    def attach_session(self, session: SessionState, connection_id: int) -> None:
        self._open_sessions[session.id] = connection_id
        self.current_session = session

    def connection_ended(self, connection: Connection) -> None:
        self._live.pop(connection.record.id, None)
        session = connection.session
        if session is not None and self._open_sessions.get(session.id) == connection.record.id:
            del self._open_sessions[session.id]

    @property
    def history(self) -> list[HistoryEntry]:
        session = self.current_session
        return session.history if session is not None else []


# ---------------------------------------------------------------------------------------


class ProtocolViolation(Exception):
    """The client broke the protocol: the connection closes with ``code``."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Connection:
    """One websocket's conversation with the emulated model."""

    def __init__(self, core: EmulatorCore, record: ConnectionRecord, auth: AuthDecision):
        self.core = core
        self.record = record
        self.auth = auth
        self.scenario = core.scenario
        self.session: SessionState | None = None
        self.finished = False
        self.closing = False
        self.stalled = False
        self._now = record.opened_t
        self._out: list[Action] = []
        self._timers: list[tuple[float, int, Callable[[float], None]]] = []
        self._timer_seq = itertools.count()
        self._speech: _Speech | None = None
        self._queue: deque[_SpeechRequest] = deque()
        self._utterance: UtteranceRecord | None = None
        self._handle_signature: tuple[int, int, int] | None = None
        # From the setup frame.
        self._resumption = False
        self._input_transcription = False
        self._output_transcription = False
        self._audio_out = True
        self._explicit_activity = False
        self._declared: dict[str, str] = {}
        """Declared function name -> its ``behavior`` as sent (upper case, may be empty)."""
        self._family: ModelFamily = GEMINI_3_8
        self._vad: EnergyVad | None = None
        self._transparent = False
        self._updates_scheduled = False
        self._cancels_scheduled: set[str] = set()
        self._client_messages = 0
        self._model_turns = 0

    # Adapter interface -------------------------------------------------------------------

    def receive(self, data: str | bytes, now: float) -> None:
        """Feed one client frame."""
        self._now = now
        message = None
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            decoded = json.loads(text)
            if isinstance(decoded, dict):
                message = normalise(decoded)
        except (UnicodeDecodeError, ValueError):
            pass
        if self.core.record_audio_frames or not _is_audio_input(message):
            self.core.received.append(ReceivedFrame(now, self.record.id, message, data))
        if self.finished or self.closing or self.stalled:
            return
        try:
            if message is None:
                raise ProtocolViolation(1007, REASON_INVALID_JSON)
            self._dispatch(message, now)
        except ProtocolViolation as violation:
            log.warning("connection %d: %s; closing with %d", self.record.id,
                        violation.reason, violation.code)
            self.terminate(Close(violation.code, violation.reason))

    def poll(self, now: float) -> list[Action]:
        """Actions due by ``now``, in order. Call after every receive and at each deadline."""
        self._now = now
        while not self.closing and not self.finished and not self.stalled:
            step_due = (self._speech.steps[0][0] if self._speech and self._speech.steps
                        and not self._speech.waiting_for else None)
            timer_due = self._timers[0][0] if self._timers else None
            candidates = [due for due in (step_due, timer_due) if due is not None]
            if not candidates or min(candidates) > now:
                break
            if step_due is not None and (timer_due is None or step_due <= timer_due):
                assert self._speech is not None
                _, step = self._speech.steps.popleft()
                step(now)
            else:
                _, _, timer = heapq.heappop(self._timers)
                timer(now)
        actions, self._out = self._out, []
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has something to do next (None: only on new input)."""
        if self._out:
            return self._now
        if self.closing or self.finished or self.stalled:
            return None
        dues = [self._timers[0][0]] if self._timers else []
        if self._speech is not None and self._speech.steps and not self._speech.waiting_for:
            dues.append(self._speech.steps[0][0])
        return min(dues) if dues else None

    def connection_lost(self, now: float, code: int | None, reason: str | None,
                        closed_by: str) -> None:
        """The socket is gone (closed by either side or aborted)."""
        if self.finished:
            return
        self.finished = True
        self.record.closed_t = now
        self.record.close_code = code
        self.record.close_reason = reason
        self.record.closed_by = closed_by
        if self._speech is not None:
            self._speech.record.end_t = now
            self._speech = None
        self._queue.clear()
        self._timers.clear()
        self.core.connection_ended(self)

    def fire_fault(self, fault: Fault, now: float) -> None:
        """Make ``fault`` happen on this connection now."""
        self._now = now
        if fault.kind == "restart":
            log.info("fault %s is for the simulate command; the emulator ignores it", fault)
            return
        if fault.kind in HABIT_KINDS:
            self.core.apply_habit(fault, self.record.id, now)
            return
        if fault.kind == "refuse_resume":
            # Recorded when it refuses a resume, not when it is armed.
            self.core.arm_resume_refusal(fault)
            return
        self.core.note_fault(fault, self.record.id, now)
        if fault.kind == "drop":
            self.terminate(Abort())
        elif fault.kind == "close":
            reason = fault.reason if fault.reason is not None else DEFAULT_CLOSE_REASONS.get(
                fault.code, "")
            self.terminate(Close(fault.code, reason))
        elif fault.kind == "goaway":
            self._send({"goAway": {"timeLeft": duration_string(fault.seconds)}})
            code = fault.close_code or self.scenario.goaway_close_code
            reason = fault.reason if fault.reason is not None else GOAWAY_CLOSE_REASONS.get(
                code, DEFAULT_CLOSE_REASONS.get(code, ""))
            self._at(now + fault.seconds, lambda _now: self.terminate(Close(code, reason)))
        elif fault.kind == "refuse":
            self.core.refuse_until = max(self.core.refuse_until, now + fault.seconds)
            self.terminate(Abort())
        elif fault.kind == "stall":
            self.stalled = True
            self._speech = None
            self._queue.clear()
            self._timers.clear()
        elif fault.kind == "delay":
            self.core.add_delay(fault.seconds)

    def terminate(self, action: Close | Abort) -> None:
        """Close or abort; nothing is sent after it."""
        if self.closing or self.finished:
            return
        if isinstance(action, Close):
            action = Close(action.code, fit_close_reason(action.reason))
        self._out.append(action)
        self.closing = True
        if isinstance(action, Close):
            self.record.close_code = action.code
            self.record.close_reason = action.reason

    # Sending -------------------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        if self.closing or self.finished or self.stalled:
            return
        text = encode_frame(message)
        self._out.append(SendFrame(message, text, binary=self.scenario.frames == "binary"))
        if self.core.record_audio_frames or "modelTurn" not in message.get("serverContent", {}):
            self.core.sent.append(SentFrame(self._now, self.record.id, message, text))

    def _send_raw(self, data: str | bytes) -> None:
        if self.closing or self.finished or self.stalled:
            return
        self._out.append(SendRaw(data))
        self.core.sent.append(SentFrame(self._now, self.record.id, None, data))

    def _at(self, due: float, callback: Callable[[float], None]) -> None:
        heapq.heappush(self._timers, (due, next(self._timer_seq), callback))

    def _fire_due(self, kind: str, utterance: int, index: int, now: float) -> None:
        for fault in self.core.take_faults(kind, utterance, index):
            self.fire_fault(fault, now)

    # Dispatch --------------------------------------------------------------------------------

    def _dispatch(self, message: dict[str, Any], now: float) -> None:
        keys = [key for key in message if key in CLIENT_MESSAGE_KEYS]
        unknown = [key for key in message if key not in CLIENT_MESSAGE_KEYS]
        if unknown:
            raise ProtocolViolation(
                1007, f'{REASON_INVALID_JSON} Unknown name "{unknown[0]}": Cannot find field.')
        if len(keys) != 1:
            raise ProtocolViolation(
                1007, f"{REASON_INVALID_JSON} A message must set exactly one of "
                      f"{', '.join(CLIENT_MESSAGE_KEYS)}.")
        key = keys[0]
        body = message[key]
        if not isinstance(body, dict):
            raise ProtocolViolation(1007, f"{REASON_INVALID_JSON} {key} must be an object.")
        self._client_messages += 1
        if self.session is None:
            if key != "setup":
                raise ProtocolViolation(1007, "The first message must be setup.")
            self._on_setup(body, now)
            return
        if key == "setup":
            raise ProtocolViolation(1007, "setup may only be sent once, as the first message.")
        if key == "realtimeInput":
            self._on_realtime_input(body, now)
        elif key == "toolResponse":
            self._on_tool_response(body, now)
        else:
            self._on_client_content(body, now)

    def _on_setup(self, setup: dict[str, Any], now: float) -> None:
        self.record.setup = setup
        if not self.auth.ok:
            self.record.auth_rejected = self.auth.reason
            raise ProtocolViolation(self.auth.close_code or 1008, self.auth.reason or "")
        if self.auth.constraints is not None:
            # An ephemeral token's locked fields win over what the client asked for.
            setup, self.record.locked_fields = apply_constraints(
                setup, self.auth.constraints, self.auth.field_mask)
        self.record.effective_setup = setup
        refusal = unknown_field(setup)
        if refusal is not None:
            raise ProtocolViolation(refusal.code, refusal.reason)
        model = setup.get("model")
        if not isinstance(model, str) or not model:
            raise ProtocolViolation(1007, "setup.model is required.")
        family = model_family(model, self.scenario.models)
        if family is None:
            refusal = model_not_found(model, self.record.api_version)
            raise ProtocolViolation(refusal.code, refusal.reason)
        refusal = family_refusal(setup, family, model)
        if refusal is not None:
            raise ProtocolViolation(refusal.code, refusal.reason)
        self._family = family
        self.record.family = family.name
        generation = setup.get("generationConfig") or {}
        modalities = [str(m).upper() for m in generation.get("responseModalities") or ["AUDIO"]]
        if len(modalities) != 1 or modalities[0] not in ("AUDIO", "TEXT"):
            raise ProtocolViolation(
                1007, "Exactly one response modality (AUDIO or TEXT) is supported.")
        self._audio_out = modalities[0] == "AUDIO"
        realtime_config = setup.get("realtimeInputConfig") or {}
        detection = realtime_config.get("automaticActivityDetection") or {}
        self._explicit_activity = bool(detection.get("disabled"))
        if not self._explicit_activity:
            self._vad = EnergyVad(VadSettings.from_setup(detection))
        self._input_transcription = "inputAudioTranscription" in setup
        self._output_transcription = "outputAudioTranscription" in setup
        resumption = setup.get("sessionResumption")
        self._resumption = resumption is not None
        self._transparent = isinstance(resumption, dict) and bool(resumption.get("transparent"))
        tools = setup.get("tools") or []
        for tool in tools if isinstance(tools, list) else []:
            declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
            for declaration in declarations if isinstance(declarations, list) else []:
                if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                    behavior = str(declaration.get("behavior") or "").upper()
                    self._declared[declaration["name"]] = behavior
        handle = (resumption or {}).get("handle") if isinstance(resumption, dict) else None
        if handle:
            self.record.resumed_handle = handle
            session = self.core.resolve_handle(handle, now)
            if session is None:
                raise ProtocolViolation(1007, REASON_INVALID_HANDLE)
            refusal = self.core.take_resume_refusal()
            if refusal is not None:
                self.core.note_fault(refusal, self.record.id, now)
                self.core.forget_session(session.id)
                raise ProtocolViolation(refusal.code, refusal.reason if refusal.reason is not None
                                        else DEFAULT_CLOSE_REASONS.get(refusal.code, ""))
            if self.core.session_open_elsewhere(session.id, self.record.id):
                raise ProtocolViolation(1011, REASON_SESSION_ACTIVE)
        else:
            session = self.core.new_session()
        self.session = session
        self.record.session_id = session.id
        self.core.attach_session(session, self.record.id)
        self.record.accepted = True
        self._send({"setupComplete": {}})
        if self.auth.expires_t is not None:
            self._at(self.auth.expires_t, self._token_expired)
        if self._resumption:
            self._issue_handle(now)
        for fault in self.core.take_next_setup_faults():
            self.fire_fault(fault, now)
        for fault in self.core.take_startup_faults():
            if fault.kind == "goaway":
                # "goaway:S" with no trigger: S seconds into the first session.
                self._at(now + fault.seconds, partial(self._fire_later, fault))
            else:
                self.fire_fault(fault, now)
        self.start_periodic_updates(now)

    def _fire_later(self, fault: Fault, now: float) -> None:
        self.fire_fault(fault, now)

    def start_periodic_updates(self, now: float) -> None:
        """Unasked ``sessionResumptionUpdate`` every ``resumption_updates_every_s``."""
        interval = self.core.resumption_updates_every_s
        if interval is None or not self._resumption or self._updates_scheduled:
            return
        self._updates_scheduled = True
        self._at(now + interval, self._periodic_update)

    def _periodic_update(self, now: float) -> None:
        assert self.session is not None
        interval = self.core.resumption_updates_every_s
        if interval is None:
            self._updates_scheduled = False
            return
        if self._idle() and not self.session.pending_calls:
            self._issue_handle(now)
        else:
            self._send_not_resumable()
        self._at(now + interval, self._periodic_update)

    def _token_expired(self, now: float) -> None:
        log.info("connection %d: its ephemeral token expired; closing", self.record.id)
        self.terminate(Close(*TOKEN_EXPIRED))

    # Realtime input ------------------------------------------------------------------------

    def _on_realtime_input(self, body: dict[str, Any], now: float) -> None:
        self._check_synchronous_calls(now)
        if "activityStart" in body:
            self._on_activity_start(now)
        for chunk in body.get("mediaChunks") or []:
            self._on_audio(chunk, now)
        if "audio" in body:
            self._on_audio(body["audio"], now)
        if "activityEnd" in body:
            self._on_activity_end(now)
        # audioStreamEnd: the client paused the stream, so speech in progress ends now.
        if (body.get("audioStreamEnd") and self._vad is not None
                and self._vad.flush() is not None and self._utterance is not None):
            self._close_utterance(now)
        if "text" in body and isinstance(body["text"], str):
            self._remember(HistoryEntry("text_input", text=body["text"]))
            self._answer_text(body["text"], now)

    def _is_synchronous(self, name: str) -> bool:
        behavior = self._declared.get(name, "")
        if self._family.synchronous_functions_only:
            return True
        if self._family is GEMINI_3_8:
            return behavior == "BLOCKING"  # NON_BLOCKING is 3.8's default
        return behavior != "NON_BLOCKING"

    def _check_synchronous_calls(self, now: float) -> None:
        """Realtime input while a synchronous call is unanswered, as each family takes it."""
        assert self.session is not None
        ids = [call.id for call in self.session.pending_calls.values() if call.blocking]
        if not ids:
            return
        policy = self.scenario.synchronous_call_input
        if policy == "family":
            if self._family.synchronous_functions_only:
                policy = "cancel_later"
            elif self._family is GEMINI_3_8:
                policy = "cancel"
            else:
                policy = "close"
        if policy == "close":
            raise ProtocolViolation(1008, REASON_NOT_SUPPORTED)
        if policy == "cancel":
            self._cancel_calls(ids, now)
            self._maybe_issue_handle(now)
        else:
            # Once per call, not once per audio frame.
            due = [call_id for call_id in ids if call_id not in self._cancels_scheduled]
            if due:
                self._cancels_scheduled.update(due)
                self._at(now + SYNC_CALL_CANCEL_AFTER_S, partial(self._cancel_later, due))

    def _on_activity_start(self, now: float) -> None:
        if not self._explicit_activity:
            raise ProtocolViolation(1007, REASON_EXPLICIT_VAD)
        if self._utterance is not None:
            log.warning("connection %d: activityStart inside an utterance ignored",
                        self.record.id)
            return
        self._open_utterance(now, None)

    def _open_utterance(self, now: float, rate: int | None) -> None:
        if self._speech is not None:
            self._interrupt(now, barge_in=True)
            self._maybe_issue_handle(now)
        assert self.session is not None
        self.session.turns += 1
        self._utterance = UtteranceRecord(self.session.turns, self.record.id, rate, now)
        self.core.utterances.append(self._utterance)

    def _on_audio(self, blob: Any, now: float) -> None:
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), str):
            raise ProtocolViolation(1007, f"{REASON_INVALID_JSON} An audio blob needs data.")
        try:
            pcm = decode_base64(blob["data"])
        except (binascii.Error, ValueError):
            raise ProtocolViolation(1007, f"{REASON_INVALID_JSON} Audio data is not base64.") \
                from None
        rate = rate_from_mime(blob.get("mimeType"))
        if self._vad is not None:
            self._on_audio_detected(pcm, rate or 16000, now)
            return
        if self._utterance is None:
            # Under manual activity detection audio belongs between activityStart and
            # activityEnd; the service refuses it anywhere else.
            self.record.stray_audio_frames += 1
            raise ProtocolViolation(1007, REASON_INVALID_ARGUMENT)
        self._add_audio(pcm, rate, now)

    def _add_audio(self, pcm: bytes, rate: int | None, now: float) -> None:
        utterance = self._utterance
        assert utterance is not None
        if utterance.rate is None:
            utterance.rate = rate
        utterance._buffer.extend(pcm)
        utterance.frames += 1
        self._fire_due("utterance", utterance.turn, utterance.frames, now)

    def _on_audio_detected(self, pcm: bytes, rate: int, now: float) -> None:
        """Automatic activity detection: speech opens an utterance, silence closes it."""
        vad = self._vad
        assert vad is not None
        before_s = vad.position_s
        cursor = 0
        for event in vad.feed(pcm, rate):
            offset = min(len(pcm), max(cursor, round((event.at_s - before_s) * rate) * 2))
            if event.kind == "start":
                if self._utterance is None:
                    self._open_utterance(now, rate)
                # The utterance starts where the speech that committed it began.
                padding = int(vad.settings.prefix_padding_ms / 1000.0 * rate) * 2
                cursor = max(cursor, offset - padding)
            elif self._utterance is not None:
                self._add_audio(pcm[cursor:offset], rate, now)
                cursor = offset
                if self.closing or self.finished:
                    return
                self._close_utterance(now)
        if self._utterance is not None and cursor < len(pcm):
            self._add_audio(pcm[cursor:], rate, now)

    def _on_activity_end(self, now: float) -> None:
        if self._utterance is None:
            log.warning("connection %d: activityEnd without activityStart ignored",
                        self.record.id)
            return
        self._close_utterance(now)

    def _close_utterance(self, now: float) -> None:
        utterance = self._utterance
        assert utterance is not None
        utterance.end_t = now
        utterance.complete = True
        self._utterance = None
        turn = self._with_declared_calls(self.scenario.turn_for(utterance.turn), utterance.turn)
        if self._input_transcription and turn.input_transcript:
            self._send({"serverContent": {"inputTranscription": {"text": turn.input_transcript}}})
        self._remember(HistoryEntry("user", text=turn.input_transcript, turn=utterance.turn))
        request = _SpeechRequest("reply", turn.reply, turn.spoken_transcript, utterance.turn,
                                 turn, turn.reply_delay_ms / 1000.0)
        # INTERRUPT results held while the user spoke go first, then the answer.
        urgent = 0
        while urgent < len(self._queue) and self._queue[urgent].urgent:
            urgent += 1
        self._queue.insert(urgent, request)
        self._start_next(now)

    # Declared functions ----------------------------------------------------------------------

    def _with_declared_calls(self, turn: Turn, utterance: int | None) -> Turn:
        """``turn`` if the client declared every function it calls, else its first
        alternative that qualifies, else its plain answer without calls (logged)."""
        if self.scenario.call_undeclared_functions:
            return turn
        for candidate in (turn, *turn.alternatives):
            if all(call.name in self._declared for call in candidate.tool_calls):
                return candidate
        missing = sorted({call.name for call in turn.tool_calls if call.name not in self._declared})
        log.warning("connection %d: the scenario calls %s, which the client did not declare "
                    "(declared: %s); answering without the call", self.record.id,
                    ", ".join(missing), ", ".join(sorted(self._declared)) or "none")
        for name in missing:
            self.core.skipped_calls.append(SkippedCall(
                self._now, self.record.id, utterance, name, tuple(sorted(self._declared))))
        return turn.model_copy(update={"tool_calls": [], "cancel": None, "follow_up": None})

    # Client content and tool responses ------------------------------------------------------

    def _on_client_content(self, body: dict[str, Any], now: float) -> None:
        if not self._family.client_content_mid_session and self._model_turns > 0:
            # 3.1 takes client_content only before the model's first turn.
            raise ProtocolViolation(1007, REASON_INVALID_ARGUMENT)
        turns = body.get("turns")
        self._remember(HistoryEntry("client_content", data=turns))
        if body.get("turnComplete"):
            self._answer_text(_prompt_text(turns), now)
        else:
            self._maybe_issue_handle(now)

    def _answer_text(self, prompt: str, now: float) -> None:
        """A typed turn: the first ``text_turns`` entry that matches, else ``default``."""
        if self._speech is not None:
            self._interrupt(now, barge_in=False)
        turn = self._with_declared_calls(self.scenario.text_turn_for(prompt), None)
        self._queue.appendleft(_SpeechRequest(
            "client", turn.reply, turn.spoken_transcript, None, turn,
            turn.reply_delay_ms / 1000.0, prompt_tokens=_text_tokens(prompt)))
        self._start_next(now)

    def _on_tool_response(self, body: dict[str, Any], now: float) -> None:
        responses = body.get("functionResponses") or []
        if not isinstance(responses, list):
            raise ProtocolViolation(
                1007, f"{REASON_INVALID_JSON} functionResponses must be a list.")
        assert self.session is not None
        for item in responses:
            if not isinstance(item, dict):
                raise ProtocolViolation(
                    1007, f"{REASON_INVALID_JSON} A function response must be an object.")
            call_id = item.get("id")
            response = item.get("response")
            scheduling = item.get("scheduling")
            if scheduling is None and isinstance(response, dict):
                # The Live API guide's example puts scheduling inside the response.
                scheduling = response.get("scheduling")
            scheduling = str(scheduling).upper() if scheduling is not None else None
            pending = self.session.pending_calls.pop(call_id, None) if call_id else None
            self.core.tool_responses.append(ToolResponseRecord(
                now, self.record.id, call_id, item.get("name"), response, scheduling,
                known=pending is not None))
            if pending is None:
                log.warning("connection %d: response for unknown call id %r ignored",
                            self.record.id, call_id)
                continue
            for call in reversed(self.core.tool_calls):
                if call.id == call_id:
                    call.response_t = now
                    break
            self._release(call_id, now)
            self._remember(HistoryEntry("tool_response", text=pending.name, turn=pending.turn,
                                        data={"id": call_id, "response": response}))
            effective = scheduling if scheduling in SCHEDULINGS else DEFAULT_SCHEDULING
            if scheduling is not None and scheduling not in SCHEDULINGS:
                log.warning("connection %d: unknown scheduling %r treated as %s",
                            self.record.id, scheduling, DEFAULT_SCHEDULING)
            if pending.follow_up:
                self._follow_up(pending.follow_up, effective, now)
            self._settle_group(pending, responded=True, scheduling=effective, now=now)
        self._maybe_issue_handle(now)

    def _release(self, call_id: str, now: float) -> None:
        """A synchronous call was answered or cancelled: its reply may go on."""
        speech = self._speech
        if speech is None or call_id not in speech.waiting_for:
            return
        speech.waiting_for.discard(call_id)
        if speech.waiting_for or not speech.steps:
            return
        # The reply resumes now, keeping its pace, rather than bursting out late steps.
        lag = now - speech.steps[0][0]
        if lag > 0:
            speech.steps = deque((due + lag, step) for due, step in speech.steps)

    def _settle_group(self, call: PendingCall, responded: bool, scheduling: str,
                      now: float) -> None:
        assert self.session is not None
        group = self.session.groups.get(call.group) if call.group is not None else None
        if group is None:
            return
        group.remaining.discard(call.id)
        if responded:
            group.responded = True
            group.scheduling = scheduling
        if not group.remaining:
            del self.session.groups[call.group]  # type: ignore[arg-type]
            if group.responded:
                self._follow_up(group.text, group.scheduling, now)

    def _follow_up(self, text: str, scheduling: str, now: float) -> None:
        if scheduling == "SILENT":
            return
        request = _SpeechRequest("follow_up", text, text)
        if scheduling == "INTERRUPT":
            if (self._utterance is not None
                    and self._family.interrupt_timing is InterruptTiming.AFTER_USER):
                # 3.8 waits until the user has finished, then speaks it first.
                request.urgent = True
                self._queue.appendleft(request)
                return
            if self._speech is not None:
                self._interrupt(now, barge_in=False)
            self._queue.appendleft(request)
            self._start_next(now, force=True)
        else:
            self._queue.append(request)
            self._start_next(now)

    def _cancel_calls(self, ids: list[str], now: float) -> None:
        assert self.session is not None
        cancelled = [call_id for call_id in ids if call_id in self.session.pending_calls]
        if not cancelled:
            return
        self._send({"toolCallCancellation": {"ids": cancelled}})
        for call_id in cancelled:
            call = self.session.pending_calls.pop(call_id)
            self._release(call_id, now)
            for record in reversed(self.core.tool_calls):
                if record.id == call_id:
                    record.cancelled_t = now
                    break
            self._settle_group(call, responded=False, scheduling=DEFAULT_SCHEDULING, now=now)
        self._remember(HistoryEntry("tool_cancellation", data={"ids": cancelled}))

    # Speech ---------------------------------------------------------------------------------

    def _idle(self) -> bool:
        return self._speech is None and not self._queue and self._utterance is None

    def _start_next(self, now: float, force: bool = False) -> None:
        if self._speech is not None or not self._queue or self.closing or self.stalled:
            return
        if self._utterance is not None and not force:
            return
        self._start_speech(self._queue.popleft(), now)

    def _start_speech(self, request: _SpeechRequest, now: float) -> None:
        scenario = self.scenario
        t0 = now + request.delay + self.core.take_delay()
        habits = self.core.take_turn_habits()
        turn = request.turn
        if turn is not None:
            habits |= {name for name, on in (("silent_turn", turn.silent),
                                             ("no_turn_complete", not turn.turn_complete),
                                             ("duplicate_calls", turn.duplicate_calls)) if on}
        if scenario.duplicate_calls:
            habits.add("duplicate_calls")
        if "silent_turn" in habits:
            # The silent stall: turnComplete and nothing else, calls included.
            request.text = request.transcript = ""
            request.turn = None
        record = ReplyRecord(request.utterance, self.record.id, request.kind, request.text, now)
        self.core.replies.append(record)
        pattern = request.turn.chunk_pattern if request.turn is not None else None
        offsets: list[float] = []
        chunks: list[memoryview | str]
        if self._audio_out:
            pcm = self.core.render(request.text) if request.text else b""
            view = memoryview(pcm)
            if pattern:
                chunks, offsets = _patterned(view, pattern)
            else:
                size = max(2, int(OUTPUT_RATE * SAMPLE_WIDTH * scenario.chunk_ms / 1000) // 2 * 2)
                chunks = [view[i:i + size] for i in range(0, len(pcm), size)]
        elif request.text:
            chunks = list(_split_text(request.text, max(1, len(request.text.split()) // 4)))
        else:
            chunks = []
        pieces = _split_text(request.transcript, len(chunks)) if chunks else []
        turn = request.turn
        call_ids: dict[int, str] = {}
        group = None
        if turn is not None:
            for index, spec in enumerate(turn.tool_calls):
                call_ids[index] = spec.id or self.core.new_call_id()
            if turn.follow_up and call_ids:
                assert self.session is not None
                group = max(self.session.groups, default=0) + 1
                self.session.groups[group] = FollowUpGroup(turn.follow_up, set(call_ids.values()))
        speech = _Speech(request, record, deque(), chunks, pieces, call_ids, group=group,
                         habits=habits)
        if request.kind == "reply":
            speech.injections = self.core.take_armed_injections()
        interval = scenario.chunk_interval
        if len(offsets) != len(chunks):
            offsets = [index * interval for index in range(len(chunks))]
        steps = speech.steps
        steps.append((t0, partial(self._begin, speech)))
        for index in range(len(chunks)):
            steps.append((t0 + offsets[index], partial(self._emit_chunk, speech, index)))
        last = t0 + (offsets[-1] if offsets else 0.0)
        if "silent_turn" not in habits:
            steps.append((last, partial(self._end_generation, speech)))
        steps.append((last + interval, partial(self._complete_turn, speech)))
        self._speech = speech

    def _placement_actions(self, speech: _Speech, placement: str, now: float) -> None:
        for inject in [item for item in speech.injections if item.when == placement]:
            speech.injections.remove(inject)
            self._send_raw(inject.payload)
        turn = speech.request.turn
        if turn is None:
            return
        for inject in turn.inject:
            if inject.when == placement:
                self._send_raw(inject.payload)
        specs = [(index, spec) for index, spec in enumerate(turn.tool_calls)
                 if spec.when == placement]
        if specs:
            self._issue_calls(speech, specs, now)

    def _issue_calls(self, speech: _Speech, specs: list[tuple[int, ToolCallSpec]],
                     now: float) -> None:
        assert self.session is not None
        turn = speech.request.turn
        assert turn is not None
        calls = []
        for index, spec in specs:
            call_id = speech.call_ids[index]
            calls.append({"id": call_id, "name": spec.name, "args": spec.args})
            speech.issued.add(call_id)
            on_barge_in = bool(turn.cancel and turn.cancel.on_barge_in
                               and _cancel_covers(turn, spec, call_id))
            blocking = self._is_synchronous(spec.name)
            self.session.pending_calls[call_id] = PendingCall(
                call_id, spec.name, speech.request.utterance, spec.follow_up, speech.group,
                on_barge_in, blocking)
            if blocking:
                speech.waiting_for.add(call_id)
            declared = spec.name in self._declared
            self.core.tool_calls.append(ToolCallRecord(
                now, self.record.id, speech.request.utterance, call_id, spec.name,
                dict(spec.args), declared))
            self._remember(HistoryEntry("tool_call", text=spec.name, turn=speech.request.utterance,
                                        data={"id": call_id, "args": spec.args}))
        self._send({"toolCall": {"functionCalls": calls}})
        if "duplicate_calls" in speech.habits:
            # Some models send the same calls again inside the model turn.
            self._send({"serverContent": {"modelTurn": {"parts": [
                {"functionCall": call} for call in calls]}}})
        if turn.cancel is not None and turn.cancel.after_ms is not None:
            ids = [call["id"] for call, (_, spec) in zip(calls, specs, strict=True)
                   if _cancel_covers(turn, spec, call["id"])]
            if ids:
                self._at(now + turn.cancel.after_ms / 1000.0, partial(self._cancel_later, ids))

    def _cancel_later(self, ids: list[str], now: float) -> None:
        self._cancel_calls(ids, now)
        self._maybe_issue_handle(now)

    def _begin(self, speech: _Speech, now: float) -> None:
        if self._resumption:
            self._send_not_resumable()
        self._placement_actions(speech, "before_reply", now)

    def _emit_chunk(self, speech: _Speech, index: int, now: float) -> None:
        chunk = speech.chunks[index]
        piece = speech.transcript_pieces[index] if index < len(speech.transcript_pieces) else ""
        mode = self.scenario.output_transcript_mode
        if isinstance(chunk, memoryview):
            part = {"inlineData": {"mimeType": OUTPUT_MIME,
                                   "data": base64.b64encode(chunk).decode("ascii")}}
            speech.record.add_audio(chunk)
        else:
            part = {"text": chunk}
        content: dict[str, Any] = {"modelTurn": {"parts": [part]}}
        transcript = None
        if self._output_transcription and self._audio_out:
            if mode == "first":
                transcript = speech.request.transcript if index == 0 else None
            else:
                transcript = piece or None
        if transcript and mode != "separate":
            content["outputTranscription"] = {"text": transcript}
        self._send({"serverContent": content})
        if transcript and mode == "separate":
            self._send({"serverContent": {"outputTranscription": {"text": transcript}}})
        speech.record.chunks += 1
        if speech.request.kind == "reply" and speech.request.utterance is not None:
            self._fire_due("reply", speech.request.utterance, index + 1, now)
        self._placement_actions(speech, f"after_chunk:{index + 1}", now)

    def _end_generation(self, speech: _Speech, now: float) -> None:
        if not speech.chunks and speech.request.transcript and self._output_transcription:
            self._send({"serverContent": {"outputTranscription": {
                "text": speech.request.transcript}}})
        # Calls and injections placed after a chunk the reply never reached (a short reply)
        # still go out with it, in chunk order.
        turn = speech.request.turn
        placements = {item.when for item in speech.injections}
        if turn is not None:
            placements |= {item.when for item in [*turn.tool_calls, *turn.inject]}
        if placements:
            unreached = sorted((chunk, when) for when in placements
                               if (chunk := placement_chunk(when)) is not None
                               and chunk > len(speech.chunks))
            for _, when in unreached:
                self._placement_actions(speech, when, now)
        self._placement_actions(speech, "after_reply", now)
        self._send({"serverContent": {"generationComplete": True}})

    def _complete_turn(self, speech: _Speech, now: float) -> None:
        frame: dict[str, Any] = {"serverContent": {"turnComplete": True}}
        if self.scenario.usage_metadata and self._family.sends_usage_metadata:
            frame["usageMetadata"] = self._usage(speech)
        self._model_turns += 1
        if "no_turn_complete" in speech.habits:
            frame = {key: value for key, value in frame.items() if key != "serverContent"}
        if frame:
            self._send(frame)
        speech.record.finished = True
        speech.record.end_t = now
        self._speech = None
        self._remember(HistoryEntry("model", text=speech.request.transcript,
                                    turn=speech.request.utterance))
        assert self.session is not None
        if self._resumption and self.session.pending_calls:
            self._send_not_resumable()
        self._maybe_issue_handle(now)
        self._start_next(now)

    def _interrupt(self, now: float, barge_in: bool) -> None:
        speech = self._speech
        assert speech is not None and self.session is not None
        self._speech = None
        speech.record.interrupted = True
        speech.record.finished = True
        speech.record.end_t = now
        self._send({"serverContent": {"interrupted": True}})
        self._send({"serverContent": {"turnComplete": True}})
        self._remember(HistoryEntry("model", text=speech.request.transcript,
                                    turn=speech.request.utterance, interrupted=True))
        # Calls the reply never issued leave its follow-up group.
        group = self.session.groups.get(speech.group) if speech.group is not None else None
        if group is not None:
            group.remaining -= set(speech.call_ids.values()) - speech.issued
            if not group.remaining:
                del self.session.groups[speech.group]  # type: ignore[arg-type]
                if group.responded:
                    self._follow_up(group.text, group.scheduling, now)
        if barge_in:
            # Replies waiting behind the interrupted speech are superseded by the new turn.
            self._queue = deque(req for req in self._queue if req.kind == "follow_up")
            ids = [call.id for call in self.session.pending_calls.values()
                   if call.cancel_on_barge_in]
            self._cancel_calls(ids, now)

    def _usage(self, speech: _Speech) -> dict[str, Any]:
        seconds = speech.record.audio_bytes / (OUTPUT_RATE * SAMPLE_WIDTH)
        response_tokens = max(1, round(seconds * AUDIO_TOKENS_PER_SECOND)) if self._audio_out \
            else max(1, len(speech.request.text.split()))
        prompt_tokens = speech.request.prompt_tokens
        for utterance in self.core.utterances:
            if (utterance.connection_id == self.record.id
                    and utterance.turn == speech.request.utterance):
                rate = utterance.rate or 16000
                prompt_tokens = max(1, round(len(utterance._buffer) / (rate * 2)
                                             * AUDIO_TOKENS_PER_SECOND))
        modality = "AUDIO" if self._audio_out else "TEXT"
        return {
            "promptTokenCount": prompt_tokens,
            "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_tokens + response_tokens,
            "responseTokensDetails": [{"modality": modality, "tokenCount": response_tokens}],
        }

    # Resumption -------------------------------------------------------------------------------

    def _remember(self, entry: HistoryEntry) -> None:
        assert self.session is not None
        self.session.remember(entry)

    def _send_not_resumable(self) -> None:
        if self.scenario.resumption_update_style == "proto3":
            self._send({"sessionResumptionUpdate": {}})
        else:
            self._send({"sessionResumptionUpdate": {"resumable": False}})

    def _maybe_issue_handle(self, now: float) -> None:
        if not self._resumption or self.session is None or not self._idle():
            return
        if self.session.pending_calls:
            return
        if self.session.signature == self._handle_signature:
            return
        self._issue_handle(now)

    def _issue_handle(self, now: float) -> None:
        assert self.session is not None
        if self.closing or self.finished or self.stalled:
            return
        handle = self.core.store_handle(self.session, self.record.id, now)
        self._handle_signature = self.session.signature
        update: dict[str, Any] = {"newHandle": handle, "resumable": True}
        if self._transparent and sends_transparent_index(self._family):
            update["lastConsumedClientMessageIndex"] = str(self._client_messages - 1)
        self._send({"sessionResumptionUpdate": update})


def _is_audio_input(message: dict[str, Any] | None) -> bool:
    realtime = (message or {}).get("realtimeInput")
    return isinstance(realtime, dict) and ("audio" in realtime or "mediaChunks" in realtime)


def decode_base64(text: str) -> bytes:
    """Proto3 JSON bytes: standard or URL-safe alphabet, padded or not (the SDK sends
    URL-safe)."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _cancel_covers(turn: Turn, spec: ToolCallSpec, call_id: str) -> bool:
    if turn.cancel is None:
        return False
    names = turn.cancel.calls
    return names is None or spec.name in names or call_id in names or (spec.id in names)


def _split_text(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` pieces at word boundaries; the pieces join back to it."""
    if parts <= 0:
        return []
    tokens = re.findall(r"\s*\S+\s*", text) or ([text] if text else [])
    if not tokens:
        return [""] * parts
    pieces = []
    for index in range(parts):
        start = index * len(tokens) // parts
        end = (index + 1) * len(tokens) // parts
        pieces.append("".join(tokens[start:end]))
    return pieces


def _prompt_text(turns: Any) -> str:
    """The text of a client_content's last user turn (what a scenario's ``match`` sees)."""
    items = turns if isinstance(turns, list) else [turns]
    texts = []
    for item in items:
        if not isinstance(item, dict) or item.get("role", "user") != "user":
            continue
        texts = [part["text"] for part in item.get("parts") or []
                 if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return " ".join(texts)


def _text_tokens(text: str) -> int:
    """About four characters a token, the Gemini API's documented rule of thumb."""
    return max(1, -(-len(text) // 4)) if text else 0


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes


def fit_close_reason(reason: str) -> str:
    """``reason`` cut (at a character boundary) to what a close frame can carry."""
    data = reason.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")


def _patterned(
    pcm: memoryview, pattern: list[tuple[float, float]]
) -> tuple[list[memoryview | str], list[float]]:
    """Cut reply audio by a turn's ``chunk_pattern``: the chunks and their send offsets (s)."""
    chunks: list[memoryview | str] = []
    offsets: list[float] = []
    position = 0
    t = 0.0
    index = 0
    while position < len(pcm):
        chunk_ms, gap_ms = pattern[index % len(pattern)]
        size = max(2, int(OUTPUT_RATE * SAMPLE_WIDTH * chunk_ms / 1000) // 2 * 2)
        chunks.append(pcm[position:position + size])
        offsets.append(t)
        position += size
        t += gap_ms / 1000.0
        index += 1
    return chunks, offsets

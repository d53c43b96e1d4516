"""The conversation core: every decision the daemon makes, with no I/O.

Feed it events (:mod:`edgevoice.core.events`) with :meth:`Conversation.handle`; it returns
the actions to take. It owns:

- the utterance ledger: an utterance's audio is kept from the press until the server has
  answered it, so a connection lost at any moment re-sends the whole utterance (activity
  start, every sample, activity end) exactly once on the next connection;
- the send order: utterances go out strictly one after another, each bracketed by
  activityStart/activityEnd, whatever order presses, releases and audio arrive in;
- barge-in, reply tracking and playback control;
- the connection lifetime: resumption handles, reconnect backoff, GoAway switch at the next
  idle moment, a server that stops answering, a handle the server rejects;
- tool calls: which may still be answered by id, which must reach the model as text;
- the device status shown to the user.

Time is passed in with every event; :meth:`next_deadline` tells the caller when to send a
:class:`Tick`.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass, field

from edgevoice.core.audio_history import BYTES_PER_SAMPLE, AudioHistory
from edgevoice.core.backoff import Backoff
from edgevoice.core.events import (
    Action,
    CancelTools,
    Captured,
    CloseLink,
    Connect,
    DeviceProblem,
    DeviceState,
    Earcon,
    EndOfReply,
    Event,
    GenerationComplete,
    GoAway,
    Interrupted,
    LinkDown,
    LinkFailed,
    LinkUp,
    Log,
    NetworkChanged,
    PersistHandle,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    ResumptionUpdate,
    RunTool,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    ServerAudio,
    ServerProblem,
    Status,
    StopPlayback,
    Tick,
    ToolCallsCancelled,
    ToolCallsReceived,
    ToolResult,
    Transcript,
    TurnComplete,
)

# A connection that fails with this code soon after a resume cannot continue that session
# (context exhausted, bad setup): retrying the same handle would loop forever.
CLOSE_INVALID_RESUME = 1007
RESUME_FAILURE_WINDOW_S = 10.0
# Largest audio blob sent at once when (re)sending recorded audio.
MAX_BLOB_SAMPLES = 16000
# Exchanges kept to brief a fresh session when a resume is impossible.
RECENT_EXCHANGES = 8
# After a tool result the model should speak about, the device is not idle until the
# model's next turn ends or this long has passed (it may choose to say nothing).
FOLLOW_UP_WAIT_S = 10.0
# A connection that dies sooner than this after coming up counts as a failed attempt, so
# a server that accepts and then drops us at once is retried with backoff, not in a loop.
STABLE_LINK_S = 5.0
# Close codes that blame what the client sent (unsupported data, invalid argument, policy,
# too big). An utterance whose sending ended in one of these this many times is given up:
# it may be what breaks the session. Drops and server resets never count against it.
CLIENT_FAULT_CODES = frozenset({1003, 1007, 1008, 1009})
MAX_REJECTIONS = 3


@dataclass(frozen=True)
class ConversationConfig:
    rate: int = 16000
    period_samples: int = 320
    preroll_samples: int = 4800
    max_utterance_samples: int = 60 * 16000
    offline_max_age_s: float = 30.0
    reply_timeout_s: float = 15.0
    # Wait at most this long past a release for the capture period that holds it.
    release_grace_s: float = 0.25
    # Switch connections this long before a GoAway deadline even if not idle.
    goaway_margin_s: float = 2.0


@dataclass
class Utterance:
    number: int
    start: int
    pressed_t: float
    end: int | None = None
    released_t: float | None = None
    audio: bytearray = field(default_factory=bytearray)
    # Per connection: where it was started, how many samples went out, whether it ended.
    link: int | None = None
    sent_samples: int = 0
    end_sent: bool = False
    rejections: int = 0

    @property
    def recorded_end(self) -> int:
        return self.start + len(self.audio) // BYTES_PER_SAMPLE

    @property
    def complete(self) -> bool:
        return self.end is not None and self.recorded_end >= self.end

    def duration_s(self, rate: int) -> float:
        return (len(self.audio) // BYTES_PER_SAMPLE) / rate


class Conversation:
    """See the module docstring. Not thread-safe: one owner (the event loop) calls it."""

    def __init__(
        self,
        config: ConversationConfig | None = None,
        backoff: Backoff | None = None,
        handle: str | None = None,
    ) -> None:
        self.config = config or ConversationConfig()
        self._backoff = backoff or Backoff()
        self._history = AudioHistory(self.config.preroll_samples + 4 * self.config.period_samples)
        self.resume_handle = handle

        self.link = 0
        self.link_up = False
        self._connecting = False
        self._link_resumed = False
        self._link_up_t = 0.0
        self._connect_handle: str | None = None
        self._failures = 0
        self._young_deaths = 0
        self._retry_at: float | None = None
        self._ever_up = False
        self._offline_announced = False

        self._next_utterance = 1
        self._pending: deque[Utterance] = deque()
        # Utterances still taking audio: the one whose button is down, and one released
        # whose last capture period has not arrived yet.
        self._receiving: list[Utterance] = []
        self._last_utterance_end = 0
        self._release_deadline: float | None = None

        # The server's current turn: open from its first output to turnComplete. A turn
        # the user barged in on is "stale": its remaining audio is dropped and its
        # turnComplete answers nothing. A turn answers at most one utterance.
        self._generating = False
        self._turn_open = False
        self._turn_answered = False
        self._stale_turn = False
        self._playing = False
        self._last_server_t = 0.0
        self._now = 0.0

        self._tools: dict[str, int] = {}
        self._follow_up_until: float | None = None
        # The turn open when the result went back is not the follow-up.
        self._follow_up_skips_turn = False
        self._undelivered: list[ToolResult] = []
        self._user_text: list[str] = []
        self._model_text: list[str] = []
        self._uncommitted: list[str] = []
        self._recent: deque[str] = deque(maxlen=RECENT_EXCHANGES)

        self._goaway_switch_at: float | None = None
        self._device_problems: dict[str, str] = {}
        self._status: Status | None = None
        self._stopping = False

    # -- public -------------------------------------------------------------------------

    def start(self, t: float) -> list[Action]:
        """The daemon is up: open the first connection."""
        self._now = t
        actions: list[Action] = []
        self._connect(actions, t)
        self._update_status(actions)
        return actions

    def handle(self, event: Event) -> list[Action]:
        actions: list[Action] = []
        self._now = event.t
        if self.link_up and getattr(event, "link", None) == self.link:
            self._last_server_t = event.t
        method = self._handlers.get(type(event))
        if method is not None:
            method(self, event, actions)
        self._maybe_switch_after_goaway(actions, event.t)
        self._update_status(actions)
        return actions

    def stop(self, t: float) -> list[Action]:
        """Shutting down: end an open utterance so the server is not left mid-activity."""
        self._stopping = True
        self._now = t
        actions: list[Action] = []
        for utterance in list(self._receiving):
            utterance.end = utterance.recorded_end
            utterance.released_t = utterance.released_t or t
            self._finish_recording(utterance, actions)
        self._pump(actions)
        self._retry_at = None
        return actions

    def new_session(self, t: float, why: str) -> list[Action]:
        """Leave this session for a fresh one (the session's settings changed); the recent
        exchanges are told to the new session so the conversation carries on."""
        self._now = t
        actions: list[Action] = []
        if self.link_up or self._connecting:
            actions.append(CloseLink(self.link, why))
        self._forget_handle(actions, why)
        if self._generating:
            actions.append(StopPlayback())
            self._playing = False
        self.link_up = False
        self._reset_turn()
        self._retry_at = None
        self._connect(actions, t)
        self._update_status(actions)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [self._retry_at, self._release_deadline, self._goaway_switch_at, self._follow_up_until]
        if self.link_up and self._reply_owed():
            deadlines.append(self._last_server_t + self.config.reply_timeout_s)
        if not self.link_up:
            deadlines += [
                u.released_t + self.config.offline_max_age_s
                for u in self._pending
                if u.released_t is not None
            ]
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    @property
    def reconnect_at(self) -> float | None:
        """When the next connection attempt is due (None: none is waiting)."""
        return self._retry_at

    @property
    def status(self) -> Status | None:
        return self._status

    @property
    def idle(self) -> bool:
        """Nothing in flight: no utterance, no reply being generated or played, no tool."""
        return (
            not self._receiving
            and not self._pending
            and not self._generating
            and not self._turn_open
            and not self._playing
            and not self._tools
            and not self._undelivered
            and self._follow_up_until is None
        )

    @property
    def capturing(self) -> bool:
        """An utterance is taking audio: every period is wanted at once."""
        return bool(self._receiving)

    @property
    def pending_utterances(self) -> int:
        return len(self._pending)

    # -- hardware events ----------------------------------------------------------------

    @property
    def _held(self) -> Utterance | None:
        """The utterance whose button is down."""
        if self._receiving and self._receiving[-1].end is None:
            return self._receiving[-1]
        return None

    def _on_pressed(self, event: Pressed, actions: list[Action]) -> None:
        if self._held is not None or self._stopping:
            return
        if self._generating or self._playing:
            self._barge_in(event.t, actions)
        start = max(
            event.position - self.config.preroll_samples,
            self._history.start,
            self._last_utterance_end,
        )
        start = min(start, event.position)
        utterance = Utterance(number=self._next_utterance, start=start, pressed_t=event.t)
        self._next_utterance += 1
        utterance.audio += self._history.slice(start, self._history.end)
        self._receiving.append(utterance)
        self._pending.append(utterance)
        actions.append(PlayEarcon(Earcon.LISTENING))
        self._pump(actions)

    def _on_released(self, event: Released, actions: list[Action]) -> None:
        utterance = self._held
        if utterance is None:
            return
        # A release is stamped at or after the newest captured sample, so nothing past it
        # has been sent; clamp anyway so a bad stamp cannot make a negative utterance.
        utterance.end = max(event.position, utterance.start)
        utterance.released_t = event.t
        self._last_utterance_end = utterance.end
        if utterance.complete:
            self._finish_recording(utterance, actions)
        else:
            self._release_deadline = event.t + self.config.release_grace_s
        self._pump(actions)

    def _on_captured(self, event: Captured, actions: list[Action]) -> None:
        self._history.append(event.position, event.pcm)
        if not self._receiving:
            return
        end = event.position + len(event.pcm) // BYTES_PER_SAMPLE
        for utterance in list(self._receiving):
            take_from = max(utterance.recorded_end, event.position)
            take_to = end if utterance.end is None else min(end, utterance.end)
            limit = utterance.start + self.config.max_utterance_samples
            if take_to > limit:
                take_to = limit
                if utterance.end is None:
                    actions.append(Log(logging.WARNING, "utterance reached the maximum length; ending it"))
                    utterance.end = limit
                    utterance.released_t = event.t
                    self._last_utterance_end = limit
            if take_to > take_from:
                offset = (take_from - event.position) * BYTES_PER_SAMPLE
                utterance.audio += event.pcm[offset : offset + (take_to - take_from) * BYTES_PER_SAMPLE]
            if utterance.complete:
                self._finish_recording(utterance, actions)
        self._pump(actions, captured_t=event.t)

    def _on_playback_idle(self, event: PlaybackIdle, actions: list[Action]) -> None:
        self._playing = False

    def _on_network_changed(self, event: NetworkChanged, actions: list[Action]) -> None:
        if self._retry_at is not None and not self._stopping:
            # Waiting out a backoff while the network may just have come back: try now.
            self._retry_at = None
            actions.append(Log(logging.INFO, "the network changed: reconnecting now"))
            self._connect(actions, event.t)

    def _on_device_problem(self, event: DeviceProblem, actions: list[Action]) -> None:
        if event.problem is None:
            if self._device_problems.pop(event.device, None) is not None:
                actions.append(Log(logging.INFO, f"the {event.device} is back"))
        elif event.device not in self._device_problems:
            self._device_problems[event.device] = event.problem
            actions.append(Log(logging.ERROR, event.problem))
            actions.append(PlayEarcon(Earcon.ERROR))

    def _on_tick(self, event: Tick, actions: list[Action]) -> None:
        t = event.t
        if self._release_deadline is not None and t >= self._release_deadline:
            self._release_deadline = None
            for utterance in list(self._receiving):
                if utterance.end is not None:
                    # The capture period holding the release never came (device stalled):
                    # end with what we have rather than keep the server waiting.
                    utterance.end = utterance.recorded_end
                    self._finish_recording(utterance, actions)
            self._pump(actions)
        if self._retry_at is not None and t >= self._retry_at:
            self._retry_at = None
            self._connect(actions, t)
        if self._follow_up_until is not None and t >= self._follow_up_until:
            self._follow_up_until = None
        if self.link_up and self._reply_owed() and t >= self._last_server_t + self.config.reply_timeout_s:
            actions.append(CloseLink(self.link, "the server stopped answering"))
            self._link_lost(actions, t, None, "the server stopped answering")
        if not self.link_up:
            self._expire_offline_utterances(actions, t)

    # -- connection events --------------------------------------------------------------

    def _on_link_up(self, event: LinkUp, actions: list[Action]) -> None:
        if event.link != self.link or not self._connecting:
            return
        self._connecting = False
        self.link_up = True
        self._link_resumed = event.resumed
        self._link_up_t = event.t
        self._last_server_t = event.t
        self._goaway_switch_at = None
        if self._offline_announced:
            actions.append(PlayEarcon(Earcon.RECONNECTED))
            self._offline_announced = False
        actions.append(
            Log(logging.INFO, "connected" + (" (session resumed)" if event.resumed else " (new session)"))
        )
        self._brief_new_link(actions, resumed=event.resumed)
        for utterance in list(self._pending):
            utterance.link = None
            utterance.sent_samples = 0
            utterance.end_sent = False
            if utterance.rejections >= MAX_REJECTIONS and utterance not in self._receiving:
                self._pending.remove(utterance)
                actions.append(PlayEarcon(Earcon.ERROR))
                actions.append(
                    Log(
                        logging.ERROR,
                        f"gave up on utterance {utterance.number}: "
                        f"the server refused it {utterance.rejections} times",
                    )
                )
        self._pump(actions)
        self._ever_up = True

    def _on_link_down(self, event: LinkDown, actions: list[Action]) -> None:
        if event.link != self.link:
            return
        if event.code in CLIENT_FAULT_CODES:
            for utterance in self._pending:
                if utterance.link == event.link:
                    utterance.rejections += 1
        if (
            self._link_resumed
            and event.code == CLOSE_INVALID_RESUME
            and event.t - self._link_up_t < RESUME_FAILURE_WINDOW_S
        ):
            self._forget_handle(actions, f"the resumed session ended at once ({event.code})")
        self._link_lost(actions, event.t, event.code, event.reason)

    def _on_link_failed(self, event: LinkFailed, actions: list[Action]) -> None:
        if event.link != self.link or not self._connecting:
            return
        self._connecting = False
        self.link_up = False
        if self._connect_handle is not None and event.code == CLOSE_INVALID_RESUME:
            self._forget_handle(actions, f"the server refused to resume ({event.code}: {event.reason})")
            self._connect(actions, event.t)
            return
        self._failures += 1
        actions.append(
            Log(
                logging.WARNING,
                f"connection attempt {self._failures} failed: {event.reason}",
                {"code": event.code},
            )
        )
        if not self._offline_announced and not self._stopping:
            actions.append(PlayEarcon(Earcon.OFFLINE))
            self._offline_announced = True
        if not self._stopping:
            self._retry_at = event.t + self._backoff.delay(self._failures)

    def _on_server_audio(self, event: ServerAudio, actions: list[Action]) -> None:
        if not self._current(event) or self._stale_turn:
            return
        self._turn_open = True
        self._generating = True
        self._playing = True
        actions.append(PlayAudio(event.pcm, event.t))

    def _on_generation_complete(self, event: GenerationComplete, actions: list[Action]) -> None:
        if not self._current(event) or self._stale_turn:
            return
        if self._generating:
            actions.append(EndOfReply())
        self._generating = False
        self._answer_for_turn()

    def _on_turn_complete(self, event: TurnComplete, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if self._stale_turn:
            self._stale_turn = False
            self._model_text.clear()
        else:
            if self._generating:
                actions.append(EndOfReply())
            self._generating = False
            self._answer_for_turn()
        self._turn_open = False
        self._turn_answered = False
        if self._follow_up_skips_turn:
            self._follow_up_skips_turn = False
        elif self._follow_up_until is not None and not self._tools:
            self._follow_up_until = None

    def _on_interrupted(self, event: Interrupted, actions: list[Action]) -> None:
        if not self._current(event) or self._stale_turn:
            return
        # The server cut its own answer short: stop at once; the user heard part of it.
        if self._generating or self._playing:
            actions.append(StopPlayback())
        self._generating = False
        self._playing = False
        self._answer_for_turn()

    def _on_transcript(self, event: Transcript, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if event.role == "user":
            self._user_text.append(event.text)
        elif not self._stale_turn:
            self._turn_open = True
            self._model_text.append(event.text)

    def _on_resumption_update(self, event: ResumptionUpdate, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if event.resumable and event.handle:
            self.resume_handle = event.handle
            # Everything the server consumed so far is in this snapshot.
            self._uncommitted.clear()
            actions.append(PersistHandle(event.handle))

    def _on_go_away(self, event: GoAway, actions: list[Action]) -> None:
        if not self._current(event):
            return
        margin = min(self.config.goaway_margin_s, event.time_left_s / 2)
        self._goaway_switch_at = event.t + max(0.0, event.time_left_s - margin)
        actions.append(Log(logging.INFO, f"server will close this connection in {event.time_left_s:g} s"))

    def _on_tool_calls(self, event: ToolCallsReceived, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if not self._stale_turn:
            self._turn_open = True
        for call in event.calls:
            if call.id in self._tools:
                continue
            self._tools[call.id] = event.link
            actions.append(RunTool(call))

    def _on_tool_calls_cancelled(self, event: ToolCallsCancelled, actions: list[Action]) -> None:
        if not self._current(event):
            return
        ids = tuple(i for i in event.ids if i in self._tools)
        for call_id in ids:
            del self._tools[call_id]
        if ids:
            actions.append(CancelTools(ids))

    def _on_tool_result(self, event: ToolResult, actions: list[Action]) -> None:
        issued_on = self._tools.pop(event.id, None)
        if issued_on is None:
            return  # cancelled meanwhile: no response is owed
        if self.link_up and issued_on == self.link:
            actions.append(SendToolResponses(self.link, (event,)))
            self._uncommitted.append(_describe_result(event))
            if event.scheduling != "SILENT":
                self._follow_up_until = self._now + FOLLOW_UP_WAIT_S
                self._follow_up_skips_turn = self._turn_open
        else:
            # A new connection ignores a call id it never issued: tell it in words.
            self._undelivered.append(event)
            if self.link_up:
                self._deliver_results_as_text(actions)

    def _on_server_problem(self, event: ServerProblem, actions: list[Action]) -> None:
        actions.append(Log(logging.WARNING, f"ignored a server message: {event.description}"))

    # -- internals ----------------------------------------------------------------------

    def _current(self, event: Event) -> bool:
        return self.link_up and getattr(event, "link", None) == self.link

    def _connect(self, actions: list[Action], t: float) -> None:
        if self._stopping:
            return
        self.link += 1
        self.link_up = False
        self._connecting = True
        self._connect_handle = self.resume_handle
        actions.append(Connect(self.link, self.resume_handle))

    def _forget_handle(self, actions: list[Action], why: str) -> None:
        actions.append(Log(logging.WARNING, f"starting a fresh session: {why}"))
        self.resume_handle = None
        actions.append(PersistHandle(None))

    def _link_lost(self, actions: list[Action], t: float, code: int | None, reason: str) -> None:
        self.link_up = False
        self._goaway_switch_at = None
        if t - self._link_up_t < STABLE_LINK_S:
            self._young_deaths += 1
        else:
            self._young_deaths = 0
        self._failures = 0
        actions.append(Log(logging.WARNING, f"connection lost: {reason}", {"code": code}))
        if self._generating:
            # The reply was cut off; the utterance stays in the ledger and is asked again,
            # so drop the partial answer rather than play half of it and then all of it.
            actions.append(StopPlayback())
            self._playing = False
        self._reset_turn()
        self._user_text.clear()
        self._model_text.clear()
        # First retry at once; a connection that keeps dying young is retried ever later.
        delay = self._backoff.delay(self._young_deaths - 1)
        if delay > 0 and not self._stopping:
            self._retry_at = t + delay
        else:
            self._connect(actions, t)

    def _brief_new_link(self, actions: list[Action], *, resumed: bool) -> None:
        """Tell a new connection what it cannot know: exchanges its snapshot lacks (or,
        for a fresh session, the recent conversation) and tool results it never asked for."""
        if resumed:
            lines = list(self._uncommitted)
        elif self._ever_up:
            lines = list(self._recent)
        else:
            lines = []
        self._uncommitted = list(lines)
        if lines:
            actions.append(
                SendContext(
                    self.link,
                    "(The connection was interrupted. For context, earlier in this conversation:)\n"
                    + "\n".join(lines),
                    turn_complete=False,
                )
            )
        self._deliver_results_as_text(actions)

    def _deliver_results_as_text(self, actions: list[Action]) -> None:
        if not self._undelivered:
            return
        results, self._undelivered = self._undelivered, []
        speak = any(r.scheduling != "SILENT" for r in results) and not self._pending
        text = "\n".join(_describe_result(r) for r in results)
        actions.append(
            SendContext(
                self.link,
                "(Results of actions you started before the connection was interrupted:)\n" + text,
                turn_complete=speak,
            )
        )
        self._uncommitted.append(text)

    def _pump(self, actions: list[Action], *, captured_t: float | None = None) -> None:
        """Send what can be sent, in order: each utterance fully bracketed before the next."""
        if not self.link_up:
            return
        for utterance in self._pending:
            if utterance.end_sent:
                continue
            if utterance.link != self.link:
                utterance.link = self.link
                utterance.sent_samples = 0
                actions.append(SendActivityStart(self.link, utterance.number))
            recorded = utterance.recorded_end - utterance.start
            while utterance.sent_samples < recorded:
                upto = min(recorded, utterance.sent_samples + MAX_BLOB_SAMPLES)
                blob = bytes(
                    utterance.audio[utterance.sent_samples * BYTES_PER_SAMPLE : upto * BYTES_PER_SAMPLE]
                )
                utterance.sent_samples = upto
                actions.append(SendAudio(self.link, blob, captured_t if upto == recorded else None))
            if utterance in self._receiving:
                return
            utterance.end_sent = True
            # The reply is owed from now: the silence before it is not the server's fault.
            self._last_server_t = max(self._last_server_t, self._now)
            actions.append(SendActivityEnd(self.link, utterance.number, utterance.released_t))

    def _finish_recording(self, utterance: Utterance, actions: list[Action]) -> None:
        self._trim_to_end(utterance)
        self._receiving.remove(utterance)
        if not any(u.end is not None for u in self._receiving):
            self._release_deadline = None
        if not utterance.audio and utterance.link is None:
            # A press too short to hold a sample, never announced to the server: nothing to ask.
            self._pending.remove(utterance)
            return
        actions.append(PlayEarcon(Earcon.SENT))

    @staticmethod
    def _trim_to_end(utterance: Utterance) -> None:
        if utterance.end is not None and utterance.recorded_end > utterance.end:
            del utterance.audio[(utterance.end - utterance.start) * BYTES_PER_SAMPLE :]

    def _barge_in(self, t: float, actions: list[Action]) -> None:
        actions.append(StopPlayback(pressed_t=t))
        self._playing = False
        self._generating = False
        if self._turn_open:
            # The user heard (part of) the answer and chose to move on: it counts as
            # answered. The rest of this turn may already be on its way: drop it, and do
            # not let its turnComplete answer the utterance that is starting now.
            self._answer_for_turn()
            self._stale_turn = True
        actions.append(Log(logging.INFO, "barge-in: the user interrupted the answer"))

    def _answer_for_turn(self) -> None:
        """The server's current turn answers the oldest fully sent utterance (once)."""
        if self._turn_answered:
            return
        self._turn_answered = True
        for utterance in self._pending:
            if utterance.end_sent and utterance.link == self.link:
                self._pending.remove(utterance)
            break
        self._finish_exchange()

    def _reset_turn(self) -> None:
        self._generating = False
        self._turn_open = False
        self._turn_answered = False
        self._stale_turn = False

    def _finish_exchange(self) -> None:
        if not self._user_text and not self._model_text:
            return
        line = f"User: {' '.join(self._user_text).strip()}\nAssistant: {''.join(self._model_text).strip()}"
        self._user_text.clear()
        self._model_text.clear()
        self._uncommitted.append(line)
        self._recent.append(line)

    def _reply_owed(self) -> bool:
        if self._generating or self._stale_turn:
            return True
        return any(u.end_sent and u.link == self.link for u in self._pending)

    def _expire_offline_utterances(self, actions: list[Action], t: float) -> None:
        expired = [
            u
            for u in self._pending
            if u.released_t is not None and t - u.released_t >= self.config.offline_max_age_s
        ]
        for utterance in expired:
            self._pending.remove(utterance)
            actions.append(
                Log(
                    logging.WARNING,
                    f"dropped utterance {utterance.number} "
                    f"({utterance.duration_s(self.config.rate):.1f} s): offline for too long",
                )
            )
        if expired:
            actions.append(PlayEarcon(Earcon.OFFLINE))

    def _maybe_switch_after_goaway(self, actions: list[Action], t: float) -> None:
        if self._goaway_switch_at is None or not self.link_up:
            return
        # Quiet: nothing asked or being answered, and the newest handle covers everything
        # said (so the new connection resumes with the whole conversation).
        quiet = not self._receiving and not self._pending and not self._turn_open and not self._uncommitted
        if quiet or t >= self._goaway_switch_at:
            actions.append(CloseLink(self.link, "switching connection before the server's GoAway deadline"))
            self.link_up = False
            self._goaway_switch_at = None
            if self._generating:
                actions.append(StopPlayback())
                self._playing = False
            self._reset_turn()
            self._connect(actions, t)

    def _update_status(self, actions: list[Action]) -> None:
        status = self._derive_status()
        if status != self._status:
            self._status = status
            actions.append(status)

    def _derive_status(self) -> Status:
        if self._device_problems:
            return Status(DeviceState.ERROR, "; ".join(self._device_problems.values()))
        offline_detail = retrying = ""
        if not self.link_up:
            if self._failures:
                retrying = f"retrying (attempt {self._failures + 1})"
                # Listening or thinking while offline say so; the offline state says it once.
                offline_detail = f"offline, {retrying}"
            else:
                offline_detail = "connecting" if not self._ever_up else "reconnecting"
        if self._held is not None:
            return Status(DeviceState.LISTENING, offline_detail)
        if self._failures and not self.link_up:
            return Status(DeviceState.OFFLINE, retrying)
        if self._generating or self._playing:
            return Status(DeviceState.SPEAKING)
        if self._pending:
            return Status(DeviceState.THINKING, offline_detail)
        if not self.link_up:
            return Status(DeviceState.OFFLINE, offline_detail)
        return Status(DeviceState.IDLE)

    _handlers = {
        Pressed: _on_pressed,
        Released: _on_released,
        Captured: _on_captured,
        PlaybackIdle: _on_playback_idle,
        DeviceProblem: _on_device_problem,
        NetworkChanged: _on_network_changed,
        Tick: _on_tick,
        LinkUp: _on_link_up,
        LinkDown: _on_link_down,
        LinkFailed: _on_link_failed,
        ServerAudio: _on_server_audio,
        GenerationComplete: _on_generation_complete,
        TurnComplete: _on_turn_complete,
        Interrupted: _on_interrupted,
        Transcript: _on_transcript,
        ResumptionUpdate: _on_resumption_update,
        GoAway: _on_go_away,
        ToolCallsReceived: _on_tool_calls,
        ToolCallsCancelled: _on_tool_calls_cancelled,
        ToolResult: _on_tool_result,
        ServerProblem: _on_server_problem,
    }


def _describe_result(result: ToolResult) -> str:
    return f"Result of {result.name} (call {result.id}): {json.dumps(result.response, sort_keys=True)}"

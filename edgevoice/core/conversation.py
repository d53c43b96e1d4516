"""The conversation core: every decision the daemon makes, with no I/O.

Feed it events (:mod:`edgevoice.core.events`) with :meth:`Conversation.handle`; it returns
the actions to take. It composes three state machines, each with its states and legal
moves in one table:

- the connection (:mod:`edgevoice.core.connection`): CONNECTING, UP, SWITCHING after a
  GoAway, BACKING_OFF, STOPPED; one way to leave a connection, with backoff for any
  connection that dies young;
- the server's turn (:mod:`edgevoice.core.turn`): IDLE, OPEN, GENERATING, GENERATED,
  PLAYING_OUT, EMPTY, STALE; barge-in, reply tracking and playback control;
- the utterance ledger (:mod:`edgevoice.core.ledger`): each utterance QUEUED, STREAMING,
  AWAITING_ANSWER until answered or given up; kept across drops and, through
  :class:`PersistLedger`, across restarts; sent one at a time, each after the previous
  one is answered.

It also decides about tool calls (which may still be answered by id, which must reach the
model as text, which arrived twice, which a question asked again already ran: those get
the stored result, so a side effect happens once per question) and the device status shown
to the user. Why a link went down picks how long to wait before the next attempt (a refused
quota, key or model waits minutes or hours, says so, and a press meanwhile is kept with an
error earcon; :meth:`Conversation.retry_now` ends that wait when the user changed something).

An event that does not fit the state it arrives in is a decision, not a crash: the machine
refuses it before changing anything (:class:`NotInState`), and the core logs what it
ignored. A bug while handling an event leaves the core in a defined state: the connection
is left (its half-sent state is dropped), the ledger kept, and the conversation resumes on
the next connection.

Time is passed in with every event; :meth:`next_deadline` tells the caller when to send a
:class:`Tick`.
"""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass

from edgevoice.core.backoff import Backoff
from edgevoice.core.calls import Calls, PendingCall, RanCall, already_done, call_key
from edgevoice.core.connection import Connection, LinkState
from edgevoice.core.events import (
    Action,
    CancelTools,
    Captured,
    CloseLink,
    Connect,
    DeviceProblem,
    DeviceState,
    DownCause,
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
    PersistLedger,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    ResumptionUpdate,
    RunTool,
    SavedLedger,
    SendContext,
    SendToolResponses,
    ServerAudio,
    ServerProblem,
    Status,
    StopPlayback,
    Tick,
    ToolCallsCancelled,
    ToolCallsReceived,
    ToolDeclarationsChanged,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.core.exchanges import Exchanges
from edgevoice.core.families import GEMINI_3_8, ModelFamily
from edgevoice.core.handle_saves import HandleSaves
from edgevoice.core.ledger import Ledger, Utterance, UtteranceTrigger
from edgevoice.core.machine import NotInState
from edgevoice.core.turn import ANSWERING, Turn, TurnState, TurnTrigger

# A connection that fails with this code soon after a resume cannot continue that session
# (context exhausted, bad setup): retrying the same handle would loop forever.
CLOSE_INVALID_RESUME = 1007
RESUME_FAILURE_WINDOW_S = 10.0
# Close codes that blame what the client sent (unsupported data, invalid argument, policy,
# too big). An utterance whose sending ended in one of these this many times is given up:
# it may be what breaks the session. Drops and server resets never count against it.
CLIENT_FAULT_CODES = frozenset({1003, 1007, 1008, 1009})
MAX_REJECTIONS = 3
# A turn that answered nothing at all is asked again this many times, then given up.
SILENT_TURN_RETRIES = 1
# Events that never change what the server holds of the conversation: a resumption handle
# that follows only these names the same conversation as the one saved before it. (Audio
# captured between utterances only feeds the pre-roll; a press or release says more.)
UNCHANGING_EVENTS = (Tick, ResumptionUpdate, PlaybackIdle, Captured)


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
    # A turn whose generationComplete (or early turnComplete) came is over when nothing more
    # of it arrives for this long, turnComplete or not.
    turn_end_wait_s: float = 5.0
    # A turnComplete with nothing in it: wait this long for late audio before calling the
    # turn silent.
    empty_turn_wait_s: float = 1.5
    # A function call with no result after this long is answered as failed.
    tool_deadline_s: float = 30.0


class Conversation:
    """See the module docstring. Not thread-safe: one owner (the event loop) calls it."""

    def __init__(
        self,
        config: ConversationConfig | None = None,
        backoff: Backoff | None = None,
        handle: str | None = None,
        *,
        family: ModelFamily = GEMINI_3_8,
        ledger: SavedLedger | None = None,
    ) -> None:
        self.config = config or ConversationConfig()
        self.family = family
        cfg = self.config
        self._conn = Connection(backoff or Backoff(), handle)
        self._turn = Turn()
        self._ledger = Ledger(
            cfg.preroll_samples + 4 * cfg.period_samples, cfg.max_utterance_samples, cfg.preroll_samples
        )
        self._restored = ledger
        self._release_deadline: float | None = None
        self._last_server_t = 0.0
        self._now = 0.0

        self._calls = Calls(cfg.tool_deadline_s)
        self._said = Exchanges()

        # The functions offered changed: a fresh session at the next quiet moment, saying why.
        self._redeclare_why: str | None = None
        self._device_problems: dict[str, str] = {}
        self._status: Status | None = None
        self._saved: SavedLedger = SavedLedger()
        self._ledger_changed = False
        self._handle_saves = HandleSaves()

    # -- public -------------------------------------------------------------------------

    @property
    def link(self) -> int:
        """The number of the current (or last) connection."""
        return self._conn.link

    @property
    def link_up(self) -> bool:
        return self._conn.up

    @property
    def connection_state(self) -> LinkState:
        return self._conn.state

    @property
    def turn_state(self) -> TurnState:
        return self._turn.state

    @property
    def resume_handle(self) -> str | None:
        return self._conn.handle

    @resume_handle.setter
    def resume_handle(self, handle: str | None) -> None:
        self._conn.handle = handle

    def start(self, t: float) -> list[Action]:
        """The daemon is up: bring back what a previous process left, open the first connection."""
        self._now = t
        actions: list[Action] = []
        if self._restored is not None:
            self._restore(self._restored, t, actions)
            self._restored = None
        self._connect(actions, t)
        self._finish(actions)
        return actions

    def handle(self, event: Event) -> list[Action]:
        actions: list[Action] = []
        self._now = event.t
        try:
            if self._current(event):
                self._last_server_t = event.t
            if not isinstance(event, UNCHANGING_EVENTS):
                self._handle_saves.conversation_moved()
            method = self._handlers.get(type(event))
            if method is not None:
                method(self, event, actions)
            self._maybe_switch_after_goaway(actions, event.t)
            self._maybe_redeclare(actions, event.t)
        except NotInState as mismatch:
            # The machine refused before changing anything: ignoring the event is safe.
            actions.append(Log(logging.WARNING, f"ignored {type(event).__name__}: {mismatch}"))
        except Exception as exc:
            actions = self._recover(event, exc)
        self._finish(actions)
        return actions

    def stop(self, t: float) -> list[Action]:
        """Shutting down: end an open utterance at this moment (so the server is not left
        mid-activity) and persist the ledger with it and the reply in flight."""
        self._now = t
        actions: list[Action] = []
        for utterance in list(self._ledger.receiving):
            self._ledger.cut(utterance, t)
            self._finish_recording(utterance, actions)
        self._pump(actions, open_new=False)
        self._conn.stop()
        self._save_newest_handle(actions)
        self._persist(actions)
        return actions

    def retry_now(self, t: float, why: str) -> list[Action]:
        """The user changed something that may cure a refusal (the key, the model, the
        configuration): a long back-off ends and the next attempt goes now."""
        self._now = t
        actions: list[Action] = []
        if self._conn.long_backoff and self._conn.retry_now(t):
            actions.append(Log(logging.INFO, f"{why}: reconnecting now"))
            self._connect(actions, t)
        self._finish(actions)
        return actions

    def new_session(self, t: float, why: str) -> list[Action]:
        """Leave this session for a fresh one (the session's settings changed); the recent
        exchanges are told to the new session so the conversation carries on."""
        self._now = t
        actions: list[Action] = []
        self._forget_handle(actions, why)
        if self._conn.state is LinkState.BACKING_OFF:
            self._conn.retry_now(t)
            self._connect(actions, t)
        else:
            self._leave(actions, t, why, close=True, counts=False)
        self._finish(actions)
        return actions

    def next_deadline(self) -> float | None:
        deadlines = [
            self._conn.retry_at,
            self._release_deadline,
            self._conn.switch_at,
            self._turn.deadline,
            *self._calls.deadlines(),
        ]
        if self._conn.up and self._reply_owed():
            deadlines.append(self._last_server_t + self.config.reply_timeout_s)
        if not self._conn.up and not self._conn.long_backoff:
            deadlines += [
                u.ended_t + self.config.offline_max_age_s for u in self._ledger if u.ended_t is not None
            ]
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    @property
    def reconnect_at(self) -> float | None:
        """When the next connection attempt is due (None: none is waiting)."""
        return self._conn.retry_at

    @property
    def status(self) -> Status | None:
        return self._status

    @property
    def idle(self) -> bool:
        """Nothing in flight: no utterance, no reply being generated or played, no tool."""
        return (
            not self._ledger.receiving
            and not len(self._ledger)
            and self._turn.state is TurnState.IDLE
            and not self._turn.speaker_busy
            and not self._calls.busy
        )

    @property
    def quiet_moment(self) -> bool:
        """The model may be asked to speak unasked now: the link is up and nothing is in
        flight (no question, answer, tool call or earlier prompt)."""
        return self.idle and self._conn.state is LinkState.UP

    def prompt(self, text: str, t: float) -> list[Action]:
        """Ask the model to speak unasked (an announcement, a timer that ended): one
        ``client_content`` turn, only at a quiet moment (no action otherwise). Until the
        model's turn ends (or FOLLOW_UP_WAIT_S passes) the device is not idle, so prompts
        go out one at a time and never over an answer."""
        if not self.quiet_moment:
            return []
        self._now = t
        self._calls.expect_follow_up(t)
        self._handle_saves.conversation_moved()
        return [SendContext(self.link, text, turn_complete=True)]

    @property
    def capturing(self) -> bool:
        """An utterance is taking audio: every period is wanted at once."""
        return bool(self._ledger.receiving)

    @property
    def pending_utterances(self) -> int:
        return len(self._ledger)

    @property
    def calls_running(self) -> int:
        """Function calls started and not yet answered. A result that comes after
        :meth:`stop` is still remembered with its question (and persisted), so that the
        question asked again after a restart hears what was done."""
        return self._calls.running

    # -- hardware events ----------------------------------------------------------------

    def _on_pressed(self, event: Pressed, actions: list[Action]) -> None:
        if self._ledger.held is not None or self._conn.state is LinkState.STOPPED:
            return
        if self._turn.state is TurnState.GENERATED:
            # Its generation is complete: nothing more of it can come but a turnComplete,
            # which some models never send. It ends here, so that the next question's
            # answer is not taken for the rest of it.
            self._turn.fire(TurnTrigger.TIMEOUT)
            self._turn.owed_turn_complete = True
            if not self._turn.speaker_busy:
                self._turn.fire(TurnTrigger.PLAYBACK_IDLE)
        if self._turn.generating or self._turn.speaker_busy:
            self._barge_in(event.t, actions)
        elif self._turn.state is TurnState.EMPTY:
            # The user asks something else before the late answer came: they moved on.
            self._turn.fire(TurnTrigger.BARGE_IN)
            self._answer_for_turn(actions)
        # Spoken while connected behind only live questions: it streams at once (the user
        # chose to speak now). Behind a backlog (offline, restored, re-sent after a drop) it
        # waits its turn, so that no answer of the backlog is cut off by it.
        # Held back by a synchronous call, it is no longer "now": it waits for the answer
        # the call is part of, rather than cut it off the moment the response is out.
        live = self._conn.up and self._realtime_input_allowed() and all(u.live for u in self._ledger)
        utterance = self._ledger.press(event.position, live=live)
        if self._conn.long_backoff:
            # No answer can come for a while (quota, key, model): say so at once, and keep
            # what is said for when the service takes us again.
            actions.append(PlayEarcon(Earcon.ERROR))
            actions.append(
                Log(
                    logging.WARNING,
                    f"utterance {utterance.number} kept for later: {self._conn.plan.status}",
                )
            )
        else:
            actions.append(PlayEarcon(Earcon.LISTENING))
        self._pump(actions)

    def _on_released(self, event: Released, actions: list[Action]) -> None:
        utterance = self._ledger.held
        if utterance is None:
            return
        self._ledger.release(utterance, event.position, event.t)
        if utterance.complete:
            self._finish_recording(utterance, actions)
        else:
            self._release_deadline = event.t + self.config.release_grace_s
        self._pump(actions)

    def _on_captured(self, event: Captured, actions: list[Action]) -> None:
        for utterance in self._ledger.capture(event.position, event.pcm, event.t, actions):
            self._finish_recording(utterance, actions)
        if self._ledger.receiving or self._conn.up:
            self._pump(actions)

    def _on_playback_idle(self, event: PlaybackIdle, actions: list[Action]) -> None:
        self._turn.speaker_busy = False
        if self._turn.state is TurnState.PLAYING_OUT:
            self._turn.fire(TurnTrigger.PLAYBACK_IDLE)

    def _on_network_changed(self, event: NetworkChanged, actions: list[Action]) -> None:
        if (
            self._conn.state is LinkState.BACKING_OFF
            and self._conn.retry_at is not None
            and not self._conn.long_backoff
        ):
            # Waiting out a backoff while the network may just have come back: try now.
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
            for utterance in list(self._ledger.receiving):
                if utterance.end is not None:
                    # The capture period holding the release never came (device stalled):
                    # end with what we have rather than keep the server waiting.
                    self._ledger.cut(utterance, t)
                    self._finish_recording(utterance, actions)
            self._pump(actions)
        if self._conn.retry_due(t):
            self._connect(actions, t)
        self._calls.tick(t)
        for pending in self._calls.overdue(t):
            self._tool_overdue(pending, actions, t)
        if self._turn.deadline is not None and t >= self._turn.deadline:
            self._turn_timed_out(actions, t)
        if self._conn.up and self._reply_owed() and t >= self._last_server_t + self.config.reply_timeout_s:
            self._leave(actions, t, "the server stopped answering", close=True)
        if self._conn.state in (LinkState.BACKING_OFF, LinkState.CONNECTING):
            # Offline too long; never while stopping: what is left is kept for the restart.
            self._expire_offline_utterances(actions, t)

    # -- connection events --------------------------------------------------------------

    def _on_link_up(self, event: LinkUp, actions: list[Action]) -> None:
        if event.link != self._conn.link:
            return
        self._conn.setup_complete(event.t, event.resumed)
        self._last_server_t = event.t
        if self._conn.offline_announced:
            actions.append(PlayEarcon(Earcon.RECONNECTED))
            self._conn.offline_announced = False
        actions.append(
            Log(logging.INFO, "connected" + (" (session resumed)" if event.resumed else " (new session)"))
        )
        self._brief_new_link(actions, resumed=event.resumed)
        for utterance in self._ledger:
            if utterance.rejections >= MAX_REJECTIONS and utterance not in self._ledger.receiving:
                self._give_up(
                    utterance,
                    actions,
                    f"gave up on utterance {utterance.number}: "
                    f"the server refused it {utterance.rejections} times",
                )
        self._pump(actions)
        self._conn.ever_up = True

    def _on_link_down(self, event: LinkDown, actions: list[Action]) -> None:
        if event.link != self._conn.link:
            return
        if self._conn.connecting:
            # Closed before setupComplete: an attempt that failed.
            failed = LinkFailed(event.link, event.code, event.reason, event.t, event.cause)
            self._on_link_failed(failed, actions)
            return
        if event.code in CLIENT_FAULT_CODES:
            for utterance in self._ledger:
                if utterance.link == event.link:
                    utterance.rejections += 1
        if (
            self._conn.up
            and self._conn.resumed
            and event.code == CLOSE_INVALID_RESUME
            and event.t - self._conn.up_t < RESUME_FAILURE_WINDOW_S
        ):
            self._forget_handle(actions, f"the resumed session ended at once ({event.code})")
        self._leave(actions, event.t, event.reason, close=False, code=event.code, cause=event.cause)

    def _on_link_failed(self, event: LinkFailed, actions: list[Action]) -> None:
        if event.link != self._conn.link or not self._conn.connecting:
            return
        if (
            self._conn.connect_handle is not None
            and event.code == CLOSE_INVALID_RESUME
            and event.cause is not DownCause.KEY_REJECTED
        ):
            self._conn.attempt_failed(event.t, retry_now=True)
            said = event.reason
            if not said.startswith(str(event.code)):
                said = f"{event.code} {said}"
            self._forget_handle(actions, f"the server refused to resume ({said})")
            self._connect(actions, event.t)
            return
        delay = self._conn.attempt_failed(event.t, cause=event.cause)
        actions.append(
            Log(
                logging.WARNING,
                f"connection attempt {self._conn.failures} failed: {event.reason}"
                + (f" (next try in {_duration(delay)})" if self._conn.long_backoff else ""),
                {"code": event.code},
            )
        )
        if not self._conn.offline_announced:
            actions.append(PlayEarcon(Earcon.OFFLINE))
            self._conn.offline_announced = True

    # -- the server's turn ----------------------------------------------------------------

    def _on_server_audio(self, event: ServerAudio, actions: list[Action]) -> None:
        if not self._current(event):
            return
        turn = self._turn
        turn.fire(TurnTrigger.AUDIO)
        if turn.state is TurnState.STALE or turn.completed_early or (turn.answered and turn.deadline):
            # Dropped (stale), a turn whose turnComplete came first, or the rest of an
            # interrupted one: it ends when its output stops, so each chunk moves its end.
            turn.deadline = event.t + self.config.turn_end_wait_s
        if turn.state is TurnState.STALE:
            return
        turn.speaker_busy = True
        turn.had_audio = True
        actions.append(PlayAudio(event.pcm, event.chunk))

    def _on_generation_complete(self, event: GenerationComplete, actions: list[Action]) -> None:
        if not self._current(event):
            return
        turn = self._turn
        was_generating = turn.generating
        before = turn.state
        turn.fire(TurnTrigger.GENERATION_COMPLETE)
        if before not in ANSWERING:
            return
        if was_generating:
            actions.append(EndOfReply())
        self._answer_for_turn(actions)
        if turn.completed_early:
            self._close_turn(actions)
        else:
            # Some models never send turnComplete: the turn ends by itself after a while.
            turn.deadline = event.t + self.config.turn_end_wait_s

    def _on_turn_complete(self, event: TurnComplete, actions: list[Action]) -> None:
        if not self._current(event):
            return
        turn = self._turn
        if turn.owed_turn_complete and turn.state in (TurnState.IDLE, TurnState.PLAYING_OUT):
            turn.owed_turn_complete = False  # the late end of the turn closed at a press
            return
        if turn.state is TurnState.STALE:
            turn.fire(TurnTrigger.TURN_COMPLETE)
            self._said.drop_model_words()
            self._pump(actions)
        elif turn.state in ANSWERING:
            if turn.generating:
                actions.append(EndOfReply())
            self._answer_for_turn(actions)
            self._close_turn(actions)
        elif self._ledger.awaiting(self._conn.link) is not None and turn.state is not TurnState.EMPTY:
            # Nothing came for the question: maybe the answer is only late (its audio after
            # turnComplete), maybe the server said nothing at all. Wait a moment to know.
            turn.fire(TurnTrigger.TURN_COMPLETE)
            turn.deadline = event.t + self.config.empty_turn_wait_s
        self._calls.turn_complete()

    def _on_interrupted(self, event: Interrupted, actions: list[Action]) -> None:
        if not self._current(event) or self._turn.state is TurnState.STALE:
            return
        turn = self._turn
        before = turn.state
        # The server cut its own answer short: stop at once; the user heard part of it.
        if turn.generating or turn.speaker_busy:
            actions.append(StopPlayback())
        turn.speaker_busy = False
        turn.fire(TurnTrigger.INTERRUPTED)
        if turn.state in ANSWERING:
            if before in ANSWERING or before is TurnState.IDLE:
                self._answer_for_turn(actions)
            # It stays open for the rest of it and its turnComplete, which may never come.
            turn.deadline = event.t + self.config.turn_end_wait_s

    def _on_transcript(self, event: Transcript, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if event.role == "user":
            self._said.heard_user(event.text)
            return
        self._turn.fire(TurnTrigger.CONTENT)
        if self._turn.state is not TurnState.STALE:
            self._said.heard_model(event.text)

    def _on_resumption_update(self, event: ResumptionUpdate, actions: list[Action]) -> None:
        if not self._current(event):
            return
        if event.resumable and event.handle:
            self._conn.handle = event.handle
            # Everything the server consumed so far is in this snapshot.
            if self._said.committed():
                self._ledger_changed = True
            if self._handle_saves.offered(event.t):
                actions.append(PersistHandle(event.handle))

    def _on_go_away(self, event: GoAway, actions: list[Action]) -> None:
        if not self._current(event):
            return
        # The switch happens at the next quiet moment or on a timer at the deadline (the
        # server may say nothing more after a GoAway).
        self._conn.go_away(event.t, event.time_left_s, self.config.goaway_margin_s)
        actions.append(Log(logging.INFO, f"server will close this connection in {event.time_left_s:g} s"))

    def _on_server_problem(self, event: ServerProblem, actions: list[Action]) -> None:
        actions.append(Log(logging.WARNING, f"ignored a server message: {event.description}"))

    # -- tools ----------------------------------------------------------------------------

    def _on_tool_calls(self, event: ToolCallsReceived, actions: list[Action]) -> None:
        if not self._current(event):
            return
        self._turn.fire(TurnTrigger.CONTENT)
        # The question this reply answers: a question asked again (after a drop or a
        # restart) gets the results of what its first reply already ran.
        utterance = self._ledger.awaiting(event.link)
        runs: list[Action] = []
        for call in event.calls:
            if not self._calls.receive(call, event.link, event.t, utterance):
                # The same call again (as toolCall and inside the turn): it runs once.
                actions.append(Log(logging.INFO, f"function call {call.id} arrived twice: ran once"))
                continue
            if utterance is None:
                runs.append(RunTool(call))
                continue
            key = call_key(call.name, call.args)
            ran = utterance.calls.get(key)
            if ran is None:
                utterance.calls[key] = RanCall()
                self._ledger_changed = True
                runs.append(RunTool(call))
                continue
            pending = self._calls.take(call.id)
            assert pending is not None
            actions.append(
                Log(
                    logging.INFO,
                    f"function {call.name} already ran for utterance {utterance.number}: "
                    "answered with its result, not run again",
                )
            )
            self._respond(already_done(call, ran, event.t), pending, actions)
        if self._ledger_changed:
            # Remembered on disk before it runs, so a restart cannot run it twice.
            self._ledger_changed = False
            self._persist(actions)
        actions.extend(runs)

    def _on_tool_calls_cancelled(self, event: ToolCallsCancelled, actions: list[Action]) -> None:
        if not self._current(event):
            return
        cancelled = self._calls.cancel(event.ids)
        if not cancelled:
            return
        # Stopped before its result: not done, so a question asked again runs it again
        # rather than hearing "already requested" for something that never happened.
        for pending in cancelled:
            utterance = pending.for_utterance
            if utterance is not None and utterance in self._ledger:
                key = call_key(pending.call.name, pending.call.args)
                ran = utterance.calls.get(key)
                if ran is not None and ran.response is None:
                    del utterance.calls[key]
                    self._ledger_changed = True
        actions.append(CancelTools(tuple(pending.call.id for pending in cancelled)))
        if self._ledger_changed:
            self._ledger_changed = False
            self._persist(actions)
        self._pump(actions)

    def _on_tool_result(self, event: ToolResult, actions: list[Action]) -> None:
        pending = self._calls.take(event.id)
        if pending is None:
            return  # cancelled or overdue meanwhile: no response is owed
        self._remember_result(pending, event)
        self._respond(event, pending, actions)

    def _remember_result(self, pending: PendingCall, result: ToolResult) -> None:
        utterance = pending.for_utterance
        if utterance is None or utterance not in self._ledger:
            return  # no question, or answered already: nothing will ask it again
        ran = utterance.calls.get(call_key(pending.call.name, pending.call.args))
        if ran is not None and ran.response is None:
            ran.response = dict(result.response)
            ran.scheduling = result.scheduling
            self._ledger_changed = True

    def _respond(self, event: ToolResult, pending: PendingCall, actions: list[Action]) -> None:
        if self._conn.up and pending.link == self._conn.link:
            actions.append(SendToolResponses(self._conn.link, (event,)))
            self._said.note(_describe_result(event))
            self._calls.responded(event, self._now, turn_open=self._turn.open)
            # On a family with synchronous calls only, what was said meanwhile goes now.
            self._pump(actions)
        else:
            # A new connection ignores a call id it never issued: tell it in words.
            self._calls.undelivered.append(event)
            if self._conn.up:
                self._deliver_results_as_text(actions)

    def _tool_overdue(self, pending: PendingCall, actions: list[Action], t: float) -> None:
        call_id = pending.call.id
        self._calls.take(call_id)
        actions.append(CancelTools((call_id,)))
        actions.append(
            Log(logging.WARNING, f"function {pending.call.name} ({call_id}) gave no result in time")
        )
        failed = ToolResult(
            call_id,
            pending.call.name,
            {"status": "failed", "error": "the device did not finish this action in time", "retry": False},
            "INTERRUPT",
            t,
        )
        self._respond(failed, pending, actions)

    def _realtime_input_allowed(self) -> bool:
        """A family with synchronous calls only closes the connection on any realtime input
        (audio, activityStart/End) while a call is unanswered."""
        if not self.family.synchronous_functions_only:
            return True
        return not self._calls.unanswered_on(self._conn.link)

    # -- internals ----------------------------------------------------------------------

    def _current(self, event: Event) -> bool:
        return self._conn.up and getattr(event, "link", None) == self._conn.link

    def _connect(self, actions: list[Action], t: float) -> None:
        link, handle = self._conn.connect()
        if handle is None:
            self._redeclare_why = None  # a fresh session gets the current declarations
        actions.append(Connect(link, handle))

    def _forget_handle(self, actions: list[Action], why: str) -> None:
        actions.append(Log(logging.WARNING, f"starting a fresh session: {why}"))
        self._conn.handle = None
        self._handle_saves.forgotten()
        actions.append(PersistHandle(None))

    def _save_newest_handle(self, actions: list[Action]) -> None:
        """A renewed handle held in memory goes to disk (its connection ended, or the daemon stops)."""
        if self._handle_saves.take_unsaved() and self._conn.handle is not None:
            actions.append(PersistHandle(self._conn.handle))

    def _leave(
        self,
        actions: list[Action],
        t: float,
        reason: str,
        *,
        close: bool,
        code: int | None = None,
        counts: bool = True,
        switching: bool = False,
        cause: DownCause = DownCause.LOST,
    ) -> None:
        """The one way out of a connection, whoever ended it and why.

        ``close``: the socket is still open and must be closed. ``switching``: a planned
        switch (GoAway): what the user already heard of a reply counts as its answer, so
        nothing is played twice; otherwise a reply cut off is stopped and asked again.
        The ledger keeps every unanswered utterance for the next connection."""
        if self._conn.state is LinkState.BACKING_OFF:
            return  # no connection to leave
        leaving = self._conn.leave(t, counts=counts, cause=cause)
        self._save_newest_handle(actions)
        if close and leaving.was_open:
            actions.append(CloseLink(leaving.link, reason))
        if switching:
            actions.append(Log(logging.INFO, f"left the connection: {reason}"))
        else:
            actions.append(Log(logging.WARNING, f"connection lost: {reason}", {"code": code}))
        turn = self._turn
        if switching and turn.state in ANSWERING and turn.had_audio:
            if turn.generating:
                actions.append(EndOfReply())
            self._answer_for_turn(actions)
        elif turn.generating:
            # The reply was cut off; the utterance stays in the ledger and is asked again,
            # so drop the partial answer rather than play half of it and then all of it.
            actions.append(StopPlayback())
            turn.speaker_busy = False
        turn.reset(speaker_plays_on=True)
        self._said.drop_partial()
        self._ledger.requeue_all()
        if self._conn.retry_due(t):
            self._connect(actions, t)

    def _recover(self, event: Event, exc: Exception) -> list[Action]:
        """A bug while handling ``event``: whatever it half-did is dropped with the
        connection; the ledger is kept and the conversation resumes on the next one."""
        detail = "".join(traceback.format_exception(exc)).strip()
        actions: list[Action] = [
            Log(
                logging.ERROR,
                f"internal error while handling {type(event).__name__}: {exc!r}",
                {"traceback": detail},
            )
        ]
        try:
            if self._turn.speaker_busy or self._turn.generating:
                actions.append(StopPlayback())
                self._turn.speaker_busy = False
            self._turn.reset()
            if self._conn.state in (LinkState.CONNECTING, LinkState.UP, LinkState.SWITCHING):
                self._leave(actions, event.t, "recovering from an internal error", close=True)
        except Exception as again:
            actions.append(Log(logging.ERROR, f"recovery failed too: {again!r}"))
        return actions

    def _brief_new_link(self, actions: list[Action], *, resumed: bool) -> None:
        """Tell a new connection what it cannot know: exchanges its snapshot lacks (or,
        for a fresh session, the recent conversation) and tool results it never asked for.

        Families that refuse client content after the first model turn (3.1) still take
        it at the very start of a fresh session, before any model turn: the briefing goes
        then. A resumed session of such a family cannot be told anything in words: the
        lines are dropped with a log line (the unanswered utterances themselves are sent
        again as audio, so no question is lost)."""
        lines = self._said.briefing(resumed=resumed)
        if lines:
            if self._may_send_context(resumed):
                actions.append(
                    SendContext(
                        self._conn.link,
                        "(The connection was interrupted. For context, earlier in this conversation:)\n"
                        + "\n".join(lines),
                        turn_complete=False,
                    )
                )
            else:
                actions.append(
                    Log(logging.WARNING, f"{self.family.name} takes no context mid-session: not sent")
                )
        self._deliver_results_as_text(actions)

    def _may_send_context(self, resumed: bool) -> bool:
        if self.family.client_content_mid_session:
            return True
        return not resumed and self._turn.model_turns == 0

    def _deliver_results_as_text(self, actions: list[Action]) -> None:
        if not self._calls.undelivered:
            return
        results, self._calls.undelivered = self._calls.undelivered, []
        text = "\n".join(_describe_result(r) for r in results)
        if not self._may_send_context(self._conn.resumed):
            actions.append(
                Log(
                    logging.WARNING,
                    f"{self.family.name} takes no context mid-session: results dropped: {text}",
                )
            )
            return
        speak = any(r.scheduling != "SILENT" for r in results) and not len(self._ledger)
        actions.append(
            SendContext(
                self._conn.link,
                "(Results of actions you started before the connection was interrupted:)\n" + text,
                turn_complete=speak,
            )
        )
        self._said.note(text)

    def _pump(self, actions: list[Action], *, open_new: bool = True) -> None:
        """Send what can be sent on the current connection (see :meth:`Ledger.send`)."""
        if not self._conn.up:
            return
        closed = self._ledger.send(
            self._conn.link,
            actions,
            may_open=self._realtime_input_allowed(),
            open_new=open_new,
            server_turn_over=not self._turn.open,
        )
        if closed:
            # The reply is owed from now: the silence before it is not the server's fault.
            self._last_server_t = max(self._last_server_t, self._now)

    def _finish_recording(self, utterance: Utterance, actions: list[Action]) -> None:
        kept = self._ledger.finish_recording(utterance)
        if not self._ledger.waiting_for_release_period():
            self._release_deadline = None
        if kept:
            actions.append(PlayEarcon(Earcon.SENT))
            self._ledger_changed = True

    def _barge_in(self, t: float, actions: list[Action]) -> None:
        actions.append(StopPlayback())
        turn = self._turn
        turn.speaker_busy = False
        before = turn.state
        turn.fire(TurnTrigger.BARGE_IN)
        if before in ANSWERING:
            # The user heard (part of) the answer and chose to move on: it counts as
            # answered. The rest of this turn may already be on its way: drop it, and do
            # not let its turnComplete answer the utterance that is starting now.
            self._answer_for_turn(actions)
        if turn.state is TurnState.STALE:
            turn.deadline = t + self.config.turn_end_wait_s
        actions.append(Log(logging.INFO, "barge-in: the user interrupted the answer"))

    def _answer_for_turn(self, actions: list[Action]) -> None:
        """The server's current turn answers the oldest fully sent utterance (once)."""
        if self._turn.answered:
            return
        self._turn.answered = True
        utterance = self._ledger.awaiting(self._conn.link)
        if utterance is not None:
            self._ledger.settle(utterance, UtteranceTrigger.ANSWER)
            self._ledger_changed = True
        if self._said.finish():
            self._ledger_changed = True
        # The next question in line may go now.
        self._pump(actions)

    def _close_turn(self, actions: list[Action]) -> None:
        """The server's turn is over: IDLE, or PLAYING_OUT while the speaker still plays."""
        self._turn.fire(TurnTrigger.TURN_COMPLETE)
        if not self._turn.speaker_busy:
            self._turn.fire(TurnTrigger.PLAYBACK_IDLE)
        self._pump(actions)  # the next question in line may go now

    def _turn_timed_out(self, actions: list[Action], t: float) -> None:
        turn = self._turn
        state = turn.state
        turn.deadline = None
        if state is TurnState.EMPTY:
            turn.fire(TurnTrigger.TIMEOUT)
            self._silent_turn(actions)
        elif state in ANSWERING:
            actions.append(Log(logging.INFO, "the server's turn ended without turnComplete"))
            if turn.generating:
                actions.append(EndOfReply())
            self._answer_for_turn(actions)
            turn.fire(TurnTrigger.TIMEOUT)
            if not turn.speaker_busy:
                turn.fire(TurnTrigger.PLAYBACK_IDLE)
        elif state is TurnState.STALE:
            turn.fire(TurnTrigger.TIMEOUT)
        self._pump(actions)

    def _silent_turn(self, actions: list[Action]) -> None:
        """The server ended a turn with nothing in it: the question is asked once more (it
        had no side effect to repeat), then given up with an earcon, never left in silence."""
        utterance = self._ledger.awaiting(self._conn.link)
        if utterance is None:
            return
        if utterance.silent_retries < SILENT_TURN_RETRIES:
            utterance.silent_retries += 1
            actions.append(
                Log(
                    logging.WARNING,
                    f"the server answered utterance {utterance.number} with silence: asking again",
                )
            )
            utterance.move(UtteranceTrigger.REQUEUE)
            self._pump(actions)
        else:
            self._give_up(
                utterance,
                actions,
                f"gave up on utterance {utterance.number}: the server answered with silence",
            )

    def _give_up(self, utterance: Utterance, actions: list[Action], why: str) -> None:
        self._ledger.settle(utterance, UtteranceTrigger.GIVE_UP)
        self._ledger_changed = True
        actions.append(PlayEarcon(Earcon.ERROR))
        actions.append(Log(logging.ERROR, why))

    def _reply_owed(self) -> bool:
        if self._turn.state in (TurnState.GENERATING, TurnState.STALE):
            return True
        return self._ledger.awaiting(self._conn.link) is not None

    def _expire_offline_utterances(self, actions: list[Action], t: float) -> None:
        if self._conn.long_backoff:
            return  # kept until the service takes us again: the user was told with an earcon
        expired = [
            u
            for u in self._ledger
            if u.ended_t is not None and t - u.ended_t >= self.config.offline_max_age_s
        ]
        for utterance in expired:
            self._ledger.settle(utterance, UtteranceTrigger.GIVE_UP)
            actions.append(
                Log(
                    logging.WARNING,
                    f"dropped utterance {utterance.number} "
                    f"({utterance.duration_s(self.config.rate):.1f} s): offline for too long",
                )
            )
        if expired:
            self._ledger_changed = True
            actions.append(PlayEarcon(Earcon.OFFLINE))

    def _on_declarations_changed(self, event: ToolDeclarationsChanged, actions: list[Action]) -> None:
        self._redeclare_why = "the functions offered to the model changed"

    def _maybe_redeclare(self, actions: list[Action], t: float) -> None:
        # Declarations are fixed for a session's life: switch to a fresh one (told the
        # recent exchanges) once nothing is asked, answered, played or running.
        if self._redeclare_why is not None and self._conn.state is LinkState.UP and self.idle:
            why, self._redeclare_why = self._redeclare_why, None
            self._forget_handle(actions, why)
            self._leave(actions, t, why, close=True, counts=False)

    def _maybe_switch_after_goaway(self, actions: list[Action], t: float) -> None:
        conn = self._conn
        if conn.state is not LinkState.SWITCHING or conn.switch_at is None:
            return
        # Quiet: nothing asked or being answered, and the newest handle covers everything
        # said (so the new connection resumes with the whole conversation).
        quiet = (
            not self._ledger.receiving
            and not len(self._ledger)
            and not self._turn.open
            and not self._said.uncommitted
        )
        if quiet or t >= conn.switch_at:
            self._leave(
                actions,
                t,
                "switching connection before the server's GoAway deadline",
                close=True,
                switching=True,
            )

    # -- surviving the process ------------------------------------------------------------

    def _restore(self, saved: SavedLedger, t: float, actions: list[Action]) -> None:
        self._ledger.restore(saved.utterances, t)
        self._said.restore(saved.context)
        if saved.utterances:
            actions.append(
                Log(logging.INFO, f"{len(saved.utterances)} unanswered utterance(s) from before the restart")
            )
        self._saved = saved

    def _persist(self, actions: list[Action]) -> None:
        saved = SavedLedger(self._ledger.saved(), self._said.saved())
        if saved != self._saved:
            self._saved = saved
            actions.append(PersistLedger(saved))

    def _finish(self, actions: list[Action]) -> None:
        if self._ledger_changed:
            self._ledger_changed = False
            self._persist(actions)
        status = self._derive_status()
        if status != self._status:
            self._status = status
            actions.append(status)

    def _derive_status(self) -> Status:
        conn = self._conn
        if self._device_problems:
            return Status(DeviceState.ERROR, "; ".join(self._device_problems.values()))
        offline_detail = retrying = ""
        if not conn.up:
            if conn.long_backoff:
                waiting = conn.state is LinkState.BACKING_OFF and conn.retry_at is not None
                offline_detail = retrying = conn.plan.status + (
                    f", retrying in {_duration(conn.retry_in)}" if waiting else ", trying again"
                )
            elif conn.failures:
                retrying = f"retrying (attempt {conn.failures + 1})"
                # Listening or thinking while offline say so; the offline state says it once.
                offline_detail = f"offline, {retrying}"
            elif conn.young_deaths >= 2:
                closed = conn.young_deaths
                offline_detail = f"reconnecting: the server closed {closed} connections soon after opening"
            else:
                offline_detail = "connecting" if not conn.ever_up else "reconnecting"
        if self._ledger.held is not None:
            return Status(DeviceState.LISTENING, offline_detail)
        if conn.failures and not conn.up:
            return Status(DeviceState.OFFLINE, retrying)
        if self._turn.generating or self._turn.speaker_busy:
            return Status(DeviceState.SPEAKING)
        if len(self._ledger):
            return Status(DeviceState.THINKING, offline_detail)
        if not conn.up:
            return Status(DeviceState.OFFLINE, offline_detail)
        return Status(DeviceState.IDLE)

    _handlers = {
        Pressed: _on_pressed,
        Released: _on_released,
        Captured: _on_captured,
        PlaybackIdle: _on_playback_idle,
        DeviceProblem: _on_device_problem,
        NetworkChanged: _on_network_changed,
        ToolDeclarationsChanged: _on_declarations_changed,
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


def _duration(seconds: float) -> str:
    """A wait as the user reads it: "40 s", "2 min", "1 h"."""
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"

"""The utterance ledger: what the user said, kept until the server has answered it.

An utterance's audio is kept from the press until a turn answers it (or it is given up),
so a connection lost at any moment, or a restart of the daemon, re-sends the whole
utterance (activity start, every sample, activity end) exactly once on the next connection.

Each utterance moves through its own small machine::

    QUEUED --open--> STREAMING --close--> AWAITING_ANSWER --answer--> ANSWERED
       ^                 |                      |
       +---- requeue ----+----------------------+        (queued or sent) --give_up--> GIVEN_UP

Recording runs alongside: an utterance takes audio from its press (less the pre-roll)
until its release, and may be STREAMING while it still records.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from edgevoice.core.audio_history import BYTES_PER_SAMPLE, AudioHistory
from edgevoice.core.calls import RanCall
from edgevoice.core.events import (
    Action,
    Log,
    SavedUtterance,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
)
from edgevoice.core.machine import transition

# Largest audio blob sent at once when (re)sending recorded audio.
MAX_BLOB_SAMPLES = 16000


class UtteranceState(Enum):
    QUEUED = "queued"  # waiting to go out on the current connection
    STREAMING = "streaming"  # activityStart sent on the current connection
    AWAITING_ANSWER = "awaiting answer"  # activityEnd sent: a turn will answer it
    ANSWERED = "answered"
    GIVEN_UP = "given up"


class UtteranceTrigger(Enum):
    OPEN = "open"
    CLOSE = "close"
    ANSWER = "answer"
    REQUEUE = "requeue"  # the connection it went out on is gone, or it is asked again
    GIVE_UP = "give_up"


_S, _T = UtteranceState, UtteranceTrigger
UTTERANCE_TRANSITIONS: dict[UtteranceState, dict[UtteranceTrigger, UtteranceState]] = {
    _S.QUEUED: {_T.OPEN: _S.STREAMING, _T.REQUEUE: _S.QUEUED, _T.GIVE_UP: _S.GIVEN_UP},
    _S.STREAMING: {_T.CLOSE: _S.AWAITING_ANSWER, _T.REQUEUE: _S.QUEUED, _T.GIVE_UP: _S.GIVEN_UP},
    _S.AWAITING_ANSWER: {
        _T.ANSWER: _S.ANSWERED,
        _T.REQUEUE: _S.QUEUED,
        _T.GIVE_UP: _S.GIVEN_UP,
    },
}


@dataclass
class Utterance:
    number: int
    start: int
    end: int | None = None
    # When the utterance ended (released, cut short, or restored from a previous process):
    # how long it has waited offline.
    ended_t: float | None = None
    audio: bytearray = field(default_factory=bytearray)
    state: UtteranceState = UtteranceState.QUEUED
    # The connection it is streaming or was sent on, and how many samples went out there.
    link: int | None = None
    sent_samples: int = 0
    rejections: int = 0
    silent_retries: int = 0
    # Pressed while connected with nothing before it unsent: it streams live, even while an
    # earlier utterance still waits for its answer (the user chose to speak now).
    live: bool = False
    # The functions its reply already ran, by (name, canonical args): asked again, the
    # model gets their results rather than running them twice. Forgotten once answered.
    calls: dict[tuple[str, str], RanCall] = field(default_factory=dict)

    @property
    def recorded_end(self) -> int:
        return self.start + len(self.audio) // BYTES_PER_SAMPLE

    @property
    def complete(self) -> bool:
        return self.end is not None and self.recorded_end >= self.end

    def duration_s(self, rate: int) -> float:
        return (len(self.audio) // BYTES_PER_SAMPLE) / rate

    def move(self, trigger: UtteranceTrigger) -> UtteranceState:
        self.state = transition(f"utterance {self.number}", UTTERANCE_TRANSITIONS, self.state, trigger)
        if self.state is UtteranceState.QUEUED:
            self.link = None
            self.sent_samples = 0
        return self.state


class Ledger:
    """Every utterance not yet answered, in the order spoken, and the recording of them."""

    def __init__(self, history_samples: int, max_utterance_samples: int, preroll_samples: int) -> None:
        self._history = AudioHistory(history_samples)
        self._max_samples = max_utterance_samples
        self._preroll = preroll_samples
        self._pending: deque[Utterance] = deque()
        # Utterances still taking audio: the one whose button is down, and one released
        # whose last capture period has not arrived yet.
        self.receiving: list[Utterance] = []
        self._next_number = 1
        self._last_end = 0

    def __iter__(self) -> Iterator[Utterance]:
        return iter(list(self._pending))

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, utterance: object) -> bool:
        return any(u is utterance for u in self._pending)

    @property
    def held(self) -> Utterance | None:
        """The utterance whose button is down."""
        if self.receiving and self.receiving[-1].end is None:
            return self.receiving[-1]
        return None

    # -- recording ------------------------------------------------------------------------

    def press(self, position: int, *, live: bool) -> Utterance:
        start = max(position - self._preroll, self._history.start, self._last_end)
        start = min(start, position)
        utterance = Utterance(number=self._next_number, start=start, live=live)
        self._next_number += 1
        utterance.audio += self._history.slice(start, self._history.end)
        self.receiving.append(utterance)
        self._pending.append(utterance)
        return utterance

    def release(self, utterance: Utterance, position: int, t: float) -> None:
        # A release is stamped at or after the newest captured sample, so nothing past it
        # has been sent; clamp anyway so a bad stamp cannot make a negative utterance.
        utterance.end = max(position, utterance.start)
        utterance.ended_t = t
        self._last_end = utterance.end

    def cut(self, utterance: Utterance, t: float) -> None:
        """End a recording with what it has (stalled capture, shutdown)."""
        utterance.end = utterance.recorded_end
        utterance.ended_t = utterance.ended_t or t
        self._last_end = max(self._last_end, utterance.end)

    def capture(self, position: int, pcm: bytes, t: float, actions: list[Action]) -> list[Utterance]:
        """Take a capture period; the utterances it completed."""
        self._history.append(position, pcm)
        completed = []
        end = position + len(pcm) // BYTES_PER_SAMPLE
        for utterance in list(self.receiving):
            take_from = max(utterance.recorded_end, position)
            take_to = end if utterance.end is None else min(end, utterance.end)
            limit = utterance.start + self._max_samples
            if take_to > limit:
                take_to = limit
                if utterance.end is None:
                    actions.append(Log(logging.WARNING, "utterance reached the maximum length; ending it"))
                    self.release(utterance, limit, t)
            if take_to > take_from:
                offset = (take_from - position) * BYTES_PER_SAMPLE
                utterance.audio += pcm[offset : offset + (take_to - take_from) * BYTES_PER_SAMPLE]
            if utterance.complete:
                completed.append(utterance)
        return completed

    def finish_recording(self, utterance: Utterance) -> bool:
        """The utterance has all its audio; False if it held none and was never announced
        (a press too short to hold a sample: nothing to ask)."""
        if utterance.end is not None and utterance.recorded_end > utterance.end:
            del utterance.audio[(utterance.end - utterance.start) * BYTES_PER_SAMPLE :]
        self.receiving.remove(utterance)
        if not utterance.audio and utterance.link is None:
            self._pending.remove(utterance)
            return False
        return True

    def waiting_for_release_period(self) -> bool:
        return any(u.end is not None for u in self.receiving)

    # -- the answer side ------------------------------------------------------------------

    def awaiting(self, link: int) -> Utterance | None:
        """The oldest utterance sent whole on ``link`` and not answered yet."""
        for utterance in self._pending:
            if utterance.state is UtteranceState.AWAITING_ANSWER and utterance.link == link:
                return utterance
        return None

    def settle(self, utterance: Utterance, trigger: UtteranceTrigger) -> None:
        """Answered or given up: it leaves the ledger (and what its reply ran is forgotten)."""
        utterance.move(trigger)
        utterance.calls.clear()
        self._pending.remove(utterance)
        if utterance in self.receiving:
            self.receiving.remove(utterance)

    def requeue_all(self) -> None:
        """The connection is gone: everything not answered goes out again on the next."""
        for utterance in self._pending:
            utterance.move(UtteranceTrigger.REQUEUE)
            utterance.live = False

    # -- sending --------------------------------------------------------------------------

    def send(
        self,
        link: int,
        actions: list[Action],
        *,
        may_open: bool,
        open_new: bool = True,
        server_turn_over: bool = True,
    ) -> list[Utterance]:
        """Send what can go out on ``link``, in order: each utterance bracketed before the
        next. A queued utterance that is not live opens only when nothing sent waits for
        its answer and the server's turn is over, so every question is answered before the
        next is asked. ``may_open`` False: send nothing (realtime input is not allowed
        now); ``open_new`` False: only finish the utterance already streaming. Returns
        the utterances closed."""
        closed: list[Utterance] = []
        if not may_open:
            return closed
        # The activity already open goes first: never two activities open at once.
        streaming = [u for u in self._pending if u.state is UtteranceState.STREAMING]
        for utterance in streaming:
            if not self._stream(utterance, link, actions):
                return closed
            closed.append(utterance)
        for utterance in self._pending:
            if utterance.state is not UtteranceState.QUEUED:
                continue
            if not open_new:
                return closed
            if not utterance.live and (self.awaiting(link) is not None or not server_turn_over):
                return closed
            utterance.move(UtteranceTrigger.OPEN)
            utterance.link = link
            actions.append(SendActivityStart(link, utterance.number))
            if not self._stream(utterance, link, actions):
                return closed
            closed.append(utterance)
        return closed

    def _stream(self, utterance: Utterance, link: int, actions: list[Action]) -> bool:
        """Send what is recorded of an open utterance; end it if it is all here (True)."""
        recorded = utterance.recorded_end - utterance.start
        while utterance.sent_samples < recorded:
            upto = min(recorded, utterance.sent_samples + MAX_BLOB_SAMPLES)
            blob = bytes(utterance.audio[utterance.sent_samples * BYTES_PER_SAMPLE : upto * BYTES_PER_SAMPLE])
            actions.append(SendAudio(link, blob, utterance.start + utterance.sent_samples))
            utterance.sent_samples = upto
        if utterance in self.receiving:
            return False
        utterance.move(UtteranceTrigger.CLOSE)
        actions.append(SendActivityEnd(link, utterance.number))
        return True

    # -- surviving the process ------------------------------------------------------------

    def saved(self) -> tuple[SavedUtterance, ...]:
        """What must survive a restart: every utterance with audio, recorded or not."""
        return tuple(
            SavedUtterance(u.number, bytes(u.audio), tuple(ran.saved(key) for key, ran in u.calls.items()))
            for u in self._pending
            if u.audio and u not in self.receiving
        )

    def restore(self, saved: tuple[SavedUtterance, ...], t: float) -> None:
        """Utterances a previous process recorded and never had answered: first in line.
        ``t``: now (they wait offline from now on)."""
        for item in saved:
            samples = len(item.audio) // BYTES_PER_SAMPLE
            # Positions belong to the microphone of the process that recorded it: a restored
            # utterance stands apart (it never borrows pre-roll from the new microphone).
            utterance = Utterance(number=self._next_number, start=-samples, end=0, ended_t=t)
            utterance.audio += item.audio[: samples * BYTES_PER_SAMPLE]
            utterance.calls = dict(RanCall.restore(call) for call in item.calls)
            self._next_number += 1
            self._pending.append(utterance)

"""The benchmark's recorder behind the device's metrics seam (:mod:`edgevoice.metrics`).

The daemon reports to whatever :class:`~edgevoice.metrics.Metrics` it is given; the
benchmark gives it a :class:`Probe`, and the reference client uses the same one (it adds
its figures directly). The device's adapters report what happened at their edges, by
domain identity (capture positions, utterance numbers, reply chunk numbers) and with their
own clock reads; the probe pairs those reports into figures. No clock reads or logging
happen here.

Series (milliseconds):

- ``capture_to_wire_ms``: capture read from ALSA -> the first websocket frame carrying
  its samples written; paired by capture position, one sample per read made after the
  press (reads before it go out as pre-roll and are not counted, nor is a re-send);
- ``release_to_activity_end_ms``: button callback -> the activityEnd written next, of
  an utterance not ended before (a re-send after a reconnect is not counted);
- ``reply_to_speaker_ms``: reply chunk received -> its first sample handed to ALSA
  ``write()``, counted from when the speaker could take it (not while it was busy with
  earlier audio or still prebuffering); paired by the link's chunk number;
- ``barge_in_ms``: press -> the sound card's queue dropped and the fade-out played (the
  first stop of playback between a press and its release);
- ``reconnect_ms``: LinkDown -> the next LinkUp (the resumed session ready);
- ``goaway_gap_ms``: the core closing a connection after a GoAway -> the next LinkUp;
- ``first_sound_ms``: button released -> the first sample of the next reply leaves the
  sound card, minus the emulator's scripted thinking time (the device's share);
- ``playback_underrun_t``: when an answer had a gap (seconds, monotonic clock).
"""

from __future__ import annotations

import threading
from array import array
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from edgevoice.core.events import GoAway, LinkDown, LinkUp
from edgevoice.metrics import Metrics


class Probe(Metrics):
    """Collects named series of samples (milliseconds unless the name says otherwise).

    ``add`` may be called from any thread (a list append is atomic under the GIL); the
    pairing state is shared by the capture, button, speaker and loop threads, under a lock.
    """

    enabled = True

    # Capture periods remembered for pairing (about 5 s of 20 ms periods): an idle
    # microphone reports periods that no frame will ever carry.
    KEPT_PERIODS = 256

    def __init__(self, thinking_ms: float = 0.0) -> None:
        self.thinking_ms = thinking_ms
        self._lock = threading.Lock()
        self._released_t: float | None = None
        self._release_to_pair: float | None = None
        self._last_ended_utterance = 0
        self._press_to_pair: float | None = None
        # (start, end, read time) of capture periods not yet carried by a frame.
        self._periods: deque[tuple[int, int, float]] = deque(maxlen=self.KEPT_PERIODS)
        # The oldest of them has been counted (a frame carried part of it).
        self._head_counted = False
        # Reply chunk number -> when the link received it, until written (or passed over:
        # dropped by the core or by a stop).
        self._received: dict[int, float] = {}
        # Packed doubles: 8 bytes a sample, so a long run's probe barely shows in the RSS figures.
        self.series: dict[str, array[float]] = defaultdict(lambda: array("d"))
        self._down_t: float | None = None
        self._switch_t: float | None = None
        self._goaway_seen = False
        self.resumed_links = 0
        self.fresh_links = 0

    def add(self, name: str, value: float) -> None:
        self.series[name].append(value)

    # -- pairing the adapters' reports ----------------------------------------------------

    def audio_captured(self, position: int, end: int, t: float) -> None:
        with self._lock:
            if len(self._periods) == self._periods.maxlen:
                self._head_counted = False  # the append drops the oldest
            self._periods.append((position, end, t))

    def audio_sent(self, position: int, end: int, t: float) -> None:
        with self._lock:
            periods = self._periods
            while periods and periods[0][0] < end:
                _start, period_end, read_t = periods[0]
                # Each read since the press counts once, with the first frame that carries
                # any of it (a read cut by a release, several reads joined in one frame).
                if period_end > position and not self._head_counted:
                    self.add("capture_to_wire_ms", (t - read_t) * 1000)
                    self._head_counted = True
                if period_end > end:
                    break  # the rest of this read may go in the next frame
                periods.popleft()
                self._head_counted = False

    def pressed(self, t: float) -> None:
        with self._lock:
            self._press_to_pair = t
            # Read before the press, a period reaches the core before the press does: its
            # samples go out as pre-roll, not streamed live.
            while self._periods and self._periods[0][2] <= t:
                self._periods.popleft()
                self._head_counted = False

    def released(self, t: float) -> None:
        with self._lock:
            self._released_t = t
            self._release_to_pair = t
            self._press_to_pair = None

    def activity_end_sent(self, utterance: int, t: float) -> None:
        with self._lock:
            if utterance <= self._last_ended_utterance:
                return  # sent again after a reconnect
            self._last_ended_utterance = utterance
            released_t, self._release_to_pair = self._release_to_pair, None
        if released_t is not None:
            self.add("release_to_activity_end_ms", (t - released_t) * 1000)

    def silenced(self, t: float) -> None:
        with self._lock:
            pressed_t, self._press_to_pair = self._press_to_pair, None
        if pressed_t is not None:
            self.add("barge_in_ms", (t - pressed_t) * 1000)

    def reply_received(self, chunk: int, t: float) -> None:
        with self._lock:
            self._received[chunk] = t

    def reply_written(self, chunks: Sequence[int], t: float, ready_t: float, woken_by: int | None) -> None:
        with self._lock:
            received = self._received
            if woken_by is not None:
                ready_t = received.get(woken_by, ready_t)
            for chunk in chunks:
                received_t = received.pop(chunk, None)
                if received_t is not None:
                    self.add("reply_to_speaker_ms", (t - max(received_t, ready_t)) * 1000)
            # Numbers rise in the order received: one before the last written that is still
            # here was dropped (by the core, or by a stop) and never will be written.
            last = chunks[-1]
            while received:
                oldest = next(iter(received))
                if oldest > last:
                    break
                del received[oldest]

    def reply_audible(self, t: float) -> None:
        """Only the first reply after each release counts (not follow-ups)."""
        with self._lock:
            released_t, self._released_t = self._released_t, None
        if released_t is not None:
            self.add("first_sound_ms", (t - released_t) * 1000 - self.thinking_ms)

    # -- link timing (the daemon calls these from its dispatch) -------------------------------

    def link_event(self, event: LinkUp | LinkDown | GoAway) -> None:
        if isinstance(event, LinkUp):
            self.link_up(event.t, event.resumed)
        elif isinstance(event, LinkDown):
            self.link_down(event.t)
        else:
            self.goaway()

    @property
    def goaway_pending(self) -> bool:
        """A GoAway came and the connection it announced the end of is still the current one."""
        return self._goaway_seen

    def goaway(self) -> None:
        """The server announced it will close this connection."""
        self._goaway_seen = True

    def link_closed(self, t: float) -> None:
        """The core closed the connection on purpose (a GoAway switch times from here)."""
        if self._goaway_seen:
            self._goaway_seen = False
            self._switch_t = t

    def link_down(self, t: float) -> None:
        """The connection was lost: the reconnect times from here."""
        self._goaway_seen = False
        self._switch_t = None
        if self._down_t is None:
            self._down_t = t

    def link_up(self, t: float, resumed: bool) -> None:
        if resumed:
            self.resumed_links += 1
        else:
            self.fresh_links += 1
        if self._down_t is not None:
            self.add("reconnect_ms", (t - self._down_t) * 1000)
        elif self._switch_t is not None:
            self.add("goaway_gap_ms", (t - self._switch_t) * 1000)
        self._down_t = None
        self._switch_t = None

    def snapshot(self) -> dict[str, Any]:
        """The series and counters as plain JSON-able data."""
        return {
            "series": {name: list(values) for name, values in self.series.items()},
            "resumed_links": self.resumed_links,
            "fresh_links": self.fresh_links,
        }


class NullProbe(Metrics):
    """The probe switched off: the device's own do-nothing metrics (the overhead baseline)."""

    goaway_pending = False

    def link_event(self, event: LinkUp | LinkDown | GoAway) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"series": {}, "resumed_links": 0, "fresh_links": 0}

"""The microphone: a thread waiting on the sound card, handing periods to the event loop.

Each period is delivered with its sample position (16 kHz mono samples since the
microphone opened) and the monotonic time it was read. The same numbers make the capture
clock: :meth:`Microphone.position_now` turns "now" into a sample position, which is how a
button press on another thread is stamped with the sample it happened at.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from edgevoice.audio.alsa import SAMPLE_BYTES, AudioDeviceError, CaptureDevice, granted_buffer_frames
from edgevoice.audio.scheduling import make_this_thread_realtime

log = logging.getLogger(__name__)

# Periods handed over together: [(position, pcm, t), ...], oldest first.
FrameSink = Callable[[list[tuple[int, bytes, float]]], None]

# A device may deliver at most this many periods ahead of the clock before reads are held
# back. A sound card's read() blocks until a period is captured, so it never gets ahead;
# one that returns at once (ALSA's `null`, a broken driver) would spin this thread, flood
# the event loop with periods and starve its signal handling.
MAX_PERIODS_AHEAD = 2
# The most periods one piece takes while the thread catches up with what the card holds.
MAX_CATCH_UP_PERIODS = 16
# Periods of the card's buffer an idle read-ahead leaves free: a thread woken late on a
# busy board still reads before the card overruns.
READ_AHEAD_ROOM_PERIODS = 4
# Shorter stretches are not worth the room they take from a small card's buffer: a thread
# woken late by a busy board eats into it at every stretch, and a stretch of two or three
# periods saves few wake-ups.
MIN_READ_AHEAD_PERIODS = 4


def idle_read_ahead_for(wanted: int, buffer_frames: int | None, period_frames: int) -> int:
    """The idle read-ahead (periods) a card's buffer allows: ``wanted``, or fewer where the
    card granted a smaller buffer than was asked for, with :data:`READ_AHEAD_ROOM_PERIODS`
    to spare; 0 (off) where that leaves fewer than :data:`MIN_READ_AHEAD_PERIODS` (a card
    that holds under 160 ms at 20 ms periods). ``buffer_frames`` None: the device
    does not say, and ``wanted`` stands."""
    if wanted <= 0 or buffer_frames is None:
        return max(wanted, 0)
    allowed = buffer_frames // period_frames - READ_AHEAD_ROOM_PERIODS
    return min(wanted, allowed) if allowed >= MIN_READ_AHEAD_PERIODS else 0


class Microphone:
    """Runs ``open_device()`` and reads it in a thread until :meth:`stop`.

    ``on_frames([(position, pcm, t), ...])`` is called on the capture thread; the daemon
    hands the periods to the loop with one ``call_soon_threadsafe``. While nobody speaks,
    ``batch`` periods go together (each hand-over wakes the loop; waking it 50 times a
    second to fill the pre-roll history costs more than the history itself); while an
    utterance is open, ``batch`` is 1 and every period goes at once.
    ``idle_read_ahead`` (periods, 0: off): while ``batch`` is above 1 the thread also sleeps
    until the card holds that many periods and reads them back to back, so an idle
    microphone wakes its thread twice per stretch instead of once per period. A card whose
    buffer (as granted, :func:`idle_read_ahead_for`) cannot hold them with room to spare
    gets a shorter stretch. A press wakes it at once.
    ``read_periods``: how many periods make one read, handed over as one piece. While an
    utterance streams the daemon reads two (40 ms), as a client that opens the card with
    a longer period would: each piece is one hand-over, one dispatch and one frame on the
    wire, and the model answers only after the release, so the speech that waits a period
    longer in the middle of an utterance costs the user nothing.
    A button edge also cuts the read in progress short (:meth:`CaptureDevice.cut_short`):
    the samples up to a release go to the loop at once, not when the read fills.
    ``on_problem(text | None)`` reports a device problem (and its end) for the status line.
    """

    def __init__(
        self,
        open_device: Callable[[], CaptureDevice],
        *,
        rate: int,
        period_frames: int,
        on_frames: FrameSink,
        on_problem: Callable[[str | None], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 5.0,
        idle_read_ahead: int = 0,
        paced: bool = True,
    ) -> None:
        self._open_device = open_device
        self.rate = rate
        self.period_frames = period_frames
        self._on_frames = on_frames
        self.batch = 1
        self.read_periods = 1
        self.idle_read_ahead = idle_read_ahead
        # What the card being read allows of it.
        self.read_ahead_now = idle_read_ahead
        # Set by a press (and stop()): ends an idle read-ahead sleep at once.
        self._wake = threading.Event()
        self._pending: list[tuple[int, bytes, float]] = []
        self._on_problem = on_problem or (lambda _text: None)
        self._heartbeat = heartbeat or (lambda: None)
        self._clock = clock
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        # False only for a simulated microphone that runs ahead of the clock on purpose.
        self._paced = paced
        self.held_back = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The device being read (the thread's), for cut_short() from other threads.
        self._device: CaptureDevice | None = None
        # (end position, time it was read) of the last read that waited for the card (one
        # that returned at once took older audio, so its time says nothing), and the end of
        # everything delivered: one tuple so another thread reads a consistent triple.
        self._clock_point: tuple[int, float, int] = (0, clock(), 0)
        # Held while a period is handed over, and while a button event is stamped and
        # handed over, so the loop receives them in sample order.
        self._handover = threading.Lock()
        # The read of several periods in progress (read_periods): the periods taken so
        # far, where they start and when the newest was read. Under the hand-over lock, so
        # that a button edge hands them over before it is posted.
        self._piece: list[bytes] = []
        self._piece_start = 0
        self._piece_t = 0.0
        # Set by a button edge: the read in progress ends its piece, whole period or not
        # (a cut that comes once the card holds the whole period takes it all).
        self._end_piece_at_next_read = False
        # Button edges stamped at a position the thread has not read up to yet (the card
        # still holds what came before them, after an idle read-ahead sleep): (position,
        # post), posted in order once every period before the position has gone.
        self._edges: deque[tuple[int, Callable[[int], None]]] = deque()
        self.overruns = 0
        self.reopens = 0
        self.frames_delivered = 0

    def start(self, device: CaptureDevice | None = None) -> None:
        """Start the thread. ``device`` is an already opened device (so that opening errors
        surface before the daemon reports ready); otherwise the thread opens it."""
        self._thread = threading.Thread(
            target=self._run, args=(device,), name="edgevoice-capture", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        self._cut_read_short()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def position_now(self) -> int:
        """The sample position of this instant by the capture clock: the time elapsed since
        the last read that waited for the card. Never before the newest delivered sample,
        and never past what the card can hold unread (one read, or an idle read-ahead
        stretch while the thread sleeps, and one period more)."""
        end, read_t, delivered = self._clock_point
        now = end + int((self._clock() - read_t) * self.rate)
        unread = self.period_frames * (max(1, self.read_periods, self.read_ahead_now) + 1)
        return min(max(now, delivered), delivered + unread)

    def stamp_and_post(self, post: Callable[[int], None], exact: Callable[[], int] | None = None) -> None:
        """Call ``post(position)`` so that every period before that position reaches the
        loop first, and none after it. ``position`` is ``position_now()`` by the capture
        clock, or ``exact()`` where the sample of the edge is known (the simulator).

        After an idle read-ahead sleep the card may still hold the periods before the
        edge: the thread, woken at once, reads them and posts the edge after them (within
        a millisecond), so that the edge keeps its own sample and the pre-roll before it
        is the pre-roll asked for, not that plus whatever the card was holding."""
        with self._handover:
            # The loop must hold every period before the edge when the edge reaches it,
            # the periods of an unfinished read included: the edge ends that read now.
            self._end_piece(ended_t=self._clock())
            self._flush()
            self._end_piece_at_next_read = True
            # A button edge means someone is talking: every period counts from now on,
            # even before the loop has seen the press.
            self.batch = 1
            self._wake.set()
            self._edges.append((exact() if exact is not None else self.position_now(), post))
            reading = self._device is not None and self._thread is not None and self._thread.is_alive()
            self._post_edges(self._one_read_past_delivered(), every=not reading)
        # The samples up to the edge are wanted now (a release's end the utterance): the
        # read in progress ends with what the card holds rather than waiting for the period.
        self._cut_read_short()

    def _post_edges(self, reach: int, *, every: bool = False) -> None:
        """Under the hand-over lock: post the waiting edges at or before ``reach``, every
        period before them having gone to the loop (the read that holds them goes after).
        ``every``: the rest too, at ``reach`` at most, where the thread will not read up to
        them (no device, an overrun, closing)."""
        while self._edges and (every or self._edges[0][0] <= reach):
            position, post = self._edges.popleft()
            post(min(position, reach))

    def _cut_read_short(self) -> None:
        device = self._device
        if device is not None:
            device.cut_short()

    def _run(self, device: CaptureDevice | None) -> None:
        make_this_thread_realtime("capture")
        position = 0
        caught_up = False  # the last read waited for the card: it holds nothing more
        delay = self._retry_initial_s
        # When the samples read so far are due by the clock (a token bucket: a card that
        # falls behind and catches up from its buffer earns no credit for later).
        due_t = self._clock()
        period_s = self.period_frames / self.rate
        gathered_s = 0.0  # audio the card was left to gather on purpose (idle read-ahead)
        if device is not None:
            self._fit_read_ahead(device)
        while not self._stop.is_set():
            if device is None:
                try:
                    device = self._open_device()
                except AudioDeviceError as exc:
                    self._on_problem(str(exc))
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    self._stop.wait(delay)
                    self._heartbeat()
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                self.reopens += 1
                self._on_problem(None)
                delay = self._retry_initial_s
                self._fit_read_ahead(device)
            self._device = device
            read_ahead = self.read_ahead_now if self.batch > 1 else 0
            if read_ahead > 0 and caught_up:
                # Nobody speaks: let the card gather periods, then read them together.
                self._wake.wait(read_ahead * self.period_frames / self.rate)
                self._wake.clear()
                caught_up = False
                # The card gathered those periods meanwhile: reading them now is not
                # running ahead of the clock.
                gathered_s = read_ahead * period_s
                if self._stop.is_set():
                    break
            if self._paced:
                now = self._clock()
                due_t = max(due_t, now - gathered_s)
                if due_t - now > MAX_PERIODS_AHEAD * period_s:
                    # Running ahead of the clock: this device does not block. Read it at
                    # the pace a sound card would deliver.
                    self.held_back += 1
                    if self.held_back == 1:
                        log.warning("the capture device delivers faster than real time "
                                    "(it does not block); reading it at the clock's pace")
                    if self._stop.wait(due_t - now - period_s):
                        break
            try:
                asked_t = self._clock()
                length, data = device.read()
            except Exception as exc:  # the device went away (ENODEV, EBADFD, EIO...)
                self._hand_over_piece()
                log.warning("microphone read failed: %s; reopening", exc)
                self._on_problem(f"microphone failed: {exc}")
                self._device = None
                self._post_waiting_edges()
                _close_quietly(device)
                device = None
                continue
            # Every read counts as at least a period of time, so that a device that keeps
            # returning nothing (or errors) is held back like one that returns too much.
            read_s = (len(data) // SAMPLE_BYTES if length > 0 and data else self.period_frames) / self.rate
            due_t += read_s
            gathered_s = max(0.0, gathered_s - read_s)
            if length < 0:
                # -EPIPE: an overrun. pyalsaaudio has already re-prepared the PCM; audio
                # was lost but the stream goes on.
                self._hand_over_piece()
                # The card's audio before a waiting edge is lost, not late: don't wait for it.
                self._post_waiting_edges()
                self.overruns += 1
                log.debug("capture overrun (%d)", length)
                continue
            if not data:
                # The card gave nothing in a whole wait (stalled, or closing): an edge must
                # not wait for audio that may never come.
                self._post_waiting_edges()
                continue
            t = self._clock()
            # A read that returned at once took audio the card already held.
            waited = t - asked_t >= self.period_frames / self.rate / 4
            caught_up = caught_up or waited
            # Reading what the card gathered during an idle sleep: hand it over in one go
            # when the stretch ends (one loop wake-up), unless it grows unusually long.
            stretch = read_ahead > 0 and not waited
            with self._handover:
                if self._edges and self._edges[0][0] < position + len(data) // SAMPLE_BYTES:
                    # This read reaches a waiting edge: what came before goes first, then the
                    # edge, then this read (the edge falls within it).
                    self._end_piece()
                    self._flush()
                    self._post_edges(position + len(data) // SAMPLE_BYTES)
                self._piece.append(data)
                self._piece_t = t
                position += len(data) // SAMPLE_BYTES
                # A cut, a short read or the last of its periods ends the read; behind the
                # card, the read goes on with what it holds.
                if (
                    self._end_piece_at_next_read
                    or len(data) // SAMPLE_BYTES < self.period_frames
                    or (
                        position - self._piece_start >= self.read_periods * self.period_frames
                        and (waited or not self._catching_up(position, t))
                    )
                ):
                    self._end_piece_at_next_read = False
                    self._end_piece()
                    pending = len(self._pending)
                    if pending >= self.batch and not (stretch and pending < self._stretch_limit()):
                        self._flush()
                end, read_t, delivered = self._clock_point
                self._clock_point = (position, t, delivered) if waited else (end, read_t, delivered)
            self._heartbeat()
        self._device = None
        self._post_waiting_edges()
        if device is not None:
            _close_quietly(device)

    def _fit_read_ahead(self, device: CaptureDevice) -> None:
        buffer_frames = granted_buffer_frames(device)
        allowed = idle_read_ahead_for(self.idle_read_ahead, buffer_frames, self.period_frames)
        if allowed != self.idle_read_ahead and allowed != self.read_ahead_now:
            log.info(
                "the microphone's card holds %d ms: letting %d periods gather while idle, not %d",
                (buffer_frames or 0) * 1000 // self.rate, allowed, self.idle_read_ahead,
            )
        self.read_ahead_now = allowed

    def _catching_up(self, position: int, t: float) -> bool:
        """The card already holds another whole period past ``position`` (by the capture
        clock), and someone is talking: the thread is behind, reading what the card
        gathered (at a press, after an idle read-ahead sleep), and its next reads return at
        once. They go to the loop in one piece rather than one hand-over each: each
        hand-over is a loop wake-up, a dispatch and a websocket frame, and the last of a
        dozen waited for all the others. Only on a paced card (the clock says what it
        holds) and up to :data:`MAX_CATCH_UP_PERIODS`."""
        if not self._paced or self.batch != 1:
            return False
        if position - self._piece_start >= MAX_CATCH_UP_PERIODS * self.period_frames:
            return False
        end, read_t, _ = self._clock_point
        return end + (t - read_t) * self.rate - position >= self.period_frames

    def _stretch_limit(self) -> int:
        """Pieces of an idle stretch held for one hand-over: the stretch, and some more."""
        return max(4 * self.batch, self.read_ahead_now + 2)

    def _post_waiting_edges(self) -> None:
        """The thread will not read up to the waiting edges (the card failed, overran or is
        closing): post them now, at most one read past what was delivered."""
        with self._handover:
            self._post_edges(self._one_read_past_delivered(), every=True)

    def _one_read_past_delivered(self) -> int:
        return self._piece_start + self.period_frames * max(1, self.read_periods)

    def _hand_over_piece(self) -> None:
        """The periods of a read that an error ends go to the loop as they are."""
        with self._handover:
            if self._piece:
                self._end_piece()
                self._flush()

    def _end_piece(self, ended_t: float | None = None) -> None:
        """Under the hand-over lock: the periods read so far become one (position, pcm, t)
        for the loop; ``t`` is when the read ended: its last period's, or ``ended_t``."""
        if not self._piece:
            return
        data = self._piece[0] if len(self._piece) == 1 else b"".join(self._piece)
        self._piece = []
        t = self._piece_t if ended_t is None else ended_t
        self._pending.append((self._piece_start, data, t))
        self._piece_start += len(data) // SAMPLE_BYTES
        end, read_t, _ = self._clock_point
        self._clock_point = (end, read_t, self._piece_start)
        self.frames_delivered += 1

    def _flush(self) -> None:
        if self._pending:
            periods, self._pending = self._pending, []
            self._on_frames(periods)
        if self._edges:
            self._post_edges(self._piece_start)


def contiguous_runs(periods: list[tuple[int, bytes, float]]) -> list[tuple[int, bytes, float]]:
    """Consecutive periods joined: ``(position, pcm, t)`` of each run of periods where each
    starts where the one before ended; ``t`` is when the run's newest period was read."""
    if len(periods) == 1:  # while talking: one period per hand-over, nothing to join
        return periods
    runs: list[tuple[int, bytes, float]] = []
    chunks: list[bytes] = []
    start = end = 0
    newest_t = 0.0
    for position, pcm, t in periods:
        if chunks and position != end:
            runs.append((start, b"".join(chunks), newest_t))
            chunks = []
        if not chunks:
            start = position
        chunks.append(pcm)
        end = position + len(pcm) // SAMPLE_BYTES
        newest_t = t
    if chunks:
        runs.append((start, b"".join(chunks), newest_t))
    return runs


def _close_quietly(device: CaptureDevice) -> None:
    try:
        device.close()
    except Exception:  # closing a dead device must not mask why it died
        log.debug("closing the capture device failed", exc_info=True)

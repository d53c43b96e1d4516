"""Simulated sound card and button around the real libraries.

The PCMs are real pyalsaaudio PCMs on libasound's file plugin; the button is a real
gpiozero ``Button`` on a mock pin. What this module adds is what the file plugin lacks: a
clock. The microphone is paced like a sound card (or runs as fast as the daemon can take
it), the speaker drains its buffer at its sample rate, and the button changes state when
the simulated capture reaches the sample the schedule names, so a run is deterministic
whether paced or not.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import alsaaudio

from edgevoice.audio.alsa import SAMPLE_BYTES
from edgevoice.errors import UserError


@dataclass(frozen=True, order=True)
class ButtonEdge:
    position: int  # 16 kHz sample position at which the button changes state
    pressed: bool


class ButtonSchedule:
    """Presses given as (start, end) seconds into the microphone file."""

    def __init__(self, presses: list[tuple[float, float]], rate: int) -> None:
        edges: list[ButtonEdge] = []
        previous_end = -1.0
        for start, end in sorted(presses):
            if not (math.isfinite(start) and math.isfinite(end)):
                raise UserError(f"--press {start:g}:{end:g}: the times must be finite numbers of seconds")
            if start < 0:
                raise UserError(
                    f"--press {start:g}:{end:g}: the press starts before the recording does "
                    "(times count from 0 s, the start of the microphone file)"
                )
            if end <= start:
                raise UserError(f"--press {start:g}:{end:g}: the release must come after the press")
            if start <= previous_end:
                raise UserError(f"--press {start:g}:{end:g} overlaps the press before it")
            previous_end = end
            edges.append(ButtonEdge(round(start * rate), True))
            edges.append(ButtonEdge(round(end * rate), False))
        self.edges = edges
        self.rate = rate

    @property
    def last_position(self) -> int:
        return self.edges[-1].position if self.edges else 0

    @staticmethod
    def parse(spec: str) -> tuple[float, float]:
        try:
            start_text, end_text = spec.split(":")
            return float(start_text), float(end_text)
        except ValueError:
            raise UserError(f"--press {spec!r}: expected START:END in seconds, e.g. 0.5:2.0") from None


class SimulatedCapture:
    """A capture PCM that follows the schedule and a clock.

    ``realtime``: periods are delivered at the sound card's pace, edges at their wall-clock
    instant. Otherwise periods come as fast as the daemon consumes them (at most
    ``in_flight`` ahead), and before each press the simulated user waits until the device
    is quiet (the previous answer finished), the way a person waits for an answer.
    """

    def __init__(
        self,
        pcm: Any,
        *,
        rate: int,
        period_frames: int,
        schedule: ButtonSchedule,
        drive_button: Callable[[bool], None],
        realtime: bool,
        ready_for_press: Callable[[float], bool],
        clock: Callable[[], float] = time.monotonic,
        in_flight: int = 8,
    ) -> None:
        self._pcm = pcm
        self.rate = rate
        self.period_frames = period_frames
        self._edges = deque(schedule.edges)
        self._drive_button = drive_button
        self._realtime = realtime
        self._ready_for_press = ready_for_press
        self._clock = clock
        self._closed = threading.Event()
        self._in_flight = in_flight
        self._credits = threading.Semaphore(in_flight)
        self._t0: float | None = None
        self.position = 0
        # Where the daemon now reading started: a restarted daemon counts from zero.
        self.base = 0
        # The exact position of the edge being driven now, for the button's stamp.
        self.edge_position = 0
        self.schedule_done = threading.Event()
        if not self._edges:
            self.schedule_done.set()
        self._reading = threading.Lock()
        self._generation = 0
        # A cut (the daemon's microphone at a button edge): a paced read ends with the
        # samples due by the clock, as a card read without blocking does.
        self._cut = False
        self._interrupt = threading.Event()
        # The rest of a period the card gave beyond a cut read, for the next read.
        self._carry = bytearray()

    def frame_consumed(self) -> None:
        """The daemon has taken one period (releases the back-pressure credit)."""
        self._credits.release()

    def edge_position_now(self) -> int:
        """The exact sample of the edge being driven, counted the way the daemon reading
        now counts (a restarted daemon starts from zero)."""
        return self.edge_position - self.base

    def attach(self) -> SimulatedCapture:
        """A new daemon starts reading (the device outlives a daemon restart)."""
        with self._reading:
            # A read the old daemon's thread is still inside ends without a period: had
            # it taken one after this point, the new daemon's positions would be a period
            # off the microphone's.
            self._generation += 1
            self.base = self.position
            # Periods the old daemon read but never handed to its loop will never be counted
            # as consumed: without fresh credits a new daemon reading in batches could wait
            # forever for a credit its own unposted periods hold.
            self._credits = threading.Semaphore(self._in_flight)
        return self

    def read(self) -> tuple[int, bytes]:
        if self._t0 is None:
            self._t0 = self._clock()
        generation = self._generation
        start = self.position
        end = start + self.period_frames
        while self._edges and self._edges[0].position < end and not self._closed.is_set():
            edge = self._edges[0]
            if self._realtime:
                self._wait_until(self._t0 + edge.position / self.rate)
            elif edge.pressed:
                while not self._ready_for_press(0.1):
                    if self._closed.is_set() or generation != self._generation:
                        return 0, b""
            if generation != self._generation:
                return 0, b""  # a new daemon reads now: the edge is its to see
            self._edges.popleft()
            self.edge_position = max(edge.position, start)
            self._drive_button(edge.pressed)
        frames = self.period_frames
        if self._realtime or self.schedule_done.is_set():
            # After the last edge even a fast run is paced: the tail is only silence.
            frames = self._frames_due(start)
        else:
            self._cut = False  # a fast run has no clock to cut by
            credits = self._credits
            while not credits.acquire(timeout=0.1):
                if self._closed.is_set() or generation != self._generation:
                    return 0, b""
        with self._reading:
            if generation != self._generation:
                return 0, b""
            length, data = self._take(frames)
            self.position += max(length, 0)
        if not self._edges and self.position > start:
            self.schedule_done.set()
            if not self._realtime:
                self._t0 = self._clock() - self.position / self.rate
        return length, data

    def cut_short(self) -> None:
        self._cut = True
        self._interrupt.set()

    def close(self) -> None:
        """The daemon let go of the device; it stays open for a restarted daemon."""

    def shutdown(self) -> None:
        self._closed.set()
        self._interrupt.set()
        self._pcm.close()

    def _frames_due(self, start: int) -> int:
        """Wait until the period from ``start`` is captured by the clock, or a cut comes
        and part of it is; how many frames that is."""
        assert self._t0 is not None
        while not self._closed.is_set():
            due = int((self._clock() - self._t0) * self.rate) - start
            if due >= self.period_frames:
                break
            if self._cut:
                self._cut = False
                if due > 0:
                    return due
            self._interrupt.clear()
            if not self._cut:  # (one that came meanwhile is seen at once)
                # Pacing a simulated device by the clock, the way a sound card blocks.
                self._interrupt.wait((self.period_frames - due) / self.rate)
        self._cut = False
        return self.period_frames

    def _take(self, frames: int) -> tuple[int, bytes]:
        """``frames`` from the card, which gives whole periods: the rest waits for the next read."""
        wanted = frames * SAMPLE_BYTES
        while len(self._carry) < wanted:
            length, data = self._pcm.read()
            if length <= 0:
                return length, data
            self._carry += data
        data = bytes(self._carry[:wanted])
        del self._carry[:wanted]
        return frames, data

    def _wait_until(self, deadline: float) -> None:
        remaining = deadline - self._clock()
        if remaining > 0:
            # Pacing a simulated device by the clock, the way a sound card blocks.
            self._closed.wait(remaining)


class SimulatedPlayback:
    """A playback PCM that drains like a sound card.

    ``paced``: the card holds at most ``buffer_frames`` and plays them at ``rate``; audio
    reaches the output file as it is played, so a barge-in's ``drop()`` discards what was
    still queued, as on real hardware. Unpaced: everything written is played at once.
    """

    def __init__(
        self,
        pcm: Any,
        *,
        rate: int,
        channels: int,
        buffer_frames: int,
        paced: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pcm = pcm
        self.rate = rate
        self._frame_bytes = SAMPLE_BYTES * channels
        self.buffer_frames = buffer_frames
        self._paced = paced
        self._clock = clock
        self._queue = bytearray()
        self._started_at = 0.0
        self._played = 0  # frames played since the card (re)started
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._closed = threading.Event()
        self.frames_written = 0
        self.frames_dropped = 0
        self._drops = 0
        # Frames that reached the output file: what the listener has heard so far.
        self.frames_played = 0

    def write(self, data: bytes) -> int:
        frames = len(data) // self._frame_bytes
        self.frames_written += frames
        if not self._paced:
            self._pcm.write(data)
            self.frames_played += frames
            return frames
        drops_before = self._drops
        with self._space:
            while not self._closed.is_set():
                if self._drops != drops_before:
                    # Like the kernel: a write blocked when the stream is dropped fails.
                    raise alsaaudio.ALSAAudioError("File descriptor in bad state [edgevoice_speaker]")
                self._advance()
                space = self.buffer_frames - len(self._queue) // self._frame_bytes
                if space >= frames or (not self._queue):
                    if not self._queue:
                        # The card had run dry (or never started): it starts again now.
                        self._started_at = self._clock()
                        self._played = 0
                    self._queue += data
                    return frames
                # Pacing a simulated card by the clock; drop() and shutdown() wake it.
                self._space.wait((frames - space) / self.rate)
        return frames

    def heard_frames(self) -> int:
        """Frames played up to this instant (for tests aligning the output with events)."""
        with self._lock:
            self._advance()
            return self.frames_played

    def avail(self) -> int:
        with self._lock:
            self._advance()
            return self.buffer_frames - len(self._queue) // self._frame_bytes

    def drop(self) -> None:
        with self._lock:
            self._advance()
            self.frames_dropped += len(self._queue) // self._frame_bytes
            self._queue.clear()
            self._drops += 1
            self._space.notify_all()

    def close(self) -> None:
        """The daemon let go of the device; it stays open for a restarted daemon."""

    def shutdown(self) -> None:
        with self._lock:
            if self._queue:
                self._pcm.write(bytes(self._queue))
                self.frames_played += len(self._queue) // self._frame_bytes
                self._queue.clear()
            self._closed.set()
            self._space.notify_all()
        self._pcm.close()

    def _advance(self) -> None:
        if not self._queue:
            return
        due = int((self._clock() - self._started_at) * self.rate) - self._played
        if due <= 0:
            return
        take = min(due, len(self._queue) // self._frame_bytes)
        chunk = bytes(self._queue[: take * self._frame_bytes])
        del self._queue[: take * self._frame_bytes]
        self._played += take
        self._pcm.write(chunk)
        self.frames_played += take

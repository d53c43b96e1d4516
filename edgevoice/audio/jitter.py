"""Reply audio jitter buffer: a plain object between the network and the speaker.

Gemini sends reply audio in bursts, faster or slower than real time; the speaker wants a
steady period every few milliseconds. This buffer evens that out, with no threads and no
clock inside: the caller pushes reply chunks as they arrive and pulls one device period at
a time, saying whether the device would run dry without data.

Semantics:
- A reply starts playing once ``prebuffer_ms`` of it is queued, or once ``end_of_reply()``
  says no more is coming (a short reply plays without waiting).
- While a reply plays, a pull takes whatever is queued. If the queue runs dry mid-reply and
  the device is starving, the pull is padded with counted underrun silence; on a device
  that is not starving (an unpaced file sink) the buffer just waits ("idle").
- When a reply's last frame has been pulled (after ``end_of_reply()``), the buffer goes
  back to waiting for the next reply's prebuffer. Audio pushed after ``end_of_reply()``
  belongs to the next reply even if the previous one is still playing.
- ``interrupt()`` (barge-in, server "interrupted") drops everything queued. If a reply was
  playing, the next few milliseconds of it are kept and faded out with a raised-cosine ramp
  ending at zero, so the cut does not click.

With an :class:`AdaptiveTarget` (what the daemon uses) the fixed prebuffer gives way to a
target that adapts the way WebRTC's NetEQ does, with the device's periods as the clock:

- the target starts small (``start_ms``, 0: a reply plays with its first chunk), so an
  answer costs no waiting while the network keeps up;
- an underrun grows it (doubling, by at least ``step_ms``, at most ``max_ms``), and the dry
  spell lasts until the queue holds the new target *and* the audio that arrived over the
  last ``catch_up_ms`` of the spell kept up with real time: a server that is slower than
  real time for a while gives one longer gap instead of a stutter per chunk;
- each ``shrink_after_ms`` of playing without an underrun takes a step back towards
  ``start_ms`` (fast up, slow down).

PCM is S16_LE mono ``bytes`` at ``rate``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

from edgevoice.audio import pcm16

_SAMPLE_BYTES: Final = 2
MAX_VOLUME: Final = 4.0

PullKind = Literal["audio", "underrun", "idle"]


@dataclass(frozen=True, slots=True)
class Pull:
    """One device period's worth of output.

    ``kind``: "audio" (reply audio, possibly followed by silence padding), "underrun"
    (the reply is playing but nothing is queued: silence, counted), "idle" (nothing to
    play: write nothing). ``pcm`` is ``frames * 2`` bytes except for "idle" (``b""``) and,
    in adaptive mode, for a starving pull with less than a period queued: that part, as is.
    ``audio_frames`` is how many frames at the start of ``pcm`` are reply audio; the rest
    is silence.
    """

    kind: PullKind
    pcm: bytes
    audio_frames: int
    # This pull hands out the first frames of a reply (the moment "first sound" is timed to).
    starts_reply: bool = False


@dataclass(slots=True)
class JitterCounters:
    """Running totals, for logs and metrics."""

    # Times the queue ran dry mid-reply while the device needed data (one per dry spell).
    underruns: int = 0
    # Silence frames handed out because of those.
    underrun_frames: int = 0
    # Reply frames handed out, fade-out frames included.
    played_frames: int = 0
    # Reply frames discarded by interrupt().
    dropped_frames: int = 0
    interrupts: int = 0
    # Adaptive target: times it grew after an underrun and shrank after a quiet stretch.
    target_raises: int = 0
    target_cuts: int = 0


@dataclass(frozen=True, slots=True)
class AdaptiveTarget:
    """How much reply audio the buffer holds back, learned from underruns (see the module
    docstring). Milliseconds of reply audio; device time is counted in pulled frames."""

    start_ms: float = 0.0
    step_ms: float = 40.0
    max_ms: float = 400.0
    shrink_after_ms: float = 10_000.0
    catch_up_ms: float = 200.0

    def __post_init__(self) -> None:
        for name in ("start_ms", "step_ms", "max_ms", "shrink_after_ms", "catch_up_ms"):
            _check_non_negative(name, getattr(self, name))
        if self.start_ms > self.max_ms:
            raise ValueError(f"start_ms ({self.start_ms:g}) must not exceed max_ms ({self.max_ms:g})")


def _check_non_negative(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    return float(value)


class JitterBuffer:
    """See the module docstring for the playback semantics."""

    def __init__(
        self,
        rate: int = 24000,
        prebuffer_ms: float = 100,
        fade_ms: float = 5,
        volume: float = 1.0,
        *,
        adaptive: AdaptiveTarget | None = None,
    ) -> None:
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"rate must be a positive integer in Hz, got {rate!r}")
        self.rate = rate
        prebuffer_ms = _check_non_negative("prebuffer_ms", prebuffer_ms)
        self.prebuffer_frames = round(prebuffer_ms * rate / 1000)
        self.fade_frames = round(_check_non_negative("fade_ms", fade_ms) * rate / 1000)
        self._volume = 1.0
        self.volume = volume
        self.counters = JitterCounters()
        self._queue = bytearray()
        # A lone byte of a sample split across two pushes.
        self._half_sample = b""
        # Frame counts since creation: everything ever queued, and everything taken out of
        # the queue (played, moved to a fade-out, or dropped). Reply ends are positions on
        # the "queued" count, so audio pushed after end_of_reply() is the next reply's.
        self._queued_total = 0
        self._taken_total = 0
        self._reply_ends: deque[int] = deque()
        self._playing = False
        self._dry = False
        self._fade_out = b""
        # Adaptive mode: the target (frames), the frames played since the last underrun or
        # cut, the device clock (frames handed out, silence included) and what arrived
        # over its last ``catch_up_ms`` as (clock, frames).
        self.adaptive = adaptive
        self._target = self._frames(adaptive.start_ms) if adaptive else self.prebuffer_frames
        self._since_underrun = 0
        self._clock = 0
        # The device clock less what the card still held at the last pull (what had been
        # heard by then), when the caller says; arrivals are timed by it. A card that
        # takes audio ahead of time (a deep one, filled several periods at once) would
        # otherwise make a burst look like a server keeping up.
        self._heard: int | None = None
        self._arrivals: deque[tuple[int, int]] = deque()
        self._arrived = 0

    # -- properties ------------------------------------------------------------------

    @property
    def volume(self) -> float:
        return self._volume

    @volume.setter
    def volume(self, value: float) -> None:
        value = _check_non_negative("volume", value)
        if value > MAX_VOLUME:
            raise ValueError(f"volume must be at most {MAX_VOLUME}, got {value!r}")
        self._volume = value

    @property
    def playing(self) -> bool:
        """A reply is in progress: it started (prebuffer reached) and has not ended."""
        return self._playing

    @property
    def target_ms(self) -> float:
        """What a reply must have queued before it starts (the fixed prebuffer, or the
        adaptive target as it stands)."""
        return self._target * 1000 / self.rate

    def ready_frames(self) -> int:
        """Reply audio the next pull hands out as it is, unpadded: what is queued of the
        reply playing now (0 before it starts, in a dry spell, or with a fade-out due)."""
        if not self._playing or self._dry or self._fade_out:
            return 0
        return self._head_reply_frames()

    @property
    def buffered_ms(self) -> float:
        """Audio waiting to be pulled (a pending fade-out included)."""
        frames = (len(self._queue) + len(self._fade_out)) // _SAMPLE_BYTES
        return frames * 1000 / self.rate

    # -- events ----------------------------------------------------------------------

    def push(self, pcm: bytes) -> None:
        """Reply audio arrived."""
        if self._half_sample:
            pcm = self._half_sample + bytes(pcm)
            self._half_sample = b""
        if len(pcm) % _SAMPLE_BYTES:
            self._half_sample = bytes(pcm[-1:])
            pcm = pcm[:-1]
        self._queue += pcm
        frames = len(pcm) // _SAMPLE_BYTES
        self._queued_total += frames
        if self.adaptive is not None and frames:
            now = self._device_now()
            self._arrivals.append((now, frames))
            self._arrived += frames
            # Only the last catch-up window is ever asked about (device time only grows):
            # forget older arrivals now, or answers without a gap would pile them up.
            self._arrived_since(now - self._frames(self.adaptive.catch_up_ms))

    def end_of_reply(self) -> None:
        """No more audio for the current reply (generationComplete / turnComplete)."""
        # A split sample at the very end of a reply is not audio; never glue it to the next.
        self._half_sample = b""
        latest_reply_start = self._reply_ends[-1] if self._reply_ends else self._taken_total
        if self._queued_total > latest_reply_start:
            self._reply_ends.append(self._queued_total)
        elif self._playing and not self._reply_ends:
            # Everything of this reply has already been pulled (it ran dry): it is over.
            self._finish_reply()

    def interrupt(self, *, fade: bool = True) -> int:
        """Barge-in: drop the queue, fade out what was playing. Returns frames dropped.

        ``fade=False``: drop everything at once (for a caller that fades out from audio
        the sound card still held, which is what was actually playing)."""
        self.counters.interrupts += 1
        queued = len(self._queue) // _SAMPLE_BYTES
        keep = 0
        # In a dry spell the card plays silence: nothing to fade.
        if fade and self._playing and not self._dry and self.fade_frames and not self._fade_out:
            keep = min(self.fade_frames, self._head_reply_frames())
            self._fade_out = self._faded(bytes(self._queue[: keep * _SAMPLE_BYTES]))
        dropped = queued - keep
        self.counters.dropped_frames += dropped
        self._taken_total += queued
        self._queue.clear()
        self._half_sample = b""
        self._reply_ends.clear()
        self._playing = False
        self._dry = False
        # What arrived for the dropped reply says nothing about the next one's pace.
        self._arrivals.clear()
        self._arrived = 0
        return dropped

    def pull(self, frames: int, *, device_starving: bool, device_holds: int | None = None) -> Pull:
        """The device can take ``frames`` frames now.

        ``device_starving``: the device runs dry if nothing is written (a real, clock-paced
        card). False for an unpaced sink, where underrun silence must never be invented.
        ``device_holds``: frames the card has yet to play (adaptive mode times arrivals by
        what has been heard, not by what has been handed out).
        """
        if not isinstance(frames, int) or isinstance(frames, bool) or frames <= 0:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if device_holds is not None:
            self._heard = max(self._heard or 0, self._clock - device_holds)
        if self._fade_out:
            return self._pull_fade_out(frames)
        starts = False
        if not self._playing:
            if not self._try_start(frames):
                return Pull("idle", b"", 0)
            starts = True

        available = self._head_reply_frames()
        reply_ends_here = bool(self._reply_ends) and available <= frames
        if self._dry and self.adaptive is not None and not self._reply_ends and not self._spell_over():
            # Adaptive: the dry spell goes on until the queue is back to the target and the
            # server keeps up again (the reply's end plays whatever is left at once).
            if not device_starving:
                return Pull("idle", b"", 0)
            self._clock += frames
            self.counters.underrun_frames += frames
            return Pull("underrun", bytes(frames * _SAMPLE_BYTES), 0)
        if available >= frames and not reply_ends_here:
            self._dry = False
            self._played(frames)
            return Pull("audio", self._take(frames), frames, starts)
        if reply_ends_here:
            pcm = self._take(available)
            self._reply_ends.popleft()
            self._finish_reply()
            if not available:
                return Pull("idle", b"", 0)
            self._played(available)
            return Pull("audio", self._padded(pcm, frames), available, starts)
        # Mid-reply and the queue holds less than a period.
        if not device_starving:
            return Pull("idle", b"", 0)
        if self.adaptive is not None and available:
            # The card is about to run dry: hand out what there is, unpadded (the next
            # chunk may well come before the card has played it).
            self._dry = False
            self._played(available)
            return Pull("audio", self._take(available), available, starts)
        pcm = self._take(available)
        self._played(available)
        self.counters.underrun_frames += frames - available
        if not self._dry:
            self.counters.underruns += 1
            self._dry = True
            self._underrun()
        if self.adaptive is not None:
            self._clock += frames - available
        kind: PullKind = "audio" if available else "underrun"
        return Pull(kind, self._padded(pcm, frames), available, starts and bool(available))

    # -- internals -------------------------------------------------------------------

    def _head_reply_frames(self) -> int:
        """Queued frames that belong to the reply at the head of the queue."""
        end = self._reply_ends[0] if self._reply_ends else self._queued_total
        return end - self._taken_total

    def _frames(self, ms: float) -> int:
        return round(ms * self.rate / 1000)

    def _underrun(self) -> None:
        """A dry spell starts: the adaptive target grows."""
        self._since_underrun = 0
        adaptive = self.adaptive
        if adaptive is None:
            return
        step = self._frames(adaptive.step_ms)
        grown = min(self._frames(adaptive.max_ms), max(2 * self._target, self._target + step))
        if grown > self._target:
            self._target = grown
            self.counters.target_raises += 1

    def _spell_over(self) -> bool:
        """Adaptive dry spell: the queue holds the target and, over the last
        ``catch_up_ms`` of device time, at least as much audio arrived as it played."""
        assert self.adaptive is not None
        if self._head_reply_frames() < max(self._target, 1):
            return False
        now = self._device_now()
        window = min(now, self._frames(self.adaptive.catch_up_ms))
        return self._arrived_since(now - window) >= window

    def _device_now(self) -> int:
        return self._clock if self._heard is None else self._heard

    def _arrived_since(self, clock: int) -> int:
        while self._arrivals and self._arrivals[0][0] < clock:
            self._arrived -= self._arrivals.popleft()[1]
        return self._arrived

    def _played(self, frames: int) -> None:
        """Reply audio went out: a long enough stretch without an underrun shrinks the target."""
        adaptive = self.adaptive
        if adaptive is None:
            return
        self._clock += frames
        self._since_underrun += frames
        start = self._frames(adaptive.start_ms)
        if self._target > start and self._since_underrun >= self._frames(adaptive.shrink_after_ms):
            self._target = max(start, self._target - self._frames(adaptive.step_ms))
            self._since_underrun = 0
            self.counters.target_cuts += 1

    def _try_start(self, frames: int) -> bool:
        head = self._head_reply_frames()
        ended = bool(self._reply_ends)
        # Adaptive: at least a whole period, so the first pull is not an underrun already.
        needed = max(self._target, frames) if self.adaptive is not None else max(self._target, 1)
        if head >= needed or (ended and head > 0):
            self._playing = True
            self._dry = False
        return self._playing

    def _finish_reply(self) -> None:
        self._playing = False
        self._dry = False

    def _take(self, frames: int) -> bytes:
        size = frames * _SAMPLE_BYTES
        pcm = bytes(self._queue[:size])
        del self._queue[:size]  # CPython trims a bytearray's head in O(1)
        self._taken_total += frames
        self.counters.played_frames += frames
        return self._apply_volume(pcm)

    def _pull_fade_out(self, frames: int) -> Pull:
        size = min(frames * _SAMPLE_BYTES, len(self._fade_out))
        pcm, self._fade_out = self._fade_out[:size], self._fade_out[size:]
        audio_frames = size // _SAMPLE_BYTES
        self.counters.played_frames += audio_frames
        return Pull("audio", self._padded(self._apply_volume(pcm), frames), audio_frames)

    def _faded(self, pcm: bytes) -> bytes:
        """Raised-cosine ramp over ``fade_frames``: the first sample keeps almost its full
        level (so the step from the last played sample is what it would have been) and the
        ramp reaches exactly zero on the last frame. Fewer queued frames than the ramp:
        the audio ends there anyway."""
        n = self.fade_frames
        gains = (0.5 * (1.0 + math.cos(math.pi * i / n)) for i in range(1, n + 1))
        return pcm16.to_pcm([round(s * g) for s, g in zip(pcm16.samples(pcm), gains, strict=False)])

    def _apply_volume(self, pcm: bytes) -> bytes:
        if self._volume == 1.0 or not pcm:
            return pcm  # bit-exact pass-through
        import numpy as np  # only with a volume set: see edgevoice.audio.pcm16

        scaled = np.rint(np.frombuffer(pcm, dtype="<i2") * self._volume)
        np.clip(scaled, -32768, 32767, out=scaled)
        return scaled.astype("<i2").tobytes()

    @staticmethod
    def _padded(pcm: bytes, frames: int) -> bytes:
        return pcm + bytes(frames * _SAMPLE_BYTES - len(pcm))

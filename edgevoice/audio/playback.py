"""The speaker: a thread that feeds ALSA from a jitter buffer, and stops at once on barge-in.

The event loop hands reply audio over with :meth:`Speaker.play` and never waits: the
thread is the only one that blocks (in ALSA ``write()``). On :meth:`Speaker.interrupt`
the thread drops what the sound card still holds and plays a few milliseconds of fade-out
starting from the sample the card was playing, so playback stops within one period and
without a click.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from edgevoice.audio import pcm16
from edgevoice.audio.alsa import SAMPLE_BYTES, AudioDeviceError, PlaybackDevice, granted_buffer_frames
from edgevoice.audio.jitter import JitterBuffer
from edgevoice.audio.scheduling import make_this_thread_realtime
from edgevoice.metrics import NO_METRICS, Metrics

log = logging.getLogger(__name__)


# How long an idle speaker thread sleeps between heartbeats (each one is a wake-up).
IDLE_WAIT_S = 1.0


def starving_below(period_frames: int) -> int:
    """Mid-reply with too little queued for a period, the speaker waits for the next chunk
    until the card holds less than this, and only then hands out what there is (or
    silence, a gap). A quarter of a period (5 ms at 20 ms): a chunk that comes up to that
    late after the card's last audio still plays without a gap, and the thread's own
    wake-up (well under a millisecond under SCHED_FIFO) still comes before the card is dry.
    Half a period gave a gap whenever a server's chunk came a hair after the moment the
    card held half a period."""
    return max(1, period_frames // 4)


def frames_to_pull(jitter: JitterBuffer, period_frames: int, write_frames: int) -> int:
    """How much the speaker takes for its next write: ``write_frames`` while a reply plays
    with that much queued, else a period (a reply's first, its end, a thin queue)."""
    return write_frames if jitter.ready_frames() >= write_frames else period_frames


class Speaker:
    def __init__(
        self,
        open_device: Callable[[], PlaybackDevice],
        *,
        rate: int,
        period_frames: int,
        buffer_frames: int,
        jitter: JitterBuffer,
        paced: bool = True,
        fade_ms: float = 5.0,
        on_idle: Callable[[], None] | None = None,
        on_problem: Callable[[str | None], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        metrics: Metrics = NO_METRICS,
        clock: Callable[[], float] = time.monotonic,
        starving_below_frames: int | None = None,
        write_periods: int = 1,
    ) -> None:
        self._open_device = open_device
        self.rate = rate
        self.period_frames = period_frames
        # What the card holds: ``buffer_frames`` until a device says what its card granted.
        self.buffer_frames = buffer_frames
        self._write_periods = write_periods
        self.write_frames = self._write_frames_for(buffer_frames)
        self._jitter = jitter
        # A clock-paced device runs dry if not fed; an unpaced one (a simulated file sink
        # run as fast as possible) never does, so it must not be fed invented silence.
        self._paced = paced
        self._starving_below = (
            starving_below(period_frames) if starving_below_frames is None else starving_below_frames
        )
        # The last write held reply audio (a card running dry after silence is no gap).
        self._wrote_audio = False
        self._fade_frames = max(1, int(rate * fade_ms / 1000))
        self._on_idle = on_idle or (lambda: None)
        self._on_problem = on_problem or (lambda _text: None)
        self._heartbeat = heartbeat or (lambda: None)
        self._metrics = metrics
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = False
        self._interrupt_requested = False
        # The device the thread is using (read by interrupt() on the loop thread), and what
        # the card was holding when interrupt() stopped it early.
        self._device: PlaybackDevice | None = None
        self._early_cut: bytes | None = None
        self._earcons: deque[bytes] = deque()
        self._thread: threading.Thread | None = None
        # What the card may still hold, to fade out from the sample it is playing.
        self._recent = bytearray()
        # Reply bytes queued so far and (stream offset, chunk number) of each chunk not yet
        # written, so the metrics hear when each chunk reached ALSA.
        self._reply_bytes_in = 0
        self._reply_bytes_out = 0
        self._chunk_marks: deque[tuple[int, int]] = deque()
        # The last feed, what wakes an idle (or prebuffering) speaker: a reply chunk (its
        # number), or the end of a reply (its time).
        self._fed_chunk: int | None = None
        self._fed_t = 0.0
        self._active = False
        self.interrupts = 0
        self.write_errors = 0

    # -- loop thread ----------------------------------------------------------------------

    def play(self, pcm: bytes, chunk: int) -> None:
        """Queue reply audio; ``chunk`` names it (the link's number) to the metrics."""
        with self._cond:
            if self._metrics.enabled:
                self._chunk_marks.append((self._reply_bytes_in, chunk))
            self._fed_chunk = chunk
            self._reply_bytes_in += len(pcm)
            self._jitter.push(pcm)
            self._cond.notify()

    def end_of_reply(self) -> None:
        with self._cond:
            self._jitter.end_of_reply()
            self._fed_chunk = None
            self._fed_t = self._clock()
            self._cond.notify()

    def interrupt(self) -> None:
        """Stop at once: drop what the card and the buffer hold, with a short fade-out."""
        with self._cond:
            self._interrupt_requested = True
            device = self._device
            if device is not None and self._paced and self._early_cut is None:
                # The thread may sit in a blocked write() for up to a period: stop the
                # card now (drop() wakes that write with EBADFD) rather than after it.
                self._early_cut = self._take_held(device)
            self._cond.notify()

    def earcon(self, pcm: bytes) -> None:
        with self._cond:
            self._earcons.append(pcm)
            self._cond.notify()

    def clear_earcons(self) -> None:
        """Drop the earcons not yet played (a ring the user just stopped)."""
        with self._cond:
            self._earcons.clear()

    @property
    def jitter(self) -> JitterBuffer:
        return self._jitter

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, device: PlaybackDevice | None = None) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(device,), name="edgevoice-playback", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    # -- playback thread ----------------------------------------------------------------------

    def _run(self, device: PlaybackDevice | None) -> None:
        make_this_thread_realtime("playback")
        delay = 0.5
        waited = False
        if device is not None:
            self._fit_buffer(device)
        while True:
            if device is None:
                try:
                    device = self._open_device()
                except AudioDeviceError as exc:
                    self._on_problem(str(exc))
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    with self._cond:
                        if self._stop:
                            return
                        self._cond.wait(delay)
                    self._heartbeat()
                    delay = min(delay * 2, 5.0)
                    continue
                self._on_problem(None)
                delay = 0.5
                self._fit_buffer(device)
            with self._cond:
                self._device = device
                if self._stop:
                    break
                if self._interrupt_requested:
                    self._interrupt_requested = False
                    fade = self._cut(device)
                    if self._metrics.enabled:
                        # Silent once the fade-out that starts now has played.
                        self._metrics.silenced(self._clock() + self._fade_frames / self.rate)
                else:
                    fade = b""
                # From when the speaker could take audio: now, or (if it sat idle or was
                # prebuffering) when the feed that made this pull possible arrived.
                ready_t = (self._fed_t if waited else self._clock()) if self._metrics.enabled else 0.0
                woken_by = self._fed_chunk if waited else None
                waited = False
                was_playing = self._jitter.playing
                dry_spells = self._jitter.counters.underruns
                frames = frames_to_pull(self._jitter, self.period_frames, self.write_frames)
                # An adaptive buffer times the server's pace by what has been heard.
                holds = (
                    self._held_frames(device)
                    if self._paced and self._jitter.adaptive is not None and self._jitter.playing
                    else None
                )
                pulled = self._jitter.pull(frames, device_starving=False, device_holds=holds)
                held: int | None = None
                if pulled.kind == "idle" and self._paced and self._jitter.playing:
                    # Mid-reply, less than a period queued: starving only once the card is
                    # about to run dry (what it holds still plays while the next chunk comes).
                    held = self._held_frames(device) if holds is None else holds
                    if held < self._starving_below:
                        pulled = self._jitter.pull(self.period_frames, device_starving=True)
                earcon = self._take_earcon(len(pulled.pcm) or self.period_frames * SAMPLE_BYTES)
                if pulled.kind == "idle" and not earcon and not fade:
                    # Idle: new audio, an earcon, a barge-in or stop() notify at once; the
                    # timeout only keeps the watchdog's heartbeat (stall after 5 s) going.
                    wait = IDLE_WAIT_S
                    if held is not None:
                        wait = max(0.001, (held - self._starving_below) / self.rate)
                    elif self._active:
                        # Finished only once the card has played what it holds.
                        held = self._held_frames(device)
                        if held:
                            wait = min(wait, held / self.rate)
                        else:
                            self._active = False
                            self._on_idle()
                    waited = True
                    self._cond.wait(wait)
                    self._heartbeat()
                    continue
                marks = self._take_marks(pulled.kind, pulled.audio_frames * SAMPLE_BYTES)
            if self._metrics.enabled and was_playing and not pulled.starts_reply and self._paced:
                # A gap in an answer: the buffer ran dry, or the card did (this thread late).
                if held is None:
                    held = self._held_frames(device) if holds is None else holds
                if self._jitter.counters.underruns != dry_spells or (held == 0 and self._wrote_audio):
                    self._metrics.add("playback_underrun_t", self._clock())
            self._wrote_audio = pulled.audio_frames > 0
            reply = pulled.pcm
            if pulled.kind == "audio":
                self._active = True
                if not self._paced:
                    # Padding a reply's last period only matters to a card that runs dry.
                    reply = reply[: pulled.audio_frames * SAMPLE_BYTES]
            data = fade + pcm16.mix(reply, earcon)
            audible_in = 0.0
            if pulled.starts_reply and self._metrics.enabled:
                # The reply's first sample plays once the card has played what it holds.
                audible_in = (held if held is not None else self._held_frames(device)) / self.rate
            try:
                written_t = self._clock()
                device.write(data)
            except Exception as exc:
                with self._cond:
                    if self._interrupt_requested:
                        continue  # the barge-in's drop() woke this write: expected
                    self._device = None
                log.warning("speaker write failed: %s; reopening", exc)
                self._on_problem(f"speaker failed: {exc}")
                self.write_errors += 1
                _close_quietly(device)
                device = None
                continue
            if marks:
                self._metrics.reply_written(marks, written_t, ready_t, woken_by)
            if pulled.starts_reply:
                self._metrics.reply_audible(written_t + audible_in + len(fade) / SAMPLE_BYTES / self.rate)
            with self._cond:
                self._remember(data)
            self._heartbeat()
        if device is not None:
            _close_quietly(device)

    def _write_frames_for(self, buffer_frames: int) -> int:
        """While a reply plays with this much queued, one write takes it all: fewer wake-ups
        of this thread. At most half the card, so that a write never waits for the card to
        run dry before it fits."""
        return self.period_frames * max(1, min(self._write_periods, buffer_frames // self.period_frames // 2))

    def _fit_buffer(self, device: PlaybackDevice) -> None:
        """Count on the buffer the card granted: what it still holds is that less what is
        free (``avail``), so another size misjudges the end of a reply and a thin queue."""
        granted = granted_buffer_frames(device)
        if granted is None or granted == self.buffer_frames:
            return
        log.info(
            "the speaker's card holds %d ms (%d ms were asked for)",
            granted * 1000 // self.rate, self.buffer_frames * 1000 // self.rate,
        )
        with self._cond:
            self.buffer_frames = granted
            self.write_frames = self._write_frames_for(granted)

    def _take_held(self, device: PlaybackDevice) -> bytes:
        """What the card still holds (from the sample it is playing on), and stop it."""
        queued = self._held_frames(device)
        held = bytes(self._recent[len(self._recent) - queued * SAMPLE_BYTES :]) if queued else b""
        if queued:
            try:
                # Only the card: the playback thread may be inside the converter.
                getattr(device, "drop_card", device.drop)()
            except Exception:
                log.debug("drop failed", exc_info=True)
        return held

    def _cut(self, device: PlaybackDevice) -> bytes:
        """Stop what the card holds and return a fade-out from the sample it is playing."""
        self.interrupts += 1
        if self._early_cut is not None:
            held, self._early_cut = self._early_cut, None
            try:
                device.drop()  # now the converter's state goes too
            except Exception:
                log.debug("drop failed", exc_info=True)
        else:
            held = self._take_held(device)
        # The card held audio: fade from what it was playing, not from the queue's head.
        self._jitter.interrupt(fade=not held)
        self._reply_bytes_out = self._reply_bytes_in
        self._chunk_marks.clear()
        self._recent.clear()
        source = held[: self._fade_frames * SAMPLE_BYTES]
        if not source:
            return b""
        samples = pcm16.samples(source)
        last = max(len(samples) - 1, 1)
        ramp = (0.5 * (1.0 + math.cos(math.pi * i / last)) for i in range(len(samples)))
        return pcm16.to_pcm([int(s * g) for s, g in zip(samples, ramp, strict=True)])

    def _held_frames(self, device: PlaybackDevice) -> int:
        """Frames the card still has to play (0 once it has run dry: avail() is -EPIPE)."""
        try:
            avail = device.avail()
        except Exception:
            return 0
        return 0 if avail < 0 else max(0, self.buffer_frames - avail)

    def _take_earcon(self, nbytes: int) -> bytes:
        if not self._earcons:
            return b""
        head = self._earcons[0]
        if len(head) <= nbytes:
            return self._earcons.popleft()
        self._earcons[0] = head[nbytes:]
        return head[:nbytes]

    def _take_marks(self, kind: str, nbytes: int) -> list[int]:
        """The numbers of the chunks whose first byte is in this write."""
        if kind != "audio":
            return []
        start = self._reply_bytes_out
        # A fade-out after an interrupt is not reply audio: count only what was queued.
        self._reply_bytes_out += min(nbytes, self._reply_bytes_in - start)
        marks = []
        while self._chunk_marks and self._chunk_marks[0][0] < self._reply_bytes_out:
            offset, chunk = self._chunk_marks.popleft()
            if offset >= start:
                marks.append(chunk)
        return marks

    def _remember(self, data: bytes) -> None:
        self._recent += data
        excess = len(self._recent) - self.buffer_frames * SAMPLE_BYTES
        if excess > 0:
            del self._recent[:excess]


def _close_quietly(device: PlaybackDevice) -> None:
    try:
        device.close()
    except Exception:
        log.debug("closing the playback device failed", exc_info=True)

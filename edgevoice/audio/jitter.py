"""Interim jitter buffer (replaced by the full implementation from the audio branch)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pull:
    kind: str  # "audio" | "underrun" | "idle"
    pcm: bytes


class JitterBuffer:
    def __init__(
        self, rate: int = 24000, prebuffer_ms: float = 100, fade_ms: float = 5, volume: float = 1.0
    ) -> None:
        self.rate = rate
        self.prebuffer_frames = int(rate * prebuffer_ms / 1000)
        self.fade_frames = max(1, int(rate * fade_ms / 1000))
        self.volume = volume
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._ended = False
        self.playing = False
        self._fade: bytes = b""
        self.underruns = 0
        self.underrun_frames = 0
        self.played_frames = 0
        self.dropped_frames = 0
        self.interrupts = 0

    @property
    def buffered_ms(self) -> float:
        return self._queued / 2 / self.rate * 1000

    def push(self, pcm: bytes) -> None:
        if pcm:
            self._queue.append(pcm)
            self._queued += len(pcm)

    def end_of_reply(self) -> None:
        self._ended = True

    def interrupt(self, fade: bool = True) -> int:
        faded = self._take(self.fade_frames * 2) if fade and self.playing else b""
        if faded:
            fade_pcm = faded
            ramp = np.linspace(1.0, 0.0, len(fade_pcm) // 2, endpoint=True)
            self._fade = (np.frombuffer(fade_pcm, "<i2") * ramp).astype("<i2").tobytes()
        dropped = self._queued // 2
        self._queue.clear()
        self._queued = 0
        self._ended = False
        self.playing = False
        self.dropped_frames += dropped
        self.interrupts += 1
        return dropped

    def pull(self, frames: int, *, device_starving: bool) -> Pull:
        want = frames * 2
        if self._fade:
            out, self._fade = self._fade[:want], self._fade[want:]
            return Pull("audio", out + bytes(want - len(out)))
        if not self.playing:
            if self._queued and (self._queued >= self.prebuffer_frames * 2 or self._ended):
                self.playing = True
            else:
                return Pull("idle", b"")
        if self._queued == 0:
            if self._ended:
                self.playing = False
                self._ended = False
                return Pull("idle", b"")
            if device_starving:
                self.underruns += 1
                self.underrun_frames += frames
                return Pull("underrun", bytes(want))
            return Pull("idle", b"")
        if self._queued < want and not self._ended and not device_starving:
            return Pull("idle", b"")
        out = self._take(want)
        self.played_frames += len(out) // 2
        return Pull("audio", out)

    def _take(self, nbytes: int) -> bytes:
        parts = []
        while nbytes > 0 and self._queue:
            head = self._queue[0]
            if len(head) <= nbytes:
                parts.append(self._queue.popleft())
                nbytes -= len(head)
            else:
                parts.append(head[:nbytes])
                self._queue[0] = head[nbytes:]
                nbytes = 0
        out = b"".join(parts)
        self._queued -= len(out)
        return out

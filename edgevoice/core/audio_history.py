"""The last few hundred milliseconds of microphone audio, addressed by sample position.

A press is stamped with the sample position at which it happened; the utterance it opens
starts a pre-roll before that position, so the first syllable (spoken a moment before the
thumb lands) is not clipped. This ring keeps enough history to serve that pre-roll.
"""

from __future__ import annotations

BYTES_PER_SAMPLE = 2  # S16_LE mono


class AudioHistory:
    """Contiguous recent audio ``[start, end)`` in samples, at most ``capacity`` samples."""

    def __init__(self, capacity_samples: int) -> None:
        self.capacity = max(0, capacity_samples)
        self._buffer = bytearray()
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._buffer) // BYTES_PER_SAMPLE

    def append(self, position: int, pcm: bytes) -> None:
        if position != self.end:
            # A gap or overlap means the capture device was reopened and counts afresh:
            # history from before cannot be stitched to it.
            self._buffer.clear()
            self.start = position
        self._buffer += pcm
        excess = len(self._buffer) // BYTES_PER_SAMPLE - self.capacity
        if excess > 0:
            del self._buffer[: excess * BYTES_PER_SAMPLE]
            self.start += excess

    def slice(self, start: int, end: int) -> bytes:
        """Audio in ``[start, end)`` clipped to what is held."""
        start = max(start, self.start)
        end = min(end, self.end)
        if end <= start:
            return b""
        offset = (start - self.start) * BYTES_PER_SAMPLE
        return bytes(self._buffer[offset : offset + (end - start) * BYTES_PER_SAMPLE])

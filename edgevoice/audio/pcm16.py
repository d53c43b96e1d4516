"""16-bit PCM arithmetic in plain Python, for the few samples the always-on path computes.

numpy costs the daemon about 15 MB of resident memory, most of what it needs beyond the
interpreter and the Live SDK. The steady path passes audio through untouched; what it does
compute is small (a 5 ms fade at barge-in, an earcon mixed into a period, each earcon once
per process), so it is done here with :mod:`array`. numpy is imported only where a whole
stream is transformed: a volume other than 1, a sound card that needs resampling.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable

_BIG_ENDIAN = sys.byteorder == "big"


def samples(pcm: bytes) -> array:
    """S16_LE bytes as an ``array('h')`` (a trailing odd byte is ignored)."""
    out = array("h")
    out.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    if _BIG_ENDIAN:
        out.byteswap()
    return out


def to_pcm(values: Iterable[int]) -> bytes:
    """Integer samples as S16_LE bytes, clipped to the 16-bit range."""
    out = array("h", (-32768 if v < -32768 else 32767 if v > 32767 else v for v in values))
    if _BIG_ENDIAN:
        out.byteswap()
    return out.tobytes()


def mix(a: bytes, b: bytes) -> bytes:
    """The sum of two S16_LE signals (the shorter padded with silence), clipped."""
    if not b:
        return a
    if not a:
        return b
    x, y = samples(a), samples(b)
    if len(x) < len(y):
        x, y = y, x
    return to_pcm([s + t for s, t in zip(x, y, strict=False)] + list(x[len(y) :]))

"""Earcons: short cue sounds, generated in code, in the reply audio format.

They are rendered at 24 kHz mono S16_LE so they go out through the same playback path as
Gemini's replies. Each is a few sine notes or a glide, every note shaped by a raised-cosine
envelope that starts and ends at exactly zero (no clicks), normalised to a -12 dBFS peak so
they sit below speech.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from edgevoice.audio import pcm16

RATE: Final = 24000
PEAK_DBFS: Final = -12.0
# Attack and release of each note; long enough to be click-free, short enough to be crisp.
EDGE_MS: Final = 10.0


@dataclass(frozen=True)
class _Note:
    start_hz: float
    end_hz: float  # equal to start_hz for a steady tone, otherwise a glide
    ms: float


# Rising = attention on (press), falling = done (release); low and falling = something wrong.
_RECIPES: Final[dict[str, tuple[_Note, ...]]] = {
    "listening": (_Note(880, 880, 70), _Note(1319, 1319, 90)),  # A5 up to E6
    "sent": (_Note(1319, 1319, 60), _Note(880, 880, 80)),  # E6 down to A5
    "error": (_Note(440, 440, 110), _Note(311, 311, 140)),  # A4 down a tritone
    "offline": (_Note(660, 330, 200),),  # a sinking glide
    "reconnected": (_Note(523, 523, 60), _Note(659, 659, 60), _Note(784, 784, 80)),  # C-E-G
    # A press while the microphone is muted: two low dull notes, "not now".
    "muted": (_Note(392, 392, 90), _Note(0, 0, 40), _Note(392, 392, 90)),
    # Before an announcement: a two-tone door chime, G5 then E5.
    "chime": (_Note(784, 784, 250), _Note(659, 659, 350)),
    # A timer's ring, repeated once per ring period: three quick high beeps.
    "ring": (
        _Note(1568, 1568, 110), _Note(0, 0, 60), _Note(1568, 1568, 110),
        _Note(0, 0, 60), _Note(1568, 1568, 110),
    ),
}

EARCON_KINDS: Final[tuple[str, ...]] = tuple(_RECIPES)


def _note(note: _Note) -> array:
    """The note's samples in [-1, 1], as doubles in one flat array (not a list of float
    objects: the daemon renders every earcon at start and keeps none of the scratch)."""
    n = round(RATE * note.ms / 1000)
    if note.start_hz == 0 and note.end_hz == 0:
        return array("d", bytes(8 * n))  # a rest between notes
    # Integrate the frequency so a glide has a continuous phase (from zero at the start).
    step = (note.end_hz - note.start_hz) / (n - 1) if n > 1 else 0.0
    edge = min(round(RATE * EDGE_MS / 1000), n // 2)
    wave = array("d", bytes(8 * n))
    cycles = 0.0
    for i in range(n):
        if i < edge:
            envelope = 0.5 * (1 - math.cos(math.pi * i / edge))
        elif i >= n - edge:
            envelope = 0.5 * (1 - math.cos(math.pi * (n - 1 - i) / edge))
        else:
            envelope = 1.0
        wave[i] = math.sin(2 * math.pi * cycles / RATE) * envelope
        cycles += note.start_hz + step * (i + 1)
    return wave


@functools.cache
def render(kind: str) -> bytes:
    """The earcon ``kind`` as 24 kHz mono S16_LE bytes (computed once per process)."""
    if kind not in _RECIPES:
        raise ValueError(f"unknown earcon {kind!r}; known earcons: {', '.join(EARCON_KINDS)}")
    signal = array("d")
    for note in _RECIPES[kind]:
        signal.extend(_note(note))
    scale = 10 ** (PEAK_DBFS / 20) * 32767 / max(max(signal), -min(signal))
    return pcm16.to_pcm(round(x * scale) for x in signal)


class Earcons:
    """The earcons this daemon plays; ``get`` returns None for a disabled one."""

    def __init__(self, enabled: bool, disabled: Iterable[str] = ()) -> None:
        disabled = frozenset(disabled)
        unknown = sorted(disabled - set(EARCON_KINDS))
        if unknown:
            raise ValueError(
                f"unknown earcon name(s) {', '.join(map(repr, unknown))} in disabled earcons; "
                f"known earcons: {', '.join(EARCON_KINDS)}"
            )
        self.enabled = enabled
        self.disabled = disabled

    def warm(self) -> None:
        """Render every enabled earcon now. Rendering is pure Python (3-13 ms an earcon
        here, several times that on a Pi): done lazily, the first press waited for its
        beep, and so did the microphone's audio queued behind it on the loop."""
        for kind in EARCON_KINDS:
            if kind not in self.disabled:
                render(kind)

    def get(self, kind: str) -> bytes | None:
        sound = render(kind)  # validates the name even when disabled: a typo is a bug
        if not self.enabled or kind in self.disabled:
            return None
        return sound

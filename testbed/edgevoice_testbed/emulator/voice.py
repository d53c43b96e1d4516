"""The emulated model's voice: 24 kHz mono S16_LE PCM for a text.

``espeak`` renders real speech with espeak-ng (WAV at 22050 Hz, resampled to 24 kHz with
soxr); ``tone`` renders a deterministic tone sequence (one tone per word) that needs no
external program, so tests can be exact and fast. Renders are cached per text.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterable
from typing import Protocol

import numpy as np

OUTPUT_RATE = 24000
SAMPLE_WIDTH = 2
ESPEAK_PROGRAM = "espeak-ng"

log = logging.getLogger(__name__)


class VoiceError(RuntimeError):
    """A text could not be rendered."""


class Voice(Protocol):
    name: str

    def render(self, text: str) -> bytes:
        """24 kHz mono S16_LE PCM for ``text`` (empty for an empty text)."""
        ...


class ToneVoice:
    """One tone per word: pitch from a CRC of the word, length from its letters."""

    name = "tone"

    def __init__(self, rate: int = OUTPUT_RATE, amplitude: float = 0.25):
        self.rate = rate
        self.amplitude = amplitude

    def render(self, text: str) -> bytes:
        pieces: list[np.ndarray] = []
        gap = np.zeros(int(self.rate * 0.03), dtype=np.float64)
        for word in text.split():
            frequency = 300.0 + zlib.crc32(word.lower().encode("utf-8")) % 600
            seconds = min(0.08 + 0.02 * len(word), 0.4)
            count = int(self.rate * seconds)
            t = np.arange(count, dtype=np.float64) / self.rate
            tone = np.sin(2.0 * np.pi * frequency * t)
            fade = min(int(self.rate * 0.005), count // 2)
            if fade:
                ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
                tone[:fade] *= ramp
                tone[-fade:] *= ramp[::-1]
            pieces.extend((tone, gap))
        if not pieces:
            return b""
        samples = np.concatenate(pieces) * (self.amplitude * 32767.0)
        return np.round(samples).astype("<i2").tobytes()


class EspeakVoice:
    """espeak-ng speech resampled to 24 kHz."""

    name = "espeak"

    def __init__(self, voice: str = "en-us", program: str = ESPEAK_PROGRAM):
        self.voice = voice
        self.program = program

    @staticmethod
    def available(program: str = ESPEAK_PROGRAM) -> bool:
        return shutil.which(program) is not None

    def render(self, text: str) -> bytes:
        if not text.strip():
            return b""
        try:
            # Text goes through stdin so a text starting with '-' is never an option.
            result = subprocess.run(
                [self.program, "-v", self.voice, "--stdout", "--stdin"],
                input=text.encode("utf-8"), capture_output=True, timeout=30, check=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise VoiceError(f"{self.program} failed for {text!r}: {exc}") from exc
        rate, channels, pcm = parse_wav(result.stdout)
        samples = np.frombuffer(pcm, dtype="<i2")
        if channels > 1:
            samples = samples.reshape(-1, channels).mean(axis=1).astype("<i2")
        if rate != OUTPUT_RATE:
            import soxr

            samples = soxr.resample(samples, rate, OUTPUT_RATE)
        return np.asarray(samples, dtype="<i2").tobytes()


def parse_wav(data: bytes) -> tuple[int, int, bytes]:
    """(rate, channels, PCM) of a 16-bit PCM WAV.

    espeak-ng --stdout writes placeholder sizes (it streams), so the data chunk runs to
    the end of the input whatever its header says.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise VoiceError("not a WAV stream")
    offset, rate, channels, width = 12, 0, 0, 0
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body = offset + 8
        if chunk_id == b"fmt ":
            _format, channels, rate, _byte_rate, _align, width = struct.unpack_from(
                "<HHIIHH", data, body)
        elif chunk_id == b"data":
            if width != 16 or not rate or not channels:
                raise VoiceError(f"unsupported WAV format ({width}-bit, {channels} ch)")
            end = min(body + size, len(data))
            pcm = data[body:end]
            usable = len(pcm) - len(pcm) % (2 * channels)
            return rate, channels, pcm[:usable]
        offset = body + size + (size & 1)
    raise VoiceError("WAV stream without a data chunk")


class CachedVoice:
    """Memoises a voice per text; safe to use from several threads."""

    def __init__(self, voice: Voice):
        self.voice = voice
        self.name = voice.name
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def render(self, text: str) -> bytes:
        with self._lock:
            cached = self._cache.get(text)
        if cached is not None:
            return cached
        pcm = self.voice.render(text)
        with self._lock:
            self._cache.setdefault(text, pcm)
        return pcm

    def prerender(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.render(text)


def make_voice(kind: str, espeak_voice: str = "en-us") -> CachedVoice:
    """The voice a scenario asks for; ``espeak`` falls back to ``tone`` without espeak-ng."""
    if kind == "espeak":
        if EspeakVoice.available():
            return CachedVoice(EspeakVoice(espeak_voice))
        log.warning("espeak-ng is not installed: the emulator speaks in tones")
    return CachedVoice(ToneVoice())

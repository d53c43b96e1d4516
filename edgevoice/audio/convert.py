"""Sample-rate and channel conversion between the pipeline and the sound card.

The pipeline speaks 16 kHz mono to Gemini and hears 24 kHz mono back; many cards only run
at 44.1/48 kHz, often stereo. These converters sit between the two, chunk by chunk, as
plain objects (no threads, no I/O). PCM is S16_LE interleaved ``bytes`` throughout.

Resampling uses ``soxr.ResampleStream``, which keeps its filter state across calls, so a
stream converted in chunks of any size equals the stream converted in one go (no clicks at
chunk boundaries). The maths runs in float32 so the result does not depend on chunking and
no dither noise is added; conversion back to int16 rounds and clips.
"""

from __future__ import annotations

from typing import Final, Literal

import numpy as np
import soxr

# soxr "HQ": flat to 7.6 kHz at 16 kHz out, images/aliases below -140 dB. The filter is not
# where the time goes (soxr itself: ~0.4 ms CPU per second of audio for every quality on
# x86; numpy conversion around it dominates), so nothing is saved by going lower. "QQ" has
# no anti-alias filter at all (48k -> 16k folds 9-12 kHz into the voice band at full level);
# "LQ" rolls off from 6 kHz. Measure on the board: tests/audio/measure_convert_cpu.py.
RESAMPLE_QUALITY: Final = "HQ"

_SAMPLE_BYTES: Final = 2
_INT16_SCALE: Final = 32768.0


def _to_int16_bytes(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1) to S16_LE bytes, rounded and clipped (never wrapped)."""
    scaled = np.rint(samples * _INT16_SCALE)
    np.clip(scaled, -32768, 32767, out=scaled)
    return scaled.astype("<i2").tobytes()


class _FrameAligner:
    """Keeps a partial frame from one call for the next, so odd byte counts lose nothing."""

    def __init__(self, frame_bytes: int) -> None:
        self._frame_bytes = frame_bytes
        self._pending = b""

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def take(self, pcm: bytes) -> bytes:
        if self._pending:
            pcm = self._pending + bytes(pcm)
        usable = len(pcm) - len(pcm) % self._frame_bytes
        self._pending = bytes(pcm[usable:])
        return pcm[:usable]

    def clear(self) -> None:
        self._pending = b""


class _Resampler:
    """Mono float32 streaming resampler with a flush that leaves it ready for a new stream."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)

    def process(self, mono: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(mono)

    def flush(self) -> np.ndarray:
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return tail

    def clear(self) -> None:
        self._stream.clear()


def _check_rate(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1000 <= value <= 384000:
        raise ValueError(f"{name} must be a sample rate in Hz between 1000 and 384000, got {value!r}")


def _check_channels(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 32:
        raise ValueError(f"{name} must be a channel count between 1 and 32, got {value!r}")


class CaptureConverter:
    """Microphone chunks in the card's format -> 16 kHz mono for Gemini.

    ``channel`` picks one channel (0-based) of a multi-channel microphone, or ``"mix"``
    averages them (computed in float, so it cannot overflow).
    """

    def __init__(
        self,
        device_rate: int,
        device_channels: int,
        channel: Literal["mix"] | int = "mix",
        target_rate: int = 16000,
    ) -> None:
        _check_rate("device_rate", device_rate)
        _check_rate("target_rate", target_rate)
        _check_channels("device_channels", device_channels)
        if channel != "mix" and (
            not isinstance(channel, int) or isinstance(channel, bool) or not 0 <= channel < device_channels
        ):
            raise ValueError(
                f"capture channel must be 'mix' or a channel index from 0 to "
                f"{device_channels - 1}, got {channel!r}"
            )
        self.device_rate = device_rate
        self.device_channels = device_channels
        self.channel = channel
        self.target_rate = target_rate
        self.passthrough: bool = device_rate == target_rate and device_channels == 1
        self._aligner = _FrameAligner(device_channels * _SAMPLE_BYTES)
        self._resampler = None if device_rate == target_rate else _Resampler(device_rate, target_rate)

    def _to_mono(self, pcm: bytes) -> np.ndarray:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        samples *= 1.0 / _INT16_SCALE
        if self.device_channels == 1:
            return samples
        frames = samples.reshape(-1, self.device_channels)
        if self.channel == "mix":
            return frames.mean(axis=1, dtype=np.float32)
        return np.ascontiguousarray(frames[:, self.channel])

    def process(self, pcm: bytes) -> bytes:
        """Convert one chunk; returns what is ready (the resampler holds back its delay)."""
        if self.passthrough and not self._aligner.pending_bytes and len(pcm) % _SAMPLE_BYTES == 0:
            return pcm
        whole = self._aligner.take(pcm)
        if self.passthrough:
            return bytes(whole)
        if not whole:
            return b""
        mono = self._to_mono(whole)
        if self._resampler is not None:
            mono = self._resampler.process(mono)
        return _to_int16_bytes(mono)

    def flush(self) -> bytes:
        """End of a stream: the resampler's tail. A trailing partial frame is discarded
        (it is not a sample). The converter is then ready for a new stream."""
        self._aligner.clear()
        if self._resampler is None:
            return b""
        return _to_int16_bytes(self._resampler.flush())


class PlaybackConverter:
    """Reply audio (24 kHz mono) -> the card's rate and channel count.

    Mono is resampled once and then duplicated to every output channel.
    """

    def __init__(self, source_rate: int = 24000, device_rate: int = 24000, device_channels: int = 1) -> None:
        _check_rate("source_rate", source_rate)
        _check_rate("device_rate", device_rate)
        _check_channels("device_channels", device_channels)
        self.source_rate = source_rate
        self.device_rate = device_rate
        self.device_channels = device_channels
        self.passthrough: bool = source_rate == device_rate and device_channels == 1
        self._aligner = _FrameAligner(_SAMPLE_BYTES)
        self._resampler = None if source_rate == device_rate else _Resampler(source_rate, device_rate)

    def _out(self, mono: np.ndarray) -> bytes:
        if self.device_channels > 1:
            mono = np.repeat(mono, self.device_channels)
        return _to_int16_bytes(mono)

    def process(self, pcm: bytes) -> bytes:
        if self.passthrough and not self._aligner.pending_bytes and len(pcm) % _SAMPLE_BYTES == 0:
            return pcm
        whole = self._aligner.take(pcm)
        if self.passthrough:
            return bytes(whole)
        if not whole:
            return b""
        if self._resampler is None:
            # Same rate, more channels: duplicate the int16 samples exactly.
            samples = np.frombuffer(whole, dtype="<i2")
            return np.repeat(samples, self.device_channels).astype("<i2").tobytes()
        mono = np.frombuffer(whole, dtype="<i2").astype(np.float32)
        mono *= 1.0 / _INT16_SCALE
        return self._out(self._resampler.process(mono))

    def flush(self) -> bytes:
        """End of a reply: the resampler's tail, in device format. Ready for a new reply."""
        self._aligner.clear()
        if self._resampler is None:
            return b""
        return self._out(self._resampler.flush())

    def reset(self) -> None:
        """Drop all state without output (after an interrupt: the old tail must not play)."""
        self._aligner.clear()
        if self._resampler is not None:
            self._resampler.clear()

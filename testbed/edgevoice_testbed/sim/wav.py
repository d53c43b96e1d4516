"""Reading and writing WAV files for the simulator: any common PCM WAV in, 16 kHz mono out."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

from edgevoice.errors import UserError


def read_wav_as(path: Path, rate: int) -> np.ndarray:
    """The file's audio as int16 mono at ``rate`` (channels mixed, resampled)."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            source_rate = wav.getframerate()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise UserError(f"the microphone file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"the microphone file {path} is a directory") from None
    except PermissionError:
        raise UserError(f"the microphone file {path} is not readable") from None
    except (wave.Error, EOFError) as exc:
        raise UserError(f"{path} is not a PCM WAV file ({exc})") from None
    if channels < 1 or source_rate < 1000 or width not in (1, 2, 3, 4):
        raise UserError(
            f"{path} is not usable audio ({channels} channels, {source_rate} Hz, {width * 8}-bit)"
        )
    if len(raw) < width * channels:
        raise UserError(f"the microphone file {path} holds no audio (0 frames)")
    samples = _to_float(raw, width).reshape(-1, channels).mean(axis=1)
    if source_rate != rate:
        samples = soxr.resample(samples, source_rate, rate, quality="VHQ")
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1) -> None:
    try:
        with Path(path).open("wb") as handle, wave.open(handle, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(pcm)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def _to_float(raw: bytes, width: int) -> np.ndarray:
    usable = len(raw) - len(raw) % width
    raw = raw[:usable]
    if width == 1:
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    if width == 3:
        bytes3 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        values = bytes3[:, 0] | (bytes3[:, 1] << 8) | (bytes3[:, 2] << 16)
        values = np.where(values >= 1 << 23, values - (1 << 24), values)
        return values.astype(np.float64) / float(1 << 23)
    return np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)

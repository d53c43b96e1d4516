import wave
from pathlib import Path

import numpy as np
import pytest

from edgevoice.errors import UserError
from edgevoice_testbed.sim.wav import read_wav_as, write_wav


def test_16k_mono_passes_through_bit_exact(tmp_path: Path) -> None:
    samples = (np.arange(8000) * 7 % 65536 - 32768).astype("<i2")
    write_wav(tmp_path / "a.wav", samples.tobytes(), 16000)
    assert np.array_equal(read_wav_as(tmp_path / "a.wav", 16000), samples)


def test_stereo_44k_is_mixed_and_resampled(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    stereo = np.stack([tone, tone], axis=1).reshape(-1)
    with wave.open(str(tmp_path / "s.wav"), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(44100)
        wav.writeframes(stereo.tobytes())
    out = read_wav_as(tmp_path / "s.wav", 16000)
    assert abs(len(out) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(out.astype(float)))
    assert abs(np.argmax(spectrum) * 16000 / len(out) - 440) < 2


def test_not_audio(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(UserError, match="is not a PCM WAV file"):
        read_wav_as(tmp_path / "x.wav", 16000)

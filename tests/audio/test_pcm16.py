"""The plain-Python PCM arithmetic that keeps numpy out of the daemon's memory."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from edgevoice.audio import pcm16
from edgevoice.audio.jitter import JitterBuffer


def pcm(*values: int) -> bytes:
    return np.array(values, dtype="<i2").tobytes()


def test_samples_round_trip_and_odd_byte():
    data = pcm(0, 1, -1, 32767, -32768)
    assert list(pcm16.samples(data)) == [0, 1, -1, 32767, -32768]
    assert pcm16.to_pcm(pcm16.samples(data)) == data
    assert list(pcm16.samples(data + b"\x01")) == [0, 1, -1, 32767, -32768]


def test_to_pcm_clips():
    assert pcm16.to_pcm([40000, -40000, 5]) == pcm(32767, -32768, 5)


def test_mix_adds_pads_the_shorter_and_clips():
    assert pcm16.mix(pcm(1, 2, 3), pcm(10)) == pcm(11, 2, 3)
    assert pcm16.mix(pcm(10), pcm(1, 2, 3)) == pcm(11, 2, 3)
    assert pcm16.mix(pcm(30000, -30000), pcm(30000, -30000)) == pcm(32767, -32768)
    assert pcm16.mix(pcm(5), b"") == pcm(5)
    assert pcm16.mix(b"", pcm(5)) == pcm(5)


def test_fade_matches_the_raised_cosine_and_ends_at_zero():
    jitter = JitterBuffer(24000, 100, 5.0, 1.0)
    n = jitter.fade_frames
    source = np.full(n, 20000, dtype="<i2")
    faded = np.frombuffer(jitter._faded(source.tobytes()), dtype="<i2")
    gain = 0.5 * (1.0 + np.cos(np.pi * np.arange(1, n + 1) / n))
    assert faded.tolist() == np.rint(source * gain).astype("<i2").tolist()
    assert faded[-1] == 0 and faded[0] > 19900
    # Fewer frames than the ramp: the audio ends where it ends.
    assert len(jitter._faded(source[:10].tobytes())) == 20


def test_the_daemon_does_not_import_numpy():
    # numpy costs about 15 MB resident; the daemon loads it only for a card that needs
    # converting, a volume other than 1, or a model speaking at another rate.
    code = "import sys, edgevoice.service.daemon; print('numpy' in sys.modules, 'soxr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

"""Capture/playback conversion: frequency, level and continuity survive chunking."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.audio.convert import CaptureConverter, PlaybackConverter

TONE_HZ = 1000.0
AMPLITUDE = 0.5  # of full scale: -6 dBFS peak


def tone(rate: int, seconds: float, channels: int = 1, amplitude: float = AMPLITUDE) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    mono = np.rint(amplitude * 32767 * np.sin(2 * np.pi * TONE_HZ * t))
    return np.repeat(mono, channels).astype("<i2").tobytes()


def samples(pcm: bytes, channels: int = 1) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64).reshape(-1, channels)


def random_chunks(pcm: bytes, seed: int, max_size: int = 5000) -> list[bytes]:
    """Cuts at random byte offsets, odd ones included."""
    rng = np.random.default_rng(seed)
    chunks, position = [], 0
    while position < len(pcm):
        size = int(rng.integers(1, max_size))
        chunks.append(pcm[position : position + size])
        position += size
    return chunks


def run(converter: CaptureConverter | PlaybackConverter, chunks: list[bytes]) -> bytes:
    return b"".join(converter.process(chunk) for chunk in chunks) + converter.flush()


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


def level_db(x: np.ndarray) -> float:
    return 20 * math.log10(np.sqrt(np.mean(x**2)) / 32767)


def assert_clean_tone(out: np.ndarray, rate: int, expected_amplitude: float) -> None:
    """``expected_amplitude`` as a fraction of full scale."""
    # Skip the filter's settling at both ends (the converted stream starts/ends with a step).
    steady = out[rate // 10 : -rate // 10]
    assert abs(peak_frequency(steady, rate) - TONE_HZ) <= rate / len(steady)
    expected_db = 20 * math.log10(expected_amplitude / math.sqrt(2))
    assert abs(level_db(steady) - expected_db) < 0.5
    # Continuity: no sample-to-sample step beyond the sine's own steepest slope
    # (2*pi*f*A per second), plus a few LSB for rounding. A glitch at a chunk seam of
    # even 1 % of full scale would exceed this.
    max_slope = 2 * math.pi * TONE_HZ * expected_amplitude * 32767 / rate
    assert np.max(np.abs(np.diff(steady))) <= max_slope * 1.01 + 2


def test_capture_48k_stereo_to_16k_mono_keeps_tone_through_random_chunks():
    pcm = tone(48000, 2.0, channels=2)
    chunked = run(CaptureConverter(48000, 2), random_chunks(pcm, seed=1))
    one_shot = run(CaptureConverter(48000, 2), [pcm])

    assert chunked == one_shot
    out = samples(chunked)[:, 0]
    assert abs(len(out) - 32000) <= 1
    assert_clean_tone(out, 16000, AMPLITUDE)


def test_playback_24k_mono_to_44k1_stereo_keeps_tone_through_random_chunks():
    pcm = tone(24000, 2.0)
    chunked = run(PlaybackConverter(24000, 44100, 2), random_chunks(pcm, seed=2))
    one_shot = run(PlaybackConverter(24000, 44100, 2), [pcm])

    assert chunked == one_shot
    out = samples(chunked, 2)
    assert np.array_equal(out[:, 0], out[:, 1])
    assert abs(len(out) - 88200) <= 1
    assert_clean_tone(out[:, 0], 44100, AMPLITUDE)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, 4800 * 4), max_size=12))
def test_any_chunking_gives_the_same_stream(cuts):
    pcm = tone(48000, 0.1, channels=2)
    bounds = [0, *sorted(cuts), len(pcm)]
    chunks = [pcm[a:b] for a, b in itertools.pairwise(bounds)]
    assert run(CaptureConverter(48000, 2), chunks) == run(CaptureConverter(48000, 2), [pcm])


def test_one_byte_at_a_time_loses_nothing():
    pcm = tone(16000, 0.05, channels=2)
    converter = CaptureConverter(16000, 2, channel=0)
    out = b"".join(converter.process(pcm[i : i + 1]) for i in range(len(pcm)))
    assert out == tone(16000, 0.05)


def test_capture_channel_selection_and_mix():
    left = samples(tone(16000, 0.1))[:, 0]
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("<i2").tobytes()

    assert CaptureConverter(16000, 2, channel=0).process(stereo) == tone(16000, 0.1)
    assert CaptureConverter(16000, 2, channel=1).process(stereo) == bytes(len(stereo) // 2)
    mixed = samples(CaptureConverter(16000, 2).process(stereo))[:, 0]
    assert np.max(np.abs(mixed - left / 2)) <= 0.5 + 1e-9


def test_mix_of_full_scale_channels_does_not_overflow():
    extremes = np.array([[-32768, -32768], [32767, 32767], [32767, -32768]], dtype="<i2")
    out = samples(CaptureConverter(16000, 2).process(extremes.tobytes()))[:, 0]
    assert out.tolist() == [-32768, 32767, 0]


def test_passthrough_returns_the_input_object():
    pcm = tone(16000, 0.02)
    capture = CaptureConverter(16000, 1)
    playback = PlaybackConverter(24000, 24000, 1)
    assert capture.passthrough and playback.passthrough
    assert capture.process(pcm) is pcm
    assert playback.process(pcm) is pcm
    assert capture.flush() == b"" and playback.flush() == b""


def test_passthrough_still_reassembles_odd_byte_counts():
    pcm = tone(16000, 0.01)
    converter = CaptureConverter(16000, 1)
    assert converter.process(pcm[:3]) == pcm[:2]
    assert converter.process(pcm[3:]) == pcm[2:]


def test_playback_same_rate_duplicates_exactly():
    pcm = tone(24000, 0.05)
    converter = PlaybackConverter(24000, 24000, 2)
    assert not converter.passthrough
    out = samples(converter.process(pcm), 2)
    assert np.array_equal(out[:, 0], samples(pcm)[:, 0])
    assert np.array_equal(out[:, 1], samples(pcm)[:, 0])


def test_flush_leaves_converter_ready_for_a_new_stream():
    first, second = tone(24000, 0.2), tone(24000, 0.3, amplitude=0.25)
    reused = PlaybackConverter(24000, 48000, 1)
    run(reused, [first])
    assert run(reused, [second]) == run(PlaybackConverter(24000, 48000, 1), [second])


def test_reset_drops_the_old_tail():
    converter = PlaybackConverter(24000, 48000, 1)
    converter.process(tone(24000, 0.2))
    converter.reset()
    fresh = tone(24000, 0.1, amplitude=0.1)
    assert run(converter, [fresh]) == run(PlaybackConverter(24000, 48000, 1), [fresh])


def test_loud_input_clips_instead_of_wrapping():
    square = np.tile(np.array([32767] * 24 + [-32768] * 24, dtype="<i2"), 200)
    out = samples(run(PlaybackConverter(24000, 48000, 1), [square.tobytes()]))[:, 0]
    # Resampling a full-scale square overshoots (Gibbs ripple beyond full scale). Each
    # output sample must be the float result clipped to int16, never wrapped around.
    reference = soxr.resample(square.astype(np.float32) / 32768, 24000, 48000, quality="HQ")
    expected = np.clip(np.rint(reference * 32768), -32768, 32767)
    assert np.max(reference) * 32768 > 32767  # the overshoot is there to clip
    assert len(out) == len(expected)
    assert np.max(np.abs(out - expected)) <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((48000, 2, 2), "channel index from 0 to 1"),
        ((48000, 2, "left"), "channel index"),
        ((48000, 0), "channel count"),
        ((0, 1), "sample rate"),
    ],
)
def test_bad_configuration_is_a_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        CaptureConverter(*args)

"""Pre-roll and tail, fussy cards, through the whole daemon on libasound."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soxr

from edgevoice_testbed.sim.simulate import SimulatedCard, SimulationOptions, simulate
from edgevoice_testbed.sim.wav import write_wav
from tests.e2e.conftest import RATE


async def test_preroll_and_tail_bracket_the_speech(tmp_path: Path, emulator_factory) -> None:
    # Speech from 150 ms before the press to 100 ms after the release, silence around it.
    press, release = 1.0, 2.0
    mic = np.zeros(int(3.0 * RATE), dtype="<i2")
    speech = slice(round((press - 0.15) * RATE), round((release + 0.10) * RATE))
    mic[speech] = np.random.default_rng(9).integers(-9000, 9000, speech.stop - speech.start)
    write_wav(tmp_path / "mic.wav", mic.tobytes(), RATE)
    emulator = await emulator_factory()
    await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(press, release)],
            out=tmp_path / "o.wav",
            earcons=False,
            emulator=emulator,
        )
    )
    [utterance] = emulator.utterances
    # From 300 ms before the press (the default pre-roll) to the release instant, contiguous.
    assert utterance.audio == mic[round((press - 0.3) * RATE) : round(release * RATE)].tobytes()
    assert utterance.audio.endswith(mic[round(release * RATE) - 160 : round(release * RATE)].tobytes())
    # The first syllable (150 ms before the press) is in; nothing after the release is.
    heard = np.frombuffer(utterance.audio, dtype="<i2")
    assert np.any(heard[: int(0.15 * RATE)] == 0) and np.any(heard[int(0.15 * RATE) : int(0.3 * RATE)] != 0)
    assert len(heard) == round((release - press + 0.3) * RATE)


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(np.sin(2 * np.pi * frequency * t) * amplitude * 32767).astype("<i2")


def peak_hz(samples: np.ndarray, rate: int) -> float:
    windowed = samples.astype(float) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    return float(np.argmax(spectrum) * rate / len(samples))


def rms_db(samples: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(samples.astype(float) ** 2)) / 32768))


async def test_48k_stereo_microphone_and_44k1_speaker(tmp_path: Path, emulator_factory) -> None:
    write_wav(tmp_path / "mic.wav", tone(1000, 3.0, RATE).tobytes(), RATE)
    emulator = await emulator_factory(
        default={"reply": "A reply played on a card that wants forty four one."}
    )
    out = tmp_path / "out.wav"
    await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.5, 2.5)],
            out=out,
            earcons=False,
            overrides={"audio": {"preroll_ms": 0}},
            emulator=emulator,
            card=SimulatedCard(
                capture_rate=48000, capture_channels=2, playback_rate=44100, playback_channels=2
            ),
        )
    )
    # The server got 16 kHz mono: the 1 kHz tone keeps its frequency and its level...
    [utterance] = emulator.utterances
    assert utterance.rate == 16000
    heard = np.frombuffer(utterance.audio, dtype="<i2")
    assert abs(len(heard) - 2.0 * RATE) <= 400  # the resampler's few ms of delay at most
    steady = heard[800:-800]
    assert abs(peak_hz(steady, RATE) - 1000) < 2
    assert abs(rms_db(steady) - rms_db(tone(1000, 1.0, RATE))) < 0.5
    # ...and no discontinuity at the 20 ms chunk boundaries: no step beyond the sine's slope.
    max_slope = 0.3 * 32767 * 2 * np.pi * 1000 / RATE
    assert np.abs(np.diff(steady.astype(int))).max() <= max_slope * 1.05
    # The speaker card got the reply at its own rate and channel count.
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (44100, 2)
        played = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    assert np.array_equal(played[:, 0], played[:, 1])
    back = soxr.resample(played[:, 0].astype(np.float32), 44100, 24000).astype(np.float32)
    [reply] = emulator.replies
    sent = np.frombuffer(reply.audio, dtype="<i2").astype(np.float32)
    n = min(len(back), len(sent)) - 2400
    residual = back[1200:n] - sent[1200:n]
    snr_db = 10 * np.log10(np.sum(sent[1200:n] ** 2) / np.sum(residual**2))
    assert snr_db > 30, snr_db

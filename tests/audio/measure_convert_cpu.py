"""CPU cost of the converters per second of audio, for each soxr quality.

Not a test (no timing assertions belong in tests): run it by hand on the target board,
    python tests/audio/measure_convert_cpu.py [seconds]
It feeds 20 ms chunks of noise-like speech-band audio, as the daemon does, and reports
process CPU time (time.process_time) per second of audio converted.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from edgevoice.audio import convert


def _chunks(rate: int, channels: int, seconds: float, rng: np.random.Generator) -> list[bytes]:
    frames = int(rate * 0.02)
    total = int(seconds / 0.02)
    data = (rng.standard_normal((total * frames, channels)) * 3000).clip(-32768, 32767)
    pcm = data.astype("<i2").tobytes()
    step = frames * channels * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def measure(seconds: float = 20.0) -> None:
    rng = np.random.default_rng(0)
    capture_in = _chunks(48000, 2, seconds, rng)
    playback_in = _chunks(24000, 1, seconds, rng)
    print(f"{'quality':8} {'48k st->16k mono':>18} {'24k->44.1k st':>16}  (ms CPU per s audio)")
    for quality in ("QQ", "LQ", "MQ", "HQ", "VHQ"):
        convert.RESAMPLE_QUALITY = quality
        cap = convert.CaptureConverter(48000, 2)
        start = time.process_time()
        for chunk in capture_in:
            cap.process(chunk)
        cap.flush()
        cap_ms = (time.process_time() - start) * 1000 / seconds
        play = convert.PlaybackConverter(24000, 44100, 2)
        start = time.process_time()
        for chunk in playback_in:
            play.process(chunk)
        play.flush()
        play_ms = (time.process_time() - start) * 1000 / seconds
        print(f"{quality:8} {cap_ms:18.2f} {play_ms:16.2f}")


if __name__ == "__main__":
    measure(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)

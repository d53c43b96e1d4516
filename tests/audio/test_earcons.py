"""Earcons: short, quiet, click-free, cached, and switchable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevoice.audio.earcons import EARCON_KINDS, RATE, Earcons, render

EXPECTED = {"listening", "sent", "error", "offline", "reconnected"}
# The device's own sounds: a press while muted, the announcement chime, a timer's ring.
HOUSEHOLD = {"muted", "chime", "ring"}


def as_samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def test_all_kinds_exist():
    assert set(EARCON_KINDS) == EXPECTED | HOUSEHOLD


@pytest.mark.parametrize("kind", sorted(HOUSEHOLD))
def test_household_sound_shape(kind):
    x = as_samples(render(kind))
    assert 200 <= len(x) * 1000 / RATE <= 700
    assert abs(20 * math.log10(np.max(np.abs(x)) / 32767) - (-12.0)) < 0.1
    assert abs(x[0]) <= 1 and abs(x[-1]) <= 1
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    assert spectrum[freqs > 4000].sum() / spectrum.sum() < 1e-4


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_earcon_shape(kind):
    x = as_samples(render(kind))
    duration_ms = len(x) * 1000 / RATE
    assert 60 <= duration_ms <= 250

    peak_dbfs = 20 * math.log10(np.max(np.abs(x)) / 32767)
    assert abs(peak_dbfs - (-12.0)) < 0.1

    # Starts and ends at silence: no step when it begins or stops playing.
    assert abs(x[0]) <= 1 and abs(x[-1]) <= 1

    # No clicks: no step larger than a sine at the highest note (E6, 1319 Hz) can make,
    # plus the 10 ms envelope's own slope. A click is a step of a large part of the peak.
    peak = np.max(np.abs(x))
    bound = peak * (2 * math.pi * 1400 / RATE + math.pi / (2 * 240)) + 2
    assert np.max(np.abs(np.diff(x))) <= bound

    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    # Pleasant: the energy stays in the tones, none splashes into the treble as a click
    # would (broadband).
    assert spectrum[freqs > 4000].sum() / spectrum.sum() < 1e-4


def test_a_click_would_be_caught():
    x = as_samples(render("listening")).copy()
    x[len(x) // 2 :] = 0  # cut off mid-note
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    assert spectrum[freqs > 4000].sum() / spectrum.sum() >= 1e-4


def test_get_returns_cached_sounds_and_none_when_disabled():
    earcons = Earcons(enabled=True, disabled=["offline"])
    assert earcons.get("listening") is earcons.get("listening")
    assert earcons.get("listening") == render("listening")
    assert earcons.get("offline") is None
    assert all(Earcons(enabled=False, disabled=[]).get(kind) is None for kind in EXPECTED)


def test_warm_renders_every_enabled_earcon_before_it_is_first_played():
    render.cache_clear()
    Earcons(enabled=True, disabled=["chime"]).warm()
    # Each enabled earcon is in the cache; the disabled one was not rendered.
    assert render.cache_info().currsize == len(EARCON_KINDS) - 1
    hits = render.cache_info().hits
    for kind in EARCON_KINDS:
        if kind != "chime":
            render(kind)
    assert render.cache_info().hits == hits + len(EARCON_KINDS) - 1


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown earcon 'beep'"):
        Earcons(enabled=True, disabled=[]).get("beep")
    with pytest.raises(ValueError, match=r"'lisening'.*known earcons: listening"):
        Earcons(enabled=True, disabled=["lisening"])
    with pytest.raises(ValueError, match="unknown earcon"):
        Earcons(enabled=False, disabled=[]).get("beep")

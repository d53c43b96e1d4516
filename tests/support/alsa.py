"""Simulated ALSA devices for tests that run the CLI in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

from edgevoice_testbed.sim.fussy import asoundrc_for


def simulated_alsa_env(tmp_path: Path, mic_pcm: bytes = b"", **card: object) -> dict[str, str]:
    """An environment whose libasound knows edgevoice_mic/edgevoice_speaker (file plugin);
    ``card``: the simulated card's fussy options (:func:`asoundrc_for`)."""
    mic = tmp_path / "mic.raw"
    mic.write_bytes(mic_pcm)
    speaker = tmp_path / "speaker.raw"
    speaker.touch()
    asoundrc = tmp_path / "asoundrc"
    asoundrc.write_text(asoundrc_for(mic, speaker, **card))  # type: ignore[arg-type]
    env = dict(os.environ)
    env["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{asoundrc}"
    env["GPIOZERO_PIN_FACTORY"] = "mock"
    return env

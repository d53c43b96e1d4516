"""The production daemon on the simulated fussy card, for end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgevoice.config import Settings, load_settings
from edgevoice_testbed.emulator import Emulator
from edgevoice_testbed.sim.fussy import asoundrc_for


def use_simulated_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mic: bytes, **card: Any) -> Path:
    """Write what the microphone hears and an asoundrc for a card with ``card``'s fussy
    options (:func:`asoundrc_for`), and point this process's libasound at it. Returns
    the file the speaker writes."""
    (tmp_path / "mic.raw").write_bytes(mic)
    speaker = tmp_path / "speaker.raw"
    asoundrc = tmp_path / "asoundrc"
    asoundrc.write_text(asoundrc_for(tmp_path / "mic.raw", speaker, **card))
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"/usr/share/alsa/alsa.conf:{asoundrc}")
    return speaker


def settings_for_card(tmp_path: Path, emulator: Emulator) -> Settings:
    """The daemon's settings for the simulated card and the emulator (:func:`card_overrides`)."""
    return load_settings(None, overrides=card_overrides(tmp_path, emulator)).settings


def card_overrides(tmp_path: Path, emulator: Emulator) -> dict[str, Any]:
    """Configuration for the simulated card and the emulator: no earcons, no debounce,
    the state in ``tmp_path``."""
    return {
        "audio": {
            "capture_device": "edgevoice_mic",
            "playback_device": "edgevoice_speaker",
            "earcons": False,
        },
        "button": {"bounce_time_ms": None},
        "paths": {"state_dir": str(tmp_path / "state")},
        "live": {"base_url": emulator.base_url, "ca_file": str(emulator.write_ca(tmp_path / "ca.pem"))},
    }


async def credentials() -> str:
    """The emulator takes any key."""
    return "test-key"

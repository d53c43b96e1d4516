"""A simulation borrows the process's ALSA configuration and gives it back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgevoice.errors import UserError
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate


@pytest.mark.parametrize("before", ["/usr/share/alsa/alsa.conf:/somewhere/asoundrc", None])
async def test_alsa_config_path_is_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before) -> None:
    if before is None:
        monkeypatch.delenv("ALSA_CONFIG_PATH", raising=False)
    else:
        monkeypatch.setenv("ALSA_CONFIG_PATH", before)
    result = await simulate(SimulationOptions(out=tmp_path / "out.wav", earcons=False, timeout_s=60))
    assert result.transcript  # a whole conversation ran on the simulated card
    assert os.environ.get("ALSA_CONFIG_PATH") == before


async def test_alsa_config_path_is_restored_after_a_failure(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ALSA_CONFIG_PATH", "mine")
    options = SimulationOptions(
        out=tmp_path / "out.wav", overrides={"audio": {"capture_device": "no_such_pcm"}}, timeout_s=60
    )
    with pytest.raises(UserError, match="no_such_pcm"):
        await simulate(options)
    assert os.environ["ALSA_CONFIG_PATH"] == "mine"

"""The bench runs EdgeVoice's workers as systemd/edgevoice.service runs the daemon: a
change to the unit's scheduling or environment must reach the bench's figures too."""

from __future__ import annotations

from pathlib import Path

from edgevoice_testbed.bench import runner

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgevoice.service"


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_bench_gives_edgevoice_the_units_scheduling_and_environment() -> None:
    settings = unit_settings()
    assert settings["Nice"] == [str(runner.UNIT_NICE)]
    assert settings["LimitRTPRIO"] == [str(runner.UNIT_RTPRIO)]
    soft_us, hard_us = runner.UNIT_RTTIME_US
    assert settings["LimitRTTIME"] == [f"{soft_us // 1000}ms:{hard_us // 1_000_000}s"]
    environment = dict(value.partition("=")[::2] for value in settings.get("Environment", []))
    assert environment == runner.UNIT_ENVIRONMENT

"""The real Home Assistant of the whole test session, as a pytest plugin (tests/conftest.py
loads it) so every test directory shares ONE instance: ``homeassistant==HA_VERSION`` with
its demo integration, started once on a loopback port, with its MQTT integration
connected to a Mosquitto of its own (``mqtt_port``) through the config flow a user goes
through. Directories add what they need on top (tests/homeassistant: areas and aliases).

The figures (install, start, MQTT set-up, and what tests add) are collected in
``FIGURES`` and printed at the end of the run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.home_assistant import (
    HomeAssistantProcess,
    check_python,
    connect_mqtt,
    ensure_installed,
    run_in_thread,
    skip_reason,
)
from tests.tools.home_fakes import MOSQUITTO, Mosquitto

FIGURES: dict[str, str] = {}


@pytest.fixture(scope="session")
def real_home_assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistantProcess]:
    if (reason := skip_reason()) is not None:
        pytest.skip(reason)
    check_python()
    if not Path(MOSQUITTO).exists():
        raise RuntimeError(f"the real Home Assistant's MQTT broker needs mosquitto ({MOSQUITTO} is missing)")
    hass, install_s = ensure_installed()
    FIGURES["HA install (from nothing)"] = f"{install_s:.1f} s" if install_s else "cached"
    directory = Path(tmp_path_factory.mktemp("home-assistant"))
    broker = Mosquitto(directory)
    ha = HomeAssistantProcess(hass, directory / "config")
    try:
        started = time.monotonic()
        broker.start()
        FIGURES["HA start to RUNNING"] = f"{ha.start():.2f} s"
        connected = time.monotonic()
        _entry, flow_s = run_in_thread(connect_mqtt, ha, broker.port)
        ha.mqtt_port = broker.port
        FIGURES["HA MQTT config flow (2 REST steps)"] = f"{flow_s:.2f} s"
        FIGURES["HA MQTT config flow to birth message"] = f"{time.monotonic() - connected:.2f} s"
        FIGURES["HA + MQTT set-up in all"] = f"{time.monotonic() - started:.2f} s"
        yield ha
    finally:
        ha.stop()
        broker.stop()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("real Home Assistant figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")

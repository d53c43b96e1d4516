"""A real Home Assistant (``homeassistant==HA_VERSION`` with its demo integration) for the
whole session: installed into its own cached virtual environment, started once on a
loopback port, with the areas and aliases the tests need set through HA's own API.

The figures the issue asks for (install, start, discovery, rename -> declarations) are
collected in ``FIGURES`` and printed at the end of the run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.home_assistant import (
    AdminSocket,
    HomeAssistantProcess,
    ensure_installed,
    run_in_thread,
)
from tests.tools.home_fakes import Outcomes

FIGURES: dict[str, str] = {}

# The home the tests expect: demo entities put into areas, with aliases.
AREAS = {"Kitchen": ["cooking area"], "Bedroom": [], "Living room": ["lounge"]}
PLACES = {
    "light.kitchen_lights": ("Kitchen", []),
    "light.ceiling_lights": ("Kitchen", []),
    "light.bed_light": ("Bedroom", ["reading lamp"]),
    "light.living_room_rgbww_lights": ("Living room", []),
    "cover.living_room_window": ("Living room", ["lounge blind"]),
    "cover.hall_window": (None, []),
}


async def _set_up_home(ha: HomeAssistantProcess) -> None:
    async with AdminSocket(ha.url, ha.token) as admin:
        area_ids = {}
        for name, aliases in AREAS.items():
            area = await admin.command("config/area_registry/create", name=name, aliases=aliases)
            area_ids[name] = area["area_id"]  # type: ignore[index]
        for entity_id, (area, aliases) in PLACES.items():
            await admin.command(
                "config/entity_registry/update",
                entity_id=entity_id,
                area_id=area_ids[area] if area else None,
                aliases=aliases,
            )
        # The alarm panel is not exposed to Assist by default; the alarm tests need it.
        await admin.command(
            "homeassistant/expose_entity",
            assistants=["conversation"],
            entity_ids=["alarm_control_panel.security"],
            should_expose=True,
        )


@pytest.fixture(scope="session")
def real_home_assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HomeAssistantProcess]:
    hass, install_s = ensure_installed()
    FIGURES["HA install (from nothing)"] = f"{install_s:.1f} s" if install_s else "cached"
    ha = HomeAssistantProcess(hass, Path(tmp_path_factory.mktemp("home-assistant")) / "config")
    FIGURES["HA start to RUNNING"] = f"{ha.start():.2f} s"
    started = time.monotonic()
    try:
        run_in_thread(_set_up_home, ha)
        FIGURES["setting up areas/aliases/exposure"] = f"{time.monotonic() - started:.2f} s"
        yield ha
    finally:
        ha.stop()


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if FIGURES:
        terminalreporter.section("real Home Assistant figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")

"""The session's real Home Assistant (tests/support/home_assistant_fixture.py: installed
into its own cached virtual environment, started once on a loopback port, shared with
tests/household) with the areas and aliases these tests need set through HA's own API.

Figures (discovery, rename -> declarations) go into the shared ``FIGURES``, printed at the
end of the run."""

from __future__ import annotations

import time

import pytest

from tests.support.home_assistant import AdminSocket, HomeAssistantProcess, run_in_thread
from tests.support.home_assistant_fixture import FIGURES
from tests.tools.home_fakes import Outcomes

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
def real_home_assistant(real_home_assistant: HomeAssistantProcess) -> HomeAssistantProcess:
    """The session's Home Assistant (tests/support/home_assistant_fixture.py) with the home
    these tests expect, set up once through HA's API."""
    started = time.monotonic()
    run_in_thread(_set_up_home, real_home_assistant)
    FIGURES["setting up areas/aliases/exposure"] = f"{time.monotonic() - started:.2f} s"
    return real_home_assistant


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


"""The whole daemon (simulated hardware, the Live API emulator) with only a URL and a token
for a real Home Assistant: spoken commands switch real lights, and a rename in HA reaches
the model in a new session without cutting the answer being spoken."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from edgevoice.core.events import DeviceState
from edgevoice.tools.device_functions import FUNCTIONS as DEVICE_FUNCTIONS
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import emulator_factory, noise_wav, scenario  # noqa: F401 (fixture)
from tests.homeassistant.conftest import FIGURES
from tests.homeassistant.test_real_home import ha_state, set_ha_state
from tests.support.home_assistant import AdminSocket, HomeAssistantProcess


def only_url_and_token(ha: HomeAssistantProcess) -> dict[str, Any]:
    return {
        "home": {"backend": "homeassistant", "homeassistant": {"url": ha.url}},
        "audio": {"preroll_ms": 0},
    }


def declarations(connection: Any) -> dict[str, str]:
    """The home's functions a connection declared (the device's own timers and volume aside)."""
    tools = (connection.setup or {}).get("tools") or []
    return {
        d["name"]: d.get("description", "")
        for tool in tools
        for d in tool.get("functionDeclarations", tool.get("function_declarations", []))
        if d["name"] not in DEVICE_FUNCTIONS
    }


async def test_a_spoken_command_by_alias_and_one_for_a_whole_room(
    real_home_assistant, emulator_factory, tmp_path: Path, monkeypatch  # noqa: F811
):
    ha = real_home_assistant
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", ha.token)
    await set_ha_state(ha, "light", "turn_off", "light.bed_light")
    await set_ha_state(ha, "light", "turn_on", "light.kitchen_lights")
    await set_ha_state(ha, "light", "turn_on", "light.ceiling_lights")
    noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(
        pace=1.0,
        turns=[
            {
                "input_transcript": "turn on the reading lamp",
                "reply": "Sure.",
                "tool_calls": [{"name": "set_light", "args": {"entity": "reading lamp", "on": True}}],
            },
            {
                "input_transcript": "turn off the kitchen",
                "reply": "Done.",
                "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen", "on": False}}],
            },
        ],
    )
    await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8), (1.6, 2.2)],
            out=tmp_path / "out.wav",
            earcons=False,
            realtime=True,
            overrides=only_url_and_token(ha),
            emulator=emulator,
        )
    )
    # The model was told the home as HA has it.
    declared = declarations(emulator.connections[0])
    assert "Bed Light (Bedroom); also: reading lamp" in declared["set_light"]
    assert "Kitchen (also: cooking area)" in declared["set_light"]
    alias, room = emulator.tool_responses
    assert alias.response["ok"] is True and alias.response["state"]["state"] == "on", alias.response
    assert room.response["ok"] is True, room.response
    assert sorted(item["entity"] for item in room.response["results"]) == ["Ceiling Lights", "Kitchen Lights"]
    assert (await ha_state(ha, "light.bed_light"))["state"] == "on"
    for entity_id in ("light.kitchen_lights", "light.ceiling_lights"):
        assert (await ha_state(ha, entity_id))["state"] == "off"


async def test_a_rename_in_home_assistant_reaches_the_model_after_the_answer_not_during_it(
    real_home_assistant, emulator_factory, tmp_path: Path, monkeypatch  # noqa: F811
):
    ha = real_home_assistant
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", ha.token)
    await set_ha_state(ha, "light", "turn_off", "light.office_rgbw_lights")
    noise_wav(tmp_path / "mic.wav", 12.0)
    story = "Once upon a time a lamp in an office wanted a better name, and one day it got one. " * 2
    emulator = await emulator_factory(
        pace=1.0, turns=[{"input_transcript": "tell me a story", "reply": story}]
    )
    renamed: dict[str, float] = {}

    async def rename_while_the_story_plays() -> None:
        await emulator.wait_for(lambda e: bool(e.replies) and e.replies[0].chunks >= 2, timeout=30)
        async with AdminSocket(ha.url, ha.token) as admin:
            renamed["t"] = time.monotonic()
            await admin.command(
                "config/entity_registry/update", entity_id="light.office_rgbw_lights", name="Desk lamp"
            )
        # The next session's first utterance: a command with the new name.
        emulator.set_scenario(
            scenario(
                pace=1.0,
                turns=[
                    {
                        "input_transcript": "turn on the desk lamp",
                        "reply": "Done.",
                        "tool_calls": [{"name": "set_light", "args": {"entity": "desk lamp", "on": True}}],
                    }
                ],
            )
        )
        await emulator.wait_for(
            lambda e: len(e.connections) >= 2 and e.connections[1].setup is not None, 60
        )
        renamed["new session"] = time.monotonic()

    renaming = asyncio.ensure_future(rename_while_the_story_plays())
    try:
        await simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=[(0.2, 0.8), (10.0, 10.6)],
                out=tmp_path / "out.wav",
                earcons=False,
                realtime=True,
                overrides=only_url_and_token(ha),
                emulator=emulator,
            )
        )
        await asyncio.wait_for(renaming, 5)
    finally:
        renaming.cancel()
        async with AdminSocket(ha.url, ha.token) as admin:
            await admin.command(
                "config/entity_registry/update", entity_id="light.office_rgbw_lights", name=None
            )
    first, second = emulator.connections[:2]
    # The story was not cut: it finished before the switch, uninterrupted.
    told = emulator.replies[0]
    assert told.finished and not told.interrupted
    assert told.end_t is not None and told.end_t <= second.opened_t
    assert "Desk lamp" not in declarations(first)["set_light"]
    assert "- Desk lamp" in declarations(second)["set_light"]
    # The new session was told the conversation so far, and the command by the new name works.
    context = json.dumps(
        [
            frame.message
            for frame in emulator.received
            if frame.connection_id == second.id and frame.message and "clientContent" in frame.message
        ]
    )
    assert "tell me a story" in context
    [response] = emulator.tool_responses
    assert response.connection_id == second.id and response.response["ok"] is True, response.response
    assert (await ha_state(ha, "light.office_rgbw_lights"))["state"] == "on"
    FIGURES["rename in HA -> new session declaring it (waits for the answer to end)"] = (
        f"{renamed['new session'] - renamed['t']:.2f} s"
    )



async def test_a_refused_token_shows_in_the_status_and_the_journal_and_the_model_hears_why(
    real_home_assistant, emulator_factory, tmp_path: Path, monkeypatch, caplog  # noqa: F811
):
    ha = real_home_assistant
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", "a-revoked-token-0042")
    noise_wav(tmp_path / "mic.wav", 2.0)
    emulator = await emulator_factory(
        turns=[
            {
                "input_transcript": "turn on the reading lamp",
                "reply": "Let me try.",
                "tool_calls": [
                    {
                        "name": "get_state",
                        "args": {"entity": "reading lamp"},
                        "follow_up": "The home is unavailable right now.",
                    }
                ],
            }
        ]
    )
    result = await simulate(
        SimulationOptions(
            mic=tmp_path / "mic.wav",
            presses=[(0.2, 0.8)],
            out=tmp_path / "out.wav",
            earcons=False,
            overrides=only_url_and_token(ha),
            emulator=emulator,
        )
    )
    # The daemon started anyway; the model was told the home is unavailable.
    assert list(declarations(emulator.connections[0])) == ["get_state"]
    [response] = emulator.tool_responses
    assert response.response["ok"] is False and "unavailable" in response.response["error"]
    status = result.daemon.conversation.status
    assert status is not None and status.state is DeviceState.ERROR
    assert "refused the access token" in status.text() and "HOMEASSISTANT_TOKEN" in status.text()
    assert any(
        r.levelno >= logging.ERROR and "HOMEASSISTANT_TOKEN" in r.getMessage() for r in caplog.records
    )
    assert "a-revoked-token-0042" not in caplog.text

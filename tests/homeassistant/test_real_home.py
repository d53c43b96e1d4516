"""The Home Assistant backend against a real Home Assistant core with its demo integration:
discovery, areas and groups, live changes, HA's own error text, slow devices, restarts and
a revoked token."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from google.genai import types

from edgevoice.tools import ToolBox
from edgevoice.tools.settings import HomeSettings
from tests.homeassistant.conftest import FIGURES
from tests.support.home_assistant import AdminSocket, HomeAssistantProcess
from tests.tools.home_fakes import Outcomes

CODE = "4321"  # the device's own confirmation code (unlocking)


def make_box(ha: HomeAssistantProcess, token: str | None = None, **home: Any) -> ToolBox:
    settings = HomeSettings.model_validate(
        {"backend": "homeassistant", "homeassistant": {"url": ha.url}, **home}
    )
    return ToolBox.from_settings(
        settings, state_dir=Path("/nonexistent"), environ={"HOMEASSISTANT_TOKEN": token or ha.token}
    )


def call(call_id: str, name: str, **args: Any) -> types.FunctionCall:
    return types.FunctionCall(id=call_id, name=name, args=args)


def declared(box: ToolBox) -> dict[str, str]:
    return {d["name"]: d.get("description") or "" for d in box.declarations()}


async def ha_state(ha: HomeAssistantProcess, entity_id: str) -> dict[str, Any]:
    async with AdminSocket(ha.url, ha.token) as admin:
        states = await admin.command("get_states")
    return next(s for s in states if s["entity_id"] == entity_id)  # type: ignore[union-attr]


async def set_ha_state(
    ha: HomeAssistantProcess, domain: str, service: str, entity_id: str, **data: Any
) -> None:
    async with AdminSocket(ha.url, ha.token) as admin:
        await admin.command(
            "call_service", domain=domain, service=service, service_data=data, target={"entity_id": entity_id}
        )


class DeclarationChanges:
    """Counts the toolbox's ``on_declarations_changed`` calls; a test waits for the next."""

    def __init__(self, box: ToolBox):
        self.count = 0
        self._changed = asyncio.Event()
        box.on_declarations_changed = self._on_change

    def _on_change(self) -> None:
        self.count += 1
        self._changed.set()

    async def next(self, within: float = 10.0) -> None:
        await asyncio.wait_for(self._changed.wait(), within)
        self._changed.clear()


async def test_only_url_and_token_discover_the_demo_home_with_its_areas_and_aliases(real_home_assistant):
    ha = real_home_assistant
    box = make_box(ha)
    async with box:
        directory = box.registry.directory
        bed = directory.get("light.bed_light")
        assert bed is not None and bed.room == "Bedroom" and bed.aliases == ("reading lamp",)
        kitchen = directory.get("light.kitchen_lights")
        assert kitchen is not None and kitchen.room == "Kitchen" and kitchen.room_aliases == ("cooking area",)
        assert directory.get("cover.living_room_window").aliases == ("lounge blind",)  # type: ignore[union-attr]
        # Exposure as HA decides it: media players are not exposed by default, the alarm
        # panel was exposed by the test, fans and switches are exposed by default.
        assert directory.get("media_player.walkman") is None
        assert directory.get("alarm_control_panel.security") is not None
        assert directory.get("fan.ceiling_fan") is not None
        left_out = {item.entity_id: item.reason for item in box.backend.home.left_out}  # type: ignore[attr-defined]
        assert "not exposed" in left_out["media_player.walkman"]
        # The declarations list the names, aliases and rooms the model may use.
        functions = declared(box)
        assert "- Reading lamp" not in functions["set_light"]
        assert "Bed Light (Bedroom); also: reading lamp" in functions["set_light"]
        assert "Kitchen (also: cooking area)" in functions["set_light"]
        assert "Living Room Window (Living room); also: lounge blind" in functions["set_cover"]
        FIGURES["discovery of the demo home"] = f"{box.backend.discovery_s:.3f} s"  # type: ignore[attr-defined]
        FIGURES["entities for the model / left out"] = (
            f"{len(directory)} / {len(left_out)}"
        )


async def test_a_light_by_its_alias_and_every_light_of_an_area(real_home_assistant, outcomes: Outcomes):
    ha = real_home_assistant
    await set_ha_state(ha, "light", "turn_off", "light.bed_light")
    await set_ha_state(ha, "light", "turn_on", "light.kitchen_lights")
    await set_ha_state(ha, "light", "turn_on", "light.ceiling_lights")
    async with make_box(ha) as box:
        box.start(call("1", "set_light", entity="reading lamp", on=True), outcomes)
        alias = await outcomes.get("1")
        assert alias.ok and alias.response["state"]["state"] == "on", alias.response
        assert (await ha_state(ha, "light.bed_light"))["state"] == "on"

        box.start(call("2", "set_light", entity="the cooking area", on=False), outcomes)
        area = await outcomes.get("2")
        assert area.ok, area.response
        assert {item["entity"]: item["ok"] for item in area.response["results"]} == {
            "Ceiling Lights": True,
            "Kitchen Lights": True,
        }
        for entity_id in ("light.kitchen_lights", "light.ceiling_lights"):
            assert (await ha_state(ha, entity_id))["state"] == "off"
        assert (await ha_state(ha, "light.bed_light"))["state"] == "on"  # another room

        # A switched device, by its HA name.
        await set_ha_state(ha, "switch", "turn_on", "switch.decorative_lights")
        box.start(call("4", "set_power", entity="decorative lights", on=False), outcomes)
        power = await outcomes.get("4")
        assert power.ok and power.response["state"]["state"] == "off", power.response
        assert (await ha_state(ha, "switch.decorative_lights"))["state"] == "off"

        # get_state answers from the live cache: a change made in HA is seen without a call.
        await set_ha_state(ha, "light", "turn_off", "light.bed_light")
        box.start(call("3", "get_state", entity="reading lamp"), outcomes)
        read = await outcomes.get("3")
        assert read.ok and read.response["state"]["state"] == "off"


async def test_unlocking_reports_the_final_state_and_a_jammed_lock_says_so(real_home_assistant, outcomes):
    ha = real_home_assistant
    await set_ha_state(ha, "lock", "lock", "lock.front_door")
    async with make_box(ha, allow_locks=True, confirmation_code=CODE) as box:
        box.start(call("1", "set_lock", entity="front door", locked=False, confirmation=CODE), outcomes)
        unlocked = await outcomes.get("1")
        assert unlocked.ok, unlocked.response
        assert unlocked.response["state"]["state"] == "unlocked"
        assert unlocked.response["result"] == "Front Door is unlocked."

        box.start(call("2", "set_lock", entity="poorly installed door", locked=True), outcomes)
        jammed = await outcomes.get("2")
        assert not jammed.ok and "jammed" in jammed.response["error"], jammed.response


async def test_the_alarm_code_goes_to_the_panel_and_a_wrong_one_is_refused_in_has_words(
    real_home_assistant, outcomes
):
    ha = real_home_assistant
    await set_ha_state(ha, "alarm_control_panel", "alarm_disarm", "alarm_control_panel.security", code="1234")
    async with make_box(ha, allow_alarms=True) as box:
        assert box.registry.directory.get("alarm_control_panel.security").needs_code  # type: ignore[union-attr]
        box.start(call("1", "set_alarm", entity="security", mode="armed_home"), outcomes)
        missing = await outcomes.get("1")
        assert not missing.ok and "needs its alarm code" in missing.response["error"]

        box.start(call("2", "set_alarm", entity="security", mode="armed_home", confirmation="0000"), outcomes)
        wrong = await outcomes.get("2")
        assert not wrong.ok
        # HA's own reason, not "internal error", and never the code itself.
        assert "Invalid alarm code provided" in wrong.response["error"], wrong.response
        assert "0000" not in wrong.response["error"]

        box.start(call("3", "set_alarm", entity="security", mode="armed_home", confirmation="1234"), outcomes)
        armed = await outcomes.get("3", within=15)
        assert armed.ok, armed.response
        assert (await ha_state(ha, "alarm_control_panel.security"))["state"] in ("arming", "armed_home")


async def test_a_moving_cover_is_reported_when_it_reaches_the_position(real_home_assistant, outcomes):
    ha = real_home_assistant
    async with make_box(ha) as box:
        before = (await ha_state(ha, "cover.living_room_window"))["attributes"]["current_position"]
        target = 10 if before > 50 else 90
        started = time.monotonic()
        box.start(call("1", "set_cover", entity="lounge blind", position=target), outcomes)
        moved = await outcomes.get("1", within=20)
        took = time.monotonic() - started
        assert moved.ok, moved.response
        # Reported at the position asked for, not at the old one as "done".
        assert moved.response["state"]["position"] == target, moved.response
        assert "still" not in moved.response["result"]
        assert (await ha_state(ha, "cover.living_room_window"))["attributes"]["current_position"] == target
        FIGURES["cover moving 70->10 (or back) reported after"] = f"{took:.1f} s"

        # A feature the device lacks: HA's own words reach the model.
        box.start(call("2", "set_cover", entity="kitchen window", position=50), outcomes)
        unsupported = await outcomes.get("2")
        assert not unsupported.ok
        assert "does not support this service" in unsupported.response["error"], unsupported.response


async def test_a_device_slower_than_the_bounded_wait_is_reported_still_on_its_way(
    real_home_assistant, outcomes
):
    ha = real_home_assistant
    async with make_box(ha, homeassistant={"url": ha.url, "settle_timeout_s": 0.5}) as box:
        before = (await ha_state(ha, "cover.living_room_window"))["attributes"]["current_position"]
        target = before - 30 if before >= 30 else before + 30
        box.start(call("1", "set_cover", entity="living room window", position=target), outcomes)
        moving = await outcomes.get("1")
        assert moving.ok and "still on its way" in moving.response["result"], moving.response
        assert moving.response["state"]["position"] != target
        # Let the cover finish before another test uses it.
        await box.backend._states.wait_for(  # type: ignore[attr-defined]
            "cover.living_room_window",
            lambda raw: raw["attributes"].get("current_position") == target,
            20,
        )


async def test_rename_alias_and_unexposing_reach_the_declarations_without_a_restart(real_home_assistant):
    ha = real_home_assistant
    async with make_box(ha) as box, AdminSocket(ha.url, ha.token) as admin:
        changes = DeclarationChanges(box)
        renamed_at = time.monotonic()
        await admin.command(
            "config/entity_registry/update", entity_id="light.office_rgbw_lights", name="Desk lamp"
        )
        await changes.next()
        rename_s = time.monotonic() - renamed_at
        assert "- Desk lamp" in declared(box)["set_light"]
        assert "Office RGBW Lights" not in declared(box)["set_light"]

        await admin.command(
            "config/entity_registry/update", entity_id="light.office_rgbw_lights", aliases=["work light"]
        )
        await changes.next()
        assert "- Desk lamp; also: work light" in declared(box)["set_light"]

        await admin.command(
            "homeassistant/expose_entity",
            assistants=["conversation"],
            entity_ids=["light.office_rgbw_lights"],
            should_expose=False,
        )
        await changes.next()
        assert "Desk lamp" not in declared(box)["set_light"]
        reasons = {item.entity_id: item.reason for item in box.backend.home.left_out}  # type: ignore[attr-defined]
        assert "not exposed" in reasons["light.office_rgbw_lights"]

        # Back as it was, for the other tests.
        await admin.command(
            "homeassistant/expose_entity",
            assistants=["conversation"],
            entity_ids=["light.office_rgbw_lights"],
            should_expose=True,
        )
        await admin.command(
            "config/entity_registry/update", entity_id="light.office_rgbw_lights", name=None, aliases=[]
        )
        FIGURES["rename in HA -> new declarations"] = f"{rename_s * 1000:.0f} ms"


async def test_home_assistant_down_at_start_then_restarting_mid_conversation(
    real_home_assistant, outcomes, caplog
):
    ha = real_home_assistant
    caplog.set_level(logging.INFO)
    ha.stop()
    try:
        box = make_box(ha, homeassistant={"url": ha.url, "reconnect_initial_s": 0.2, "reconnect_max_s": 1.0})
        async with box:
            # The daemon starts anyway; the model is told the home is unavailable.
            assert list(declared(box)) == ["get_state"]
            assert "unavailable" in declared(box)["get_state"]
            box.start(call("1", "get_state", entity="kitchen lights"), outcomes)
            refused = await outcomes.get("1")
            assert not refused.ok and "unavailable" in refused.response["error"]

            changes = DeclarationChanges(box)
            await asyncio.to_thread(ha.start)
            await changes.next(within=30)
            assert "Kitchen Lights" in declared(box)["set_light"]

            # Restarted mid-conversation: a command while it is down fails in words, the
            # next one once it is back works.
            await asyncio.to_thread(ha.stop)
            box.start(call("2", "set_light", entity="reading lamp", on=True), outcomes)
            down = await outcomes.get("2")
            assert not down.ok and "Home Assistant" in down.response["error"], down.response
            await asyncio.to_thread(ha.start)
            await asyncio.wait_for(box.backend.connected.wait(), 30)  # type: ignore[attr-defined]
            box.start(call("3", "set_light", entity="reading lamp", on=True), outcomes)
            back = await outcomes.get("3")
            assert back.ok, back.response
            assert changes.count == 1  # the same home: no needless session switch
    finally:
        if ha.process is None or ha.process.poll() is not None:
            ha.start()


async def test_a_revoked_token_gives_a_status_that_names_the_token(real_home_assistant, outcomes, caplog):
    ha = real_home_assistant
    async with AdminSocket(ha.url, ha.token) as admin:
        token = await admin.command(
            "auth/long_lived_access_token", client_name="edgevoice-revoked", lifespan=1
        )
    problems: list[str | None] = []
    reported = asyncio.Event()

    def on_problem(problem: str | None) -> None:
        problems.append(problem)
        if problem is not None:
            reported.set()

    box = make_box(ha, token=str(token), homeassistant={"url": ha.url, "reconnect_initial_s": 0.2})
    async with box:
        box.on_problem = on_problem
        assert "Bed Light" in declared(box)["set_light"]
        async with AdminSocket(ha.url, ha.token) as admin:
            tokens = await admin.command("auth/refresh_tokens")
            [revoked] = [t for t in tokens if t["client_name"] == "edgevoice-revoked"]  # type: ignore[union-attr]
            await admin.command("auth/delete_refresh_token", refresh_token_id=revoked["id"])
        await asyncio.wait_for(reported.wait(), 15)
        problem = problems[-1]
        assert problem is not None and "refused the access token" in problem
        assert "HOMEASSISTANT_TOKEN" in problem and str(token) not in problem
        assert any(
            r.levelno == logging.ERROR and "HOMEASSISTANT_TOKEN" in r.getMessage() for r in caplog.records
        )
        box.start(call("1", "set_light", entity="reading lamp", on=False), outcomes)
        failed = await outcomes.get("1")
        assert not failed.ok and "access token" in failed.response["error"]
        assert str(token) not in caplog.text


def test_edgevoice_home_prints_what_the_model_sees_and_why_others_are_left_out(
    real_home_assistant, tmp_path, monkeypatch, capsys
):
    from edgevoice.cli import main

    ha = real_home_assistant
    config = tmp_path / "edgevoice.toml"
    config.write_text(f'[home]\nbackend = "homeassistant"\n[home.homeassistant]\nurl = "{ha.url}"\n')
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", ha.token)
    assert main(["home", "--config", str(config), "--declarations"]) == 0
    out = capsys.readouterr().out
    assert "entities for the model" in out
    bed = next(line for line in out.splitlines() if line.startswith("light.bed_light"))
    assert "Bed Light" in bed and "reading lamp" in bed and "Bedroom" in bed and "brightness" in bed
    assert "media_player.walkman (Walkman): not exposed to Assist in Home Assistant" in out
    fan = next(line for line in out.splitlines() if line.startswith("fan.ceiling_fan"))
    assert "on/off" in fan
    assert "Not offered by configuration: set_lock (home.allow_locks), set_alarm (home.allow_alarms)" in out
    assert "set_light:\nSwitch a light on or off" in out
    assert ha.token not in out

    monkeypatch.setenv("HOMEASSISTANT_TOKEN", "not-a-token")
    assert main(["home", "--config", str(config)]) == 69
    assert "refused the access token" in capsys.readouterr().err

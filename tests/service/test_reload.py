"""Reloading the configuration applies every section, or says why it cannot.

The daemon runs in-process on real parts: its sound card is libasound's file plugin (read
at the card's pace), its button and LED real gpiozero devices on mock pins, and it talks
to the Live API emulator over real TLS. Each test changes one section and checks what
the device now does, not only what the report says.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.alsa import CaptureDevice, OpenedFormat
from edgevoice.config import Settings, deep_merge, load_settings
from edgevoice.core.events import Event, Pressed
from edgevoice.errors import UserError
from edgevoice.sections import ConfigError
from edgevoice.service.daemon import Daemon
from edgevoice.service.devices import AlsaDevices
from edgevoice.service.instance_lock import StateDirectoryInUse
from edgevoice_testbed.emulator import Emulator, Scenario
from edgevoice_testbed.emulator.faults import Fault
from tests.support.card_daemon import card_overrides, credentials, use_simulated_card

PORCH_ONLY = {"entities": [{"id": "light.porch", "name": "Porch light"}]}


class PacedMicrophone:
    """The file plugin answers at once; a sound card answers once a period is recorded."""

    def __init__(self, device: CaptureDevice, period_s: float) -> None:
        self._device = device
        self._period_s = period_s
        self._next = time.monotonic()
        self._closed = threading.Event()

    def read(self) -> tuple[int, bytes]:
        self._next += self._period_s
        # Pacing a simulated sound card by the clock, as a real one blocks in read().
        self._closed.wait(max(0.0, self._next - time.monotonic()))
        return self._device.read()

    def cut_short(self) -> None:
        self._device.cut_short()

    def close(self) -> None:
        self._closed.set()
        self._device.close()


class PacedCard(AlsaDevices):
    opened_captures = 0

    def wrap_capture(self, device: CaptureDevice, opened: OpenedFormat) -> CaptureDevice:
        PacedCard.opened_captures += 1
        return PacedMicrophone(device, self.audio.period_ms / 1000)


class Device:
    """A running daemon and a way to wait for what it does."""

    def __init__(self, daemon: Daemon, pins: MockFactory, base: dict[str, Any]) -> None:
        self.daemon = daemon
        self.pins = pins
        self.base = base
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        daemon.watchers.append(self._seen)

    def _seen(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    def settings(self, **sections: Any) -> Settings:
        return load_settings(None, overrides=deep_merge(self.base, sections)).settings

    def connected(self) -> bool:
        return self.daemon.conversation.link_up and self.daemon.quiet.is_set()


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    server = Emulator(scenario=Scenario.model_validate({"voice": "tone", "pace": "fast"}))
    await server.start()
    yield server
    await server.aclose()


@pytest.fixture
async def device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Emulator
) -> AsyncIterator[Device]:
    use_simulated_card(tmp_path, monkeypatch, bytes(16000 * 2 * 60))
    base = card_overrides(tmp_path, emulator)
    settings = load_settings(None, overrides=base).settings
    pins = MockFactory()
    daemon = Daemon(settings, PacedCard(settings.audio, pin_factory=pins), credentials=credentials)
    running = Device(daemon, pins, base)
    task = asyncio.create_task(daemon.run())
    try:
        await running.until(running.connected)
        yield running
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 15)


def declared(connection: Any) -> set[str]:
    tools = (connection.setup or {}).get("tools") or []
    return {f["name"] for tool in tools for f in tool.get("functionDeclarations", [])}


async def test_a_new_ca_file_and_endpoint_are_used_by_the_next_connection(
    device: Device, tmp_path: Path
) -> None:
    # Another server with its own certificate authority: without the new TLS context the
    # handshake fails verification and the device stays offline.
    other = Emulator(scenario=Scenario.model_validate({"voice": "tone", "pace": "fast"}))
    await other.start()
    try:
        ca = other.write_ca(tmp_path / "other-ca.pem")
        new = device.settings(live={"base_url": other.base_url, "ca_file": str(ca)})
        report = await device.daemon.reload(new)
        assert report.applied == ["live"]
        await device.until(lambda: any(c.accepted for c in other.connections) and device.connected())
    finally:
        await other.aclose()


async def test_a_ca_file_that_cannot_be_read_refuses_the_reload(device: Device, tmp_path: Path) -> None:
    before = device.daemon.settings
    with pytest.raises(UserError, match=r"live\.ca_file"):
        await device.daemon.reload(device.settings(live={"ca_file": str(tmp_path / "missing.pem")}))
    assert device.daemon.settings is before


async def test_new_home_entities_are_offered_to_a_new_session(device: Device, emulator: Emulator) -> None:
    old_tools = device.daemon.toolbox
    assert "Kitchen light" in old_tools.describe_state()
    sessions = len(emulator.connections)
    report = await device.daemon.reload(device.settings(home=PORCH_ONLY))
    assert report.applied == ["home"]
    assert device.daemon.toolbox is not old_tools
    state = device.daemon.toolbox.describe_state()
    assert "Porch light" in state and "Kitchen light" not in state
    await device.until(lambda: len(emulator.connections) > sessions and device.connected())
    newest = emulator.connections[-1]
    assert newest.resumed_handle is None  # a new session: the setup carries the new functions
    assert "set_light" in declared(newest)
    assert "set_climate" not in declared(newest)  # the demo home's thermostat is gone


async def test_a_home_that_cannot_be_built_refuses_the_reload(device: Device) -> None:
    tools = device.daemon.toolbox
    with pytest.raises(ConfigError, match="long-lived access token"):
        await device.daemon.reload(device.settings(home={**PORCH_ONLY, "backend": "homeassistant"}))
    assert device.daemon.toolbox is tools
    assert device.daemon.settings.home.backend == "simulated"


async def test_the_led_moves_to_its_new_pin_and_shows_the_state(device: Device) -> None:
    assert device.daemon.led is not None and device.daemon.led.pin is None
    report = await device.daemon.reload(device.settings(led={"pin": 27}))
    assert report.applied == ["led"]
    assert device.daemon.led.pin == 27
    assert device.daemon.led.state == device.daemon.conversation.status.state.value
    assert device.pins.pin(27).function == "output"


async def test_the_button_moves_to_its_new_pin(device: Device) -> None:
    report = await device.daemon.reload(device.settings(button={"pin": 22}))
    assert report.applied == ["button"]
    device.pins.pin(22).drive_low()
    await device.until(lambda: any(isinstance(e, Pressed) for e in device.events))
    device.pins.pin(22).drive_high()


async def test_a_button_pin_in_use_keeps_the_old_button(device: Device) -> None:
    await device.daemon.reload(device.settings(led={"pin": 27}))
    report = await device.daemon.reload(device.settings(led={"pin": 27}, button={"pin": 27}))
    assert "button" in report.failed and "button" not in report.applied
    assert device.daemon.settings.button.pin == 17
    device.pins.pin(17).drive_low()
    await device.until(lambda: any(isinstance(e, Pressed) for e in device.events))
    device.pins.pin(17).drive_high()


async def test_volume_applies_at_once_and_new_device_settings_reopen_the_card(device: Device) -> None:
    microphone = device.daemon.microphone
    opened = PacedCard.opened_captures
    report = await device.daemon.reload(
        device.settings(audio={"volume": 0.5, "fade_ms": 10.0}), PacedCard(device.settings().audio)
    )
    assert report.applied == ["audio"]
    assert device.daemon.speaker.jitter.volume == 0.5
    assert device.daemon.microphone is not microphone
    await device.until(lambda: PacedCard.opened_captures > opened)


async def test_a_new_state_directory_needs_a_restart_and_says_why(device: Device, tmp_path: Path) -> None:
    old_dir = device.daemon.settings.paths.state_dir
    report = await device.daemon.reload(
        device.settings(paths={"state_dir": str(tmp_path / "elsewhere")}, audio={"preroll_ms": 500})
    )
    assert report.applied == []
    assert set(report.needs_restart) == {"paths.state_dir", "audio.preroll_ms"}
    assert "state directory it started with" in report.summary()
    assert device.daemon.settings.paths.state_dir == old_dir
    assert device.daemon.settings.audio.preroll_ms == 300


async def test_device_settings_need_a_restart_and_keep_their_running_values(device: Device) -> None:
    """[device] (name, node id, MQTT discovery, timers) is set up at start: a reload keeps
    the running values and says each changed key needs a restart, and why."""
    report = await device.daemon.reload(
        device.settings(device={"name": "Hall speaker", "node_id": "hall", "max_timers": 3}, led={"pin": 27})
    )
    assert report.applied == ["led"]
    assert set(report.needs_restart) == {"device.name", "device.node_id", "device.max_timers"}
    assert "device.node_id needs a restart (the device's timers, announcements" in report.summary()
    running = device.daemon.settings.device
    assert (running.name, running.node_id, running.max_timers) == ("EdgeVoice", "edgevoice", 10)


async def test_a_second_daemon_on_the_same_state_directory_refuses_to_start(device: Device) -> None:
    async def credentials() -> str:
        return "test-key"

    settings = device.settings()
    second = Daemon(settings, PacedCard(settings.audio, pin_factory=MockFactory()), credentials=credentials)
    with pytest.raises(StateDirectoryInUse) as refused:
        await second.run()
    assert refused.value.holder_pid is not None
    assert f"pid {refused.value.holder_pid}" in str(refused.value)
    assert device.daemon.conversation.link_up  # the first one is untouched


async def test_a_reload_after_the_key_was_refused_reconnects_at_once(
    device: Device, emulator: Emulator
) -> None:
    refused = Fault("close", 1007, reason="API key expired. Please renew the API key.")
    emulator.inject_fault(refused)
    await device.until(lambda: device.daemon.conversation.reconnect_at is not None)
    status = device.daemon.conversation.status
    assert status is not None and status.detail.startswith("the Gemini API key was refused, retrying in 1")
    assert len(emulator.connections) == 1  # the next try is many minutes away
    # The user renews the key (read at each connection) and reloads: it connects now.
    await device.daemon.reload(device.settings())
    await device.until(device.connected)
    assert len(emulator.connections) == 2

"""The device on MQTT (a real Mosquitto): discovery, state, commands, announcements, and
the last will; and the device in a real Home Assistant connected to a Mosquitto (the
session's shared HA, tests/support/home_assistant_fixture.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest_asyncio

from edgevoice.audio.earcons import render
from edgevoice.service.device_mqtt import STATES
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav
from tests.support.home_assistant import HomeAssistantProcess, HomeAssistantStates
from tests.support.home_assistant_fixture import FIGURES

NEWS = "The washing machine is done"
BASE = "edgevoice/device/kitchen"
PERIOD_BYTES = 24000 * 20 // 1000 * 2
# The device's entities in Home Assistant (their ids come from the discovery's object_id).
STATE, VOLUME, MUTE, ANNOUNCE = (
    "sensor.kitchen_state",
    "number.kitchen_volume",
    "switch.kitchen_microphone_mute",
    "text.kitchen_announce",
)
HEARD, SAID = "sensor.kitchen_last_heard", "sensor.kitchen_last_said"
STATE_CONFIG = "homeassistant/sensor/kitchen/state/config"
CONFIG_TOPICS = (
    STATE_CONFIG,
    "homeassistant/number/kitchen/volume/config",
    "homeassistant/switch/kitchen/microphone_mute/config",
    "homeassistant/text/kitchen/announce/config",
    "homeassistant/sensor/kitchen/last_heard/config",
    "homeassistant/sensor/kitchen/last_said/config",
)


class Retained:
    """Everything published under the watched topics, last value per topic."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.values: dict[str, str] = {}
        self.history: list[tuple[str, str]] = []
        # (monotonic seconds at arrival, topic, payload)
        self.timed: list[tuple[float, str, str]] = []
        self._changed = asyncio.Condition()

    async def follow(self) -> None:
        async for message in self.client.messages:
            payload = message.payload.decode() if isinstance(message.payload, bytes) else str(message.payload)
            async with self._changed:
                self.values[str(message.topic)] = payload
                self.history.append((str(message.topic), payload))
                self.timed.append((time.monotonic(), str(message.topic), payload))
                self._changed.notify_all()

    async def until(self, condition, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(condition)

    async def wait(self, topic: str, predicate, timeout: float = 30.0) -> str:  # noqa: ASYNC109
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: topic in self.values and predicate(self.values[topic]))
            return self.values[topic]


@contextlib.asynccontextmanager
async def watch(port: int) -> AsyncIterator[Retained]:
    async with aiomqtt.Client("127.0.0.1", port, identifier="test-watcher") as client:
        await client.subscribe("homeassistant/#")
        await client.subscribe(f"{BASE}/#")
        retained = Retained(client)
        task = asyncio.create_task(retained.follow())
        try:
            yield retained
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def heard_in_order(output: bytes, *sounds: bytes) -> bool:
    """Each sound, period by period (a paced card may slip silence between periods), in order."""
    position = 0
    for sound in sounds:
        for offset in range(0, len(sound), PERIOD_BYTES):
            piece = sound[offset : offset + PERIOD_BYTES]
            if not piece.strip(b"\0"):
                continue
            found = output.find(piece, position)
            if found < 0:
                return False
            position = found + len(piece)
    return True


def device_overrides(port: int, socket_dir: Path) -> dict:
    return {
        "audio": {"preroll_ms": 0},
        "device": {
            "node_id": "kitchen",
            "name": "Kitchen speaker",
            "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_initial_s": 0.1},
            "control_socket": str(socket_dir / "control.sock"),
        },
    }


def start_device(tmp_path: Path, emulator, mqtt_port: int, *, press: tuple[float, float]) -> asyncio.Task:
    """The daemon on simulated hardware, in real time, publishing to the broker on ``mqtt_port``."""
    return asyncio.create_task(
        simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=[press],
                out=tmp_path / "out.wav",
                earcons=False,
                realtime=True,
                overrides=device_overrides(mqtt_port, tmp_path),
                emulator=emulator,
                state_dir=tmp_path / "state",
            )
        )
    )


async def simulate_process(tmp_path: Path, config: Path, *, stderr: int) -> asyncio.subprocess.Process:
    """`edgevoice simulate` as its own process (so it can be SIGKILLed), pressing at 50 s."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgevoice", "simulate", "--config", str(config),
        "--mic", str(tmp_path / "mic.wav"), "--press", "50:51", "--realtime",
        "--out", str(tmp_path / "out.wav"), "--no-earcons",
        stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        env={**os.environ, "EDGEVOICE_CONFIG": ""},
    )


async def test_discovery_state_commands_and_an_mqtt_announcement_heard_after_the_chime(
    tmp_path: Path, emulator_factory, mosquitto
) -> None:
    noise_wav(tmp_path / "mic.wav", 6.0)
    emulator = await emulator_factory(pace=1.0, default={"reply": NEWS + "."})
    async with watch(mosquitto.port) as broker:
        run = start_device(tmp_path, emulator, mosquitto.port, press=(5.0, 5.3))
        await broker.wait(f"{BASE}/availability", lambda v: v == "online")
        await broker.wait(f"{BASE}/state", lambda v: v == "idle")
        configs = {
            topic: json.loads(payload)
            for topic, payload in broker.values.items()
            if topic.startswith("homeassistant/") and topic.endswith("/config")
        }
        assert set(configs) == set(CONFIG_TOPICS)
        state = configs["homeassistant/sensor/kitchen/state/config"]
        assert state["options"] == list(STATES) and "ringing" in STATES
        assert all(c["availability_topic"] == f"{BASE}/availability" for c in configs.values())
        assert {c["device"]["name"] for c in configs.values()} == {"Kitchen speaker"}
        assert broker.values[f"{BASE}/volume"] == "10" and broker.values[f"{BASE}/muted"] == "OFF"
        # Home Assistant's commands: a volume level, then an announcement.
        await broker.client.publish(f"{BASE}/volume/set", "3")
        await broker.wait(f"{BASE}/volume", lambda v: v == "3")
        await broker.client.publish(f"{BASE}/announce", NEWS)
        await broker.wait(f"{BASE}/state", lambda v: v == "speaking")
        result = await run
        # A daemon that stops says goodbye: unavailable in Home Assistant.
        await broker.wait(f"{BASE}/availability", lambda v: v == "offline")
    household = result.daemon.household
    assert household.volume_level == 3
    assert [n.text for n in household.spoken] == [NEWS]
    asked = [
        f for f in emulator.received
        if f.message and "clientContent" in f.message and NEWS in json.dumps(f.message)
    ]
    assert len(asked) == 1
    news = next(r for r in emulator.replies if r.kind == "client")
    output = (tmp_path / "out.wav").read_bytes()[44:]
    # The reply was played at volume 3: compare with what the emulator sent, scaled.
    import numpy as np

    scaled = np.clip(np.rint(np.frombuffer(news.audio, "<i2") * 0.3), -32768, 32767).astype("<i2").tobytes()
    assert heard_in_order(output, render("chime"), scaled)
    assert output.find(render("chime")) >= 0
    said = [payload for topic, payload in broker.history if topic == f"{BASE}/said"]
    assert said and NEWS in said[0]


async def test_a_daemon_that_dies_is_shown_unavailable_through_its_last_will(
    tmp_path: Path, mosquitto
) -> None:
    """Killed with SIGKILL (no goodbye): the broker publishes the will."""
    import signal

    config = tmp_path / "edgevoice.toml"
    config.write_text(
        "[device]\nnode_id = \"kitchen\"\n"
        f"control_socket = \"{tmp_path / 'control.sock'}\"\n"
        f"[device.mqtt]\nhost = \"127.0.0.1\"\nport = {mosquitto.port}\nkeepalive_s = 5\n"
    )
    noise_wav(tmp_path / "mic.wav", 60.0)
    async with watch(mosquitto.port) as broker:
        process = await simulate_process(tmp_path, config, stderr=asyncio.subprocess.PIPE)
        try:
            await broker.wait(f"{BASE}/availability", lambda v: v == "online", timeout=60)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await broker.wait(f"{BASE}/availability", lambda v: v == "offline", timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


@pytest_asyncio.fixture
async def home_assistant_with_mqtt(real_home_assistant) -> AsyncIterator[HomeAssistantProcess]:
    """The session's real HA; afterwards the device is removed from it the MQTT way (an
    empty retained config per entity), so the HA other tests share (and restart) holds no
    entities of ours: a switch of ours would otherwise become one of the home's."""
    ha = real_home_assistant
    yield ha
    async with (
        HomeAssistantStates(ha.url, ha.token) as home,
        aiomqtt.Client("127.0.0.1", ha.mqtt_port, identifier="test-cleaner") as client,
    ):
        for topic in CONFIG_TOPICS:
            await client.publish(topic, b"", qos=1, retain=True)
        for entity in (STATE, VOLUME, MUTE, ANNOUNCE, HEARD, SAID):
            await home.wait_gone(entity)
        entries = await home.command("config/entity_registry/list")
        assert not [e for e in entries if e["unique_id"].startswith("edgevoice_kitchen_")]  # type: ignore[union-attr]


async def test_home_assistant_shows_the_device_follows_it_and_drives_it(
    tmp_path: Path, emulator_factory, home_assistant_with_mqtt: HomeAssistantProcess
) -> None:
    """The device in a real Home Assistant over the Mosquitto HA's MQTT integration is
    connected to: its entities in HA's registry, HA's state sensor following the daemon
    through a press, HA's own actions (number.set_value, switch.turn_on/off,
    text.set_value) changing the device, and the daemon's goodbye shown as unavailable."""
    ha = home_assistant_with_mqtt
    noise_wav(tmp_path / "mic.wav", 8.0)
    emulator = await emulator_factory(pace=1.0, default={"reply": NEWS + "."})
    async with watch(ha.mqtt_port) as broker, HomeAssistantStates(ha.url, ha.token) as home:
        run = start_device(tmp_path, emulator, ha.mqtt_port, press=(6.0, 6.6))
        try:
            await broker.wait(f"{BASE}/availability", lambda v: v == "online")
            await home.wait_state(STATE, lambda v: v == "idle")
            discovered = next(t for t, topic, _ in broker.timed if topic == STATE_CONFIG)
            appeared = next(t for t, entity, _ in home.history if entity == STATE)
            discovery_ms = max(0.0, appeared - discovered) * 1000
            FIGURES["device discovery published -> HA entity"] = f"{discovery_ms:.0f} ms"
            entries = await home.command("config/entity_registry/list")
            ours = {
                e["entity_id"]: e["unique_id"]
                for e in entries  # type: ignore[union-attr]
                if e["platform"] == "mqtt" and e["unique_id"].startswith("edgevoice_kitchen_")
            }
            assert ours == {
                STATE: "edgevoice_kitchen_state",
                VOLUME: "edgevoice_kitchen_volume",
                MUTE: "edgevoice_kitchen_microphone_mute",
                ANNOUNCE: "edgevoice_kitchen_announce",
                HEARD: "edgevoice_kitchen_last_heard",
                SAID: "edgevoice_kitchen_last_said",
            }
            devices = await home.command("config/device_registry/list")
            ours_devices = [d for d in devices if ["mqtt", "edgevoice_kitchen"] in d["identifiers"]]  # type: ignore[union-attr]
            assert [d["name"] for d in ours_devices] == ["Kitchen speaker"]
            assert float((await home.wait_state(VOLUME, lambda v: v != "unknown"))["state"]) == 10
            assert home.states[MUTE]["state"] == "off"

            # HA's actions change the device, which reports its new value back.
            await home.call_service("number", "set_value", VOLUME, value=3)
            await broker.wait(f"{BASE}/volume", lambda v: v == "3")
            await home.wait_state(VOLUME, lambda v: float(v) == 3)
            await home.call_service("switch", "turn_on", MUTE)
            await broker.wait(f"{BASE}/muted", lambda v: v == "ON")
            await home.wait_state(MUTE, lambda v: v == "on")
            await home.call_service("switch", "turn_off", MUTE)
            await home.wait_state(MUTE, lambda v: v == "off")
            await home.wait_state(STATE, lambda v: v == "idle")

            # The Announce entity's own action makes the device speak.
            await home.call_service("text", "set_value", ANNOUNCE, value=NEWS)
            await home.wait_state(STATE, lambda v: v == "speaking")
            await home.wait_state(STATE, lambda v: v == "idle")
            await home.wait_state(SAID, lambda v: NEWS in v)

            # The press (the simulation ends when its answer has played): HA's sensor goes
            # through exactly what the daemon published, from "listening" (only a press
            # listens) on. Each side is read from its own last "listening": HA's copy of a
            # state can reach the test before the test's own subscriber's copy does.
            await home.wait_state(STATE, lambda v: v == "listening")
            await home.wait_state(STATE, lambda v: v == "speaking")
            await home.wait_state(STATE, lambda v: v == "idle")

            def from_the_press(states: list[tuple[float, str]]) -> list[tuple[float, str]]:
                starts = [i for i, (_, v) in enumerate(states) if v == "listening"]
                return states[starts[-1] :] if starts else []

            def published_states() -> list[tuple[float, str]]:
                return from_the_press([(t, v) for t, topic, v in broker.timed if topic == f"{BASE}/state"])

            await broker.until(lambda: [v for _, v in published_states()][-1:] == ["idle"])
            published = published_states()
            shown = from_the_press([(t, v) for t, entity, v in home.history if entity == STATE])
            assert [v for _, v in shown] == [v for _, v in published]
            assert published[0][1] == "listening" and published[-1][1] == "idle"
            # Measured against the test's own subscriber to the same broker: HA's event can
            # arrive in the same loop turn as that copy (a delay of about 0).
            delays = sorted(max(0.0, h - d) * 1000 for (d, _), (h, _) in zip(published, shown, strict=True))
            sequence = "/".join(v for _, v in published)
            FIGURES["device state -> HA state (median / max of a press)"] = (
                f"{delays[len(delays) // 2]:.1f} / {delays[-1]:.1f} ms over {sequence}"
            )
            result = await asyncio.wait_for(run, 60)
        finally:
            if not run.done():
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await run
        # A daemon that stops says goodbye: every entity unavailable.
        for entity in (STATE, VOLUME, MUTE, ANNOUNCE):
            await home.wait_state(entity, lambda v: v == "unavailable")
    household = result.daemon.household
    assert household.volume_level == 3 and not household.muted
    assert [n.text for n in household.spoken] == [NEWS]
    asked = [
        f for f in emulator.received
        if f.message and "clientContent" in f.message and NEWS in json.dumps(f.message)
    ]
    assert len(asked) == 1


async def test_home_assistant_shows_a_killed_daemon_unavailable(
    tmp_path: Path, home_assistant_with_mqtt: HomeAssistantProcess
) -> None:
    """SIGKILL (no goodbye): the broker publishes the last will and HA's entities become
    unavailable."""
    import signal

    ha = home_assistant_with_mqtt
    config = tmp_path / "edgevoice.toml"
    config.write_text(
        "[device]\nnode_id = \"kitchen\"\n"
        f"control_socket = \"{tmp_path / 'control.sock'}\"\n"
        f"[device.mqtt]\nhost = \"127.0.0.1\"\nport = {ha.mqtt_port}\nkeepalive_s = 5\n"
    )
    noise_wav(tmp_path / "mic.wav", 60.0)
    async with HomeAssistantStates(ha.url, ha.token) as home:
        process = await simulate_process(tmp_path, config, stderr=asyncio.subprocess.DEVNULL)
        try:
            await home.wait_state(STATE, lambda v: v == "idle", timeout=60)
            await home.wait_state(VOLUME, lambda v: v != "unavailable")
            killed = time.monotonic()
            process.send_signal(signal.SIGKILL)
            await process.wait()
            for entity in (STATE, VOLUME, MUTE, ANNOUNCE):
                await home.wait_state(entity, lambda v: v == "unavailable")
            shown = max(t for t, entity, v in home.history if entity == STATE and v == "unavailable")
            FIGURES["SIGKILL -> last will -> HA unavailable"] = f"{(shown - killed) * 1000:.0f} ms"
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

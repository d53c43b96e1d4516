"""The device on MQTT (a real Mosquitto): discovery, state, commands, announcements, and
the last will; and, when the Home Assistant fixture is there, the entities in a real HA."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from edgevoice.audio.earcons import render
from edgevoice.service.device_mqtt import STATES
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav

NEWS = "The washing machine is done"
BASE = "edgevoice/device/kitchen"
PERIOD_BYTES = 24000 * 20 // 1000 * 2


class Retained:
    """Everything published under the watched topics, last value per topic."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.values: dict[str, str] = {}
        self.history: list[tuple[str, str]] = []
        self._changed = asyncio.Condition()

    async def follow(self) -> None:
        async for message in self.client.messages:
            payload = message.payload.decode() if isinstance(message.payload, bytes) else str(message.payload)
            async with self._changed:
                self.values[str(message.topic)] = payload
                self.history.append((str(message.topic), payload))
                self._changed.notify_all()

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


async def test_discovery_state_commands_and_an_mqtt_announcement_heard_after_the_chime(
    tmp_path: Path, emulator_factory, mosquitto
) -> None:
    noise_wav(tmp_path / "mic.wav", 6.0)
    emulator = await emulator_factory(pace=1.0, default={"reply": NEWS + "."})
    async with watch(mosquitto.port) as broker:
        run = asyncio.create_task(
            simulate(
                SimulationOptions(
                    mic=tmp_path / "mic.wav",
                    presses=[(5.0, 5.3)],
                    out=tmp_path / "out.wav",
                    earcons=False,
                    realtime=True,
                    overrides=device_overrides(mosquitto.port, tmp_path),
                    emulator=emulator,
                    state_dir=tmp_path / "state",
                )
            )
        )
        await broker.wait(f"{BASE}/availability", lambda v: v == "online")
        await broker.wait(f"{BASE}/state", lambda v: v == "idle")
        configs = {
            topic: json.loads(payload)
            for topic, payload in broker.values.items()
            if topic.startswith("homeassistant/") and topic.endswith("/config")
        }
        assert set(configs) == {
            "homeassistant/sensor/kitchen/state/config",
            "homeassistant/number/kitchen/volume/config",
            "homeassistant/switch/kitchen/microphone_mute/config",
            "homeassistant/text/kitchen/announce/config",
            "homeassistant/sensor/kitchen/last_heard/config",
            "homeassistant/sensor/kitchen/last_said/config",
        }
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
    import os
    import signal
    import sys

    config = tmp_path / "edgevoice.toml"
    config.write_text(
        "[device]\nnode_id = \"kitchen\"\n"
        f"control_socket = \"{tmp_path / 'control.sock'}\"\n"
        f"[device.mqtt]\nhost = \"127.0.0.1\"\nport = {mosquitto.port}\nkeepalive_s = 5\n"
    )
    noise_wav(tmp_path / "mic.wav", 60.0)
    async with watch(mosquitto.port) as broker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgevoice", "simulate", "--config", str(config),
            "--mic", str(tmp_path / "mic.wav"), "--press", "50:51", "--realtime",
            "--out", str(tmp_path / "out.wav"), "--no-earcons",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "EDGEVOICE_CONFIG": ""},
        )
        try:
            await broker.wait(f"{BASE}/availability", lambda v: v == "online", timeout=60)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await broker.wait(f"{BASE}/availability", lambda v: v == "offline", timeout=30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_entities_appear_in_a_real_home_assistant_and_its_action_makes_the_device_speak(
    tmp_path: Path, emulator_factory, request: pytest.FixtureRequest
) -> None:
    """Needs the ``real_home_assistant`` fixture (the Home Assistant helper's): a running HA
    with its MQTT integration connected to a Mosquitto; the fixture object gives
    ``mqtt_port`` (that broker on 127.0.0.1), ``url`` and ``token`` (a long-lived token)."""
    try:
        home_assistant = request.getfixturevalue("real_home_assistant")
    except pytest.FixtureLookupError:
        pytest.skip("needs the real_home_assistant fixture (a real HA with MQTT)")
    import aiohttp

    noise_wav(tmp_path / "mic.wav", 20.0)
    emulator = await emulator_factory(pace=1.0, default={"reply": NEWS + "."})
    headers = {"Authorization": f"Bearer {home_assistant.token}"}
    run = asyncio.create_task(
        simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=[(19.0, 19.3)],
                out=tmp_path / "out.wav",
                earcons=False,
                realtime=True,
                overrides=device_overrides(home_assistant.mqtt_port, tmp_path),
                emulator=emulator,
                state_dir=tmp_path / "state",
            )
        )
    )
    async with aiohttp.ClientSession(home_assistant.url, headers=headers) as http:

        async def state_of(entity_id: str) -> dict | None:
            async with http.get(f"/api/states/{entity_id}") as response:
                return await response.json() if response.status == 200 else None

        # HA's REST API has no push: read the state until discovery has made the entity.
        for _attempt in range(150):
            if (await state_of("sensor.kitchen_state") or {}).get("state") == "idle":
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("sensor.kitchen_state never appeared in Home Assistant")
        volume = await state_of("number.kitchen_volume")
        assert volume is not None and float(volume["state"]) == 10
        assert await state_of("switch.kitchen_microphone_mute") is not None
        assert await state_of("text.kitchen_announce") is not None
        async with http.post(
            "/api/services/text/set_value",
            json={"entity_id": "text.kitchen_announce", "value": NEWS},
        ) as response:
            assert response.status == 200
        await emulator.wait_for(
            lambda e: any(r.kind == "client" and r.finished for r in e.replies), timeout=30
        )
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await run
    asked = [
        f for f in emulator.received
        if f.message and "clientContent" in f.message and NEWS in json.dumps(f.message)
    ]
    assert len(asked) == 1

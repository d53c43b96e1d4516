"""Test helpers for the smart-home tools: outcome collection, a real Mosquitto broker on
loopback, and a local HTTP server that checks requests the way Home Assistant does.
(The fixtures that use them are in conftest.py.)"""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from edgevoice.tools import ToolOutcome

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
HA_TOKEN = "test-token-6f1d2c"


class Outcomes:
    """An ``on_done`` callback that records outcomes and lets a test wait for one by id."""

    def __init__(self) -> None:
        self.items: list[ToolOutcome] = []
        self.threads: list[int] = []
        self._futures: dict[str, asyncio.Future[ToolOutcome]] = {}
        self._arrived = asyncio.Event()

    def __call__(self, outcome: ToolOutcome) -> None:
        self.items.append(outcome)
        self.threads.append(threading.get_ident())
        self._arrived.set()
        future = self._future(outcome.id)
        if not future.done():
            future.set_result(outcome)

    def _future(self, call_id: str) -> asyncio.Future[ToolOutcome]:
        if call_id not in self._futures:
            self._futures[call_id] = asyncio.get_running_loop().create_future()
        return self._futures[call_id]

    async def get(self, call_id: str, within: float = 10.0) -> ToolOutcome:
        return await asyncio.wait_for(asyncio.shield(self._future(call_id)), within)

    async def count(self, n: int, within: float = 10.0) -> list[ToolOutcome]:
        """Wait until at least ``n`` outcomes have arrived."""
        async with asyncio.timeout(within):
            while len(self.items) < n:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.items)

    def ids(self) -> list[str]:
        return [outcome.id for outcome in self.items]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Mosquitto ------------------------------------------------------------------------------------


class Mosquitto:
    """A real broker on a free loopback port, started and stopped by the test."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None
        self.log: list[str] = []

    def start(self) -> None:
        config = self.directory / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        ready = threading.Event()
        lines: queue.Queue[str] = queue.Queue()

        def drain(stream: Any) -> None:
            # Keeps reading for the broker's whole life so its stderr pipe never fills up.
            for line in stream:
                self.log.append(line.rstrip())
                if " running" in line:
                    ready.set()
                lines.put(line)
            ready.set()

        threading.Thread(target=drain, args=(self.process.stderr,), daemon=True).start()
        if not ready.wait(10) or self.process.poll() is not None:
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + "\n".join(self.log))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


# -- Home Assistant ------------------------------------------------------------------------------

# Services Home Assistant offers per domain, with the service data keys each accepts.
HA_SERVICES: dict[str, dict[str, set[str]]] = {
    "light": {"turn_on": {"brightness_pct", "color_name", "color_temp_kelvin"}, "turn_off": set()},
    "climate": {"set_temperature": {"temperature", "hvac_mode"}, "set_hvac_mode": {"hvac_mode"}},
    "cover": {
        "open_cover": set(),
        "close_cover": set(),
        "stop_cover": set(),
        "set_cover_position": {"position"},
    },
    "scene": {"turn_on": set()},
    "media_player": {
        "media_play": set(),
        "media_pause": set(),
        "media_stop": set(),
        "media_next_track": set(),
        "media_previous_track": set(),
        "volume_set": {"volume_level"},
    },
    "lock": {"lock": set(), "unlock": {"code"}},
}


class FakeHomeAssistant:
    """The part of Home Assistant's REST API EdgeVoice uses, strict like the real thing:
    bearer token, JSON content type, known services and service data keys; unknown entity
    ids in a service call are ignored (200 and no changed states) and 404 on a state read."""

    def __init__(self, token: str = HA_TOKEN):
        self.token = token
        self.services = {domain: dict(services) for domain, services in HA_SERVICES.items()}
        self.requests: list[dict[str, Any]] = []
        self.broken: set[str] = set()  # entity ids answered with HTTP 500
        self.hanging: set[str] = set()  # entity ids that never get an answer
        self.release = asyncio.Event()
        self.states: dict[str, dict[str, Any]] = {
            "light.kitchen": {"entity_id": "light.kitchen", "state": "off", "attributes": {}},
            "climate.hall": {
                "entity_id": "climate.hall",
                "state": "heat",
                "attributes": {"temperature": 19.0, "current_temperature": 18.5},
            },
            "cover.garage_door": {
                "entity_id": "cover.garage_door",
                "state": "closed",
                "attributes": {"current_position": 0},
            },
            "sensor.outdoor": {
                "entity_id": "sensor.outdoor",
                "state": "11.5",
                "attributes": {"unit_of_measurement": "°C"},
            },
        }
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self, ssl_context: Any = None) -> None:
        app = web.Application()
        app.router.add_post("/api/services/{domain}/{service}", self._service)
        app.router.add_get("/api/states/{entity_id}", self._state)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _service(self, request: web.Request) -> web.StreamResponse:
        domain, service = request.match_info["domain"], request.match_info["service"]
        record: dict[str, Any] = {
            "method": "POST",
            "path": request.path,
            "headers": dict(request.headers),
        }
        self.requests.append(record)
        if not self._authorised(request):
            return web.Response(status=401, text="401: Unauthorized")
        if request.content_type != "application/json":
            return web.json_response({"message": "Data should be valid JSON."}, status=400)
        try:
            data = await request.json()
        except ValueError:
            return web.json_response({"message": "Data should be valid JSON."}, status=400)
        record["json"] = dict(data) if isinstance(data, dict) else data
        if not isinstance(data, dict):
            return web.json_response({"message": "Service data should be an object."}, status=400)
        if service not in self.services.get(domain, {}):
            return web.json_response({"message": f"Service {domain}.{service} not found."}, status=400)
        entity_id = data.pop("entity_id", None)
        extra = set(data) - self.services[domain][service]
        if not isinstance(entity_id, str) or extra:
            return web.json_response({"message": f"extra keys not allowed: {sorted(extra)}"}, status=400)
        if entity_id in self.hanging:
            await self.release.wait()
        if entity_id in self.broken:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        state = self.states.get(entity_id)
        if state is None or not entity_id.startswith(domain + "."):
            return web.json_response([])  # Home Assistant ignores unknown entities
        self._apply(state, domain, service, data)
        return web.json_response([state])

    async def _state(self, request: web.Request) -> web.StreamResponse:
        entity_id = request.match_info["entity_id"]
        self.requests.append({"method": "GET", "path": request.path, "headers": dict(request.headers)})
        if not self._authorised(request):
            return web.Response(status=401, text="401: Unauthorized")
        if entity_id in self.broken:
            return web.json_response({"message": "Internal Server Error"}, status=500)
        if entity_id not in self.states:
            return web.json_response({"message": "Entity not found."}, status=404)
        return web.json_response(self.states[entity_id])

    @staticmethod
    def _apply(state: dict[str, Any], domain: str, service: str, data: dict[str, Any]) -> None:
        attributes = state["attributes"]
        if domain == "light":
            state["state"] = "on" if service == "turn_on" else "off"
            if "brightness_pct" in data:
                attributes["brightness"] = round(data["brightness_pct"] * 255 / 100)
            if "color_name" in data:
                attributes["color_mode"] = "rgb"
                attributes["rgb_color"] = {"red": [255, 0, 0], "blue": [0, 0, 255]}.get(
                    data["color_name"], [255, 255, 255]
                )
        elif domain == "climate":
            attributes["temperature"] = data.get("temperature", attributes.get("temperature"))
            state["state"] = data.get("hvac_mode", state["state"])
        elif domain == "cover":
            state["state"] = {"open_cover": "open", "close_cover": "closed"}.get(service, state["state"])


# -- MQTT devices ----------------------------------------------------------------------------------


class MqttDevices:
    """Plays the devices on the broker: answers commands on ``<topic>/set`` by publishing
    the new state (retained) on the state topic, like Home Assistant's MQTT JSON devices."""

    def __init__(self, port: int, topics: dict[str, tuple[str, str]], states: dict[str, dict[str, Any]]):
        self.port = port
        self.topics = topics  # entity id -> (command topic, state topic)
        self.states = states
        self.mute: set[str] = set()  # devices that take commands but never report
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.command_arrived = asyncio.Event()
        self.ready = asyncio.Event()
        self.brightness_scale = 255

    async def run(self) -> None:
        import aiomqtt

        by_command = {command: entity_id for entity_id, (command, _) in self.topics.items()}
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            for command_topic in by_command:
                await client.subscribe(command_topic, qos=1)
            for entity_id, state in self.states.items():
                await client.publish(self.topics[entity_id][1], json.dumps(state), qos=1, retain=True)
            self.ready.set()
            async for message in client.messages:
                entity_id = by_command[str(message.topic)]
                command = json.loads(message.payload)
                self.commands.append((entity_id, command))
                self.command_arrived.set()
                if entity_id in self.mute:
                    continue
                self.states[entity_id] = self._apply(entity_id, command)
                await client.publish(
                    self.topics[entity_id][1],
                    json.dumps(self.states[entity_id]),
                    qos=1,
                    retain=True,
                )

    def _apply(self, entity_id: str, command: dict[str, Any]) -> dict[str, Any]:
        state = dict(self.states.get(entity_id, {}))
        domain = entity_id.split(".")[0]
        if domain == "cover":
            if "position" in command:
                state.update(position=command["position"], state="open" if command["position"] else "closed")
            else:
                word = command["state"]
                state.update(
                    {
                        "OPEN": {"state": "open", "position": 100},
                        "CLOSE": {"state": "closed", "position": 0},
                    }.get(word, {"state": "stopped"})
                )
            return state
        state.update(command)
        return state

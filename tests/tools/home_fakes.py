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

from aiohttp import WSMsgType, web

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


# -- Home Assistant: only what a real one cannot be made to do ------------------------------------


class FakeHomeAssistant:
    """Home Assistant's websocket protocol for the cases a real Home Assistant cannot be
    made to produce: a server that accepts the connection and never answers the login
    (``hang_login``), a service call that never gets its result (``hang_services``), an
    entity removed while a call to it runs (``remove_during_call``). Everything it does
    answer, it answers as HA 2024.3 does: ``auth_required``/``auth_ok``/``auth_invalid``,
    ``result`` messages with ``success``, registry lists, ``state_changed`` events.
    (Everything else is tested against a real Home Assistant: tests/homeassistant.)"""

    def __init__(self, token: str = HA_TOKEN):
        self.token = token
        self.hang_login = False
        self.hang_services: set[str] = set()
        self.remove_during_call: set[str] = set()
        self.commands: list[dict[str, Any]] = []
        self.logins: list[str] = []  # the access tokens presented
        self.states: dict[str, dict[str, Any]] = {
            "light.kitchen": {"entity_id": "light.kitchen", "state": "off", "attributes": {}},
            "cover.garage_door": {
                "entity_id": "cover.garage_door",
                "state": "closed",
                "attributes": {"current_position": 0},
            },
        }
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def start(self, ssl_context: Any = None) -> None:
        app = web.Application()
        app.router.add_get("/api/websocket", self._websocket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        if self.hang_login:
            await self._release.wait()
            return socket
        await socket.send_json({"type": "auth_required", "ha_version": "2024.3.3"})
        login = await socket.receive_json()
        self.logins.append(str(login.get("access_token")))
        if login.get("access_token") != self.token:
            await socket.send_json({"type": "auth_invalid", "message": "Invalid access token or password"})
            await socket.close()
            return socket
        await socket.send_json({"type": "auth_ok", "ha_version": "2024.3.3"})
        state_subscriptions: list[int] = []
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                break
            command = json.loads(message.data)
            self.commands.append(command)
            asyncio.get_running_loop().create_task(self._answer(socket, command, state_subscriptions))
        return socket

    async def _answer(self, socket: web.WebSocketResponse, command: dict[str, Any], subs: list[int]) -> None:
        kind, message_id = command.get("type"), command.get("id")
        result: Any = None
        if kind == "subscribe_events":
            if command.get("event_type") == "state_changed":
                subs.append(message_id)  # type: ignore[arg-type]
        elif kind == "get_states":
            result = list(self.states.values())
        elif kind in (
            "config/entity_registry/list",
            "config/device_registry/list",
            "config/area_registry/list",
            "config/floor_registry/list",
        ):
            result = []
        elif kind == "config/entity_registry/get_entries":
            result = {}
        elif kind == "homeassistant/expose_entity/list":
            result = {"exposed_entities": {}}
        elif kind == "homeassistant/expose_new_entities/get":
            result = {"expose_new": True}
        elif kind == "call_service":
            entity_id = command.get("target", {}).get("entity_id")
            if entity_id in self.hang_services:
                await self._release.wait()
                return
            if entity_id in self.remove_during_call:
                # Accepted; the entity goes away before it reaches the state asked for.
                await socket.send_json({"id": message_id, "type": "result", "success": True, "result": {}})
                old = self.states.pop(entity_id, None)
                await self._event(socket, subs, entity_id, old, None)
                return
            state = self.states.get(entity_id)
            service = command.get("service")
            if state is not None and service in ("turn_on", "turn_off"):
                # Like HA: the state_changed event goes out before the call's result.
                old = dict(state)
                state["state"] = "on" if service == "turn_on" else "off"
                await self._event(socket, subs, entity_id, old, dict(state))
            result = {"context": {"id": "01HFAKE"}, "response": None}
        else:
            await socket.send_json(
                {
                    "id": message_id,
                    "type": "result",
                    "success": False,
                    "error": {"code": "unknown_command", "message": "Unknown command."},
                }
            )
            return
        await socket.send_json({"id": message_id, "type": "result", "success": True, "result": result})

    @staticmethod
    async def _event(
        socket: web.WebSocketResponse, subs: list[int], entity_id: str, old: Any, new: Any
    ) -> None:
        for sub in subs:
            await socket.send_json(
                {
                    "id": sub,
                    "type": "event",
                    "event": {
                        "event_type": "state_changed",
                        "data": {"entity_id": entity_id, "old_state": old, "new_state": new},
                    },
                }
            )


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

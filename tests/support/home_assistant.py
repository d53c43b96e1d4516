"""A real Home Assistant core for the tests: its own virtual environment, its own process.

``ensure_installed()`` builds (once, then cached) a virtual environment holding
``homeassistant==HA_VERSION`` installed with HA's own constraints file, never the project's
venv. ``HomeAssistantProcess`` writes a configuration (loopback only, the ``demo``
integration, no network scanning), seeds an owner with a long-lived token so no person has
to onboard it, starts ``hass`` and waits until its API answers.

Run as a script (``python -m tests.support.home_assistant``) it only installs, which is what
CI does ahead of the tests to report the install time on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

HA_VERSION = "2024.3.3"
# Without these HA starts in recovery mode with --skip-pip: the frontend needs its package,
# Pillow and janus; it depends on onboarding, which depends on analytics, which imports the
# recorder (SQLAlchemy, fnv-hash-fast, psutil-home-assistant); the demo needs conversation
# (hassil, intents).
EXTRA_PACKAGES = (
    "home-assistant-frontend",
    "Pillow",
    "janus",
    "hassil",
    "home-assistant-intents",
    "psutil-home-assistant",
    "SQLAlchemy",
    "fnv-hash-fast",
    # The MQTT integration's own requirement (its manifest.json in HA_VERSION asks for
    # exactly this); HA cannot fetch it itself under --skip-pip.
    "paho-mqtt==1.6.1",
)
# hass-nabucasa pulls josepy 2.x, which lacks ComparableX509: every request answers 500.
EXTRA_CONSTRAINTS = ("josepy<2",)
# HA_VERSION (the newest release on Python 3.11) and its pinned dependencies install on
# these Pythons only.
SUPPORTED_PYTHONS = ((3, 11), (3, 12))
# "skip": leave the real-HA tests out, for a run that another run on a supported Python
# covers (the suite inside a Debian 13 container, on Python 3.13).
SKIP_VARIABLE = "EDGEVOICE_HA_TESTS"


def skip_reason() -> str | None:
    """Why the real-HA tests are left out of this run, or None: they run (and must pass)."""
    if os.environ.get(SKIP_VARIABLE) == "skip":
        return f"{SKIP_VARIABLE}=skip: another run covers the real Home Assistant"
    return None


def check_python() -> None:
    if sys.version_info[:2] not in SUPPORTED_PYTHONS:
        here = ".".join(map(str, sys.version_info[:2]))
        raise RuntimeError(
            f"Home Assistant {HA_VERSION} installs on Python 3.11 and 3.12, not {here}: run "
            f"the real-HA tests on one of those, or set {SKIP_VARIABLE}=skip where another run does"
        )


def _default_cache() -> Path:
    """$EDGEVOICE_HA_CACHE, else /var/cache/edgevoice-ci where writable (CI), else ~/.cache."""
    if os.environ.get("EDGEVOICE_HA_CACHE"):
        return Path(os.environ["EDGEVOICE_HA_CACHE"])
    system = Path("/var/cache/edgevoice-ci")
    if os.access(system if system.exists() else system.parent, os.W_OK):
        return system
    return Path.home() / ".cache" / "edgevoice-ci"


DEFAULT_CACHE = _default_cache()


def venv_path(cache: Path = DEFAULT_CACHE) -> Path:
    return cache / f"ha-venv-{HA_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"


def hass_executable(cache: Path = DEFAULT_CACHE) -> Path:
    return venv_path(cache) / "bin" / "hass"


def ensure_installed(cache: Path = DEFAULT_CACHE, log=print) -> tuple[Path, float]:  # type: ignore[no-untyped-def]
    """The ``hass`` executable, installing it first when missing. Returns it and the seconds
    the install took (0 when cached). A venv counts as installed only once its marker is
    written, so an interrupted install is redone, not half-used; a lock keeps two test
    runs from building it at once."""
    import fcntl

    venv = venv_path(cache)
    marker = venv / ".complete"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = time.monotonic()
        if marker.exists():
            if marker.read_text() == _marker_text():
                return venv / "bin" / "hass", 0.0
            # A cache built before a package was added: add what is missing (seconds)
            # instead of building it all again (a minute).
            log(f"adding {', '.join(EXTRA_PACKAGES)} to {venv} where missing")
            _add_extras(venv)
            marker.write_text(_marker_text())
            return venv / "bin" / "hass", time.monotonic() - started
        shutil.rmtree(venv, ignore_errors=True)
        try:
            _install(venv, log)
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        marker.write_text(_marker_text())
        return venv / "bin" / "hass", time.monotonic() - started


def _marker_text() -> str:
    """What a complete venv's marker holds: the version and every extra package, so a
    cache made before one was added is topped up, not taken as complete."""
    return " ".join((HA_VERSION, *sorted(EXTRA_PACKAGES))) + "\n"


def _pip(venv: Path) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]


def _add_extras(venv: Path) -> None:
    """Install EXTRA_PACKAGES into an existing HA venv under HA's own constraints (the
    installed package carries the same file its wheel does)."""
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import homeassistant; print(homeassistant.__path__[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as scratch:
        constraints_file = Path(scratch) / "constraints.txt"
        constraints = (Path(site) / "package_constraints.txt").read_text()
        constraints_file.write_text(constraints + "\n" + "\n".join(EXTRA_CONSTRAINTS) + "\n")
        subprocess.run([*_pip(venv), "install", "-c", str(constraints_file), *EXTRA_PACKAGES], check=True)


def _install(venv: Path, log) -> None:  # type: ignore[no-untyped-def]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = _pip(venv)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            [*pip, "download", "--no-deps", "-d", scratch, f"homeassistant=={HA_VERSION}"],
            check=True,
        )
        wheel = next(Path(scratch).glob("homeassistant-*.whl"))
        # HA pins its dependencies only in this file inside its wheel; without it pip
        # backtracks for minutes and picks versions HA does not work with.
        with zipfile.ZipFile(wheel) as archive:
            constraints = archive.read("homeassistant/package_constraints.txt").decode()
        constraints_file = Path(scratch) / "constraints.txt"
        constraints_file.write_text(constraints + "\n" + "\n".join(EXTRA_CONSTRAINTS) + "\n")
        log(f"installing homeassistant=={HA_VERSION} into {venv} (about a minute)")
        subprocess.run(
            [*pip, "install", "-c", str(constraints_file), str(wheel), *EXTRA_PACKAGES],
            check=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONFIGURATION = """\
homeassistant:
  name: Test home
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
websocket_api:
config:
demo:
"""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer: str, key: str, lifetime_s: int = 10 * 365 * 86400) -> str:
    """HS256 JWT exactly as HA makes a long-lived access token."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(
        json.dumps({"iss": issuer, "iat": now, "exp": now + lifetime_s}, separators=(",", ":")).encode()
    )
    signature = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _seed_storage(config_dir: Path) -> tuple[str, str]:
    """An owner (admin) with one long-lived refresh token; onboarding marked done.
    Returns (access token, refresh token id)."""
    storage = config_dir / ".storage"
    storage.mkdir(parents=True, exist_ok=True)
    user_id = uuid.uuid4().hex
    token_id = uuid.uuid4().hex
    jwt_key = secrets.token_hex(64)
    created = "2024-01-01T00:00:00.000000+00:00"
    auth = {
        "version": 1,
        "minor_version": 1,
        "key": "auth",
        "data": {
            "users": [
                {
                    "id": user_id,
                    "group_ids": ["system-admin"],
                    "is_owner": True,
                    "is_active": True,
                    "name": "EdgeVoice tests",
                    "system_generated": False,
                    "local_only": False,
                }
            ],
            "groups": [{"id": "system-admin", "name": "Administrators"}],
            "credentials": [],
            "refresh_tokens": [
                {
                    "id": token_id,
                    "user_id": user_id,
                    "client_id": None,
                    "client_name": "edgevoice-tests",
                    "client_icon": None,
                    "token_type": "long_lived_access_token",
                    "created_at": created,
                    "access_token_expiration": 315360000.0,
                    "token": secrets.token_hex(64),
                    "jwt_key": jwt_key,
                    "last_used_at": None,
                    "last_used_ip": None,
                    "credential_id": None,
                    "version": HA_VERSION,
                }
            ],
        },
    }
    onboarding = {
        "version": 4,
        "minor_version": 1,
        "key": "onboarding",
        "data": {"done": ["user", "core_config", "analytics", "integration"]},
    }
    (storage / "auth").write_text(json.dumps(auth))
    (storage / "onboarding").write_text(json.dumps(onboarding))
    return _jwt(token_id, jwt_key), token_id


class HomeAssistantProcess:
    """``hass`` on a free loopback port with the demo integration and a seeded token."""

    def __init__(self, hass: Path, config_dir: Path, port: int | None = None):
        self.hass = hass
        self.config_dir = config_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = config_dir / "home-assistant.log"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        self.token, self.refresh_token_id = _seed_storage(config_dir)
        self.start_s: float | None = None
        # The loopback port of the Mosquitto HA's MQTT integration is connected to, once it is.
        self.mqtt_port: int | None = None

    def start(self, within: float = 60.0) -> float:
        """Start and wait until HA is RUNNING; returns the seconds it took."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(self.hass), "-c", str(self.config_dir), "--skip-pip", "--log-file", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = started + within
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"hass exited with {self.process.returncode}; see {self.log_file}")
            if self._api_answers():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"Home Assistant did not answer within {within:g} s; see {self.log_file}")
            time.sleep(0.05)  # polling a child process's port: there is no event to wait on
        self.start_s = time.monotonic() - started
        return self.start_s

    def _api_answers(self) -> bool:
        """True once HA says RUNNING: the API answers before the demo's entities exist."""
        request = urllib.request.Request(
            self.url + "/api/config", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200 and json.loads(response.read()).get("state") == "RUNNING"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ValueError):
            return False

    def stop(self, within: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> float:
        self.stop()
        return self.start()


if __name__ == "__main__":
    if (reason := skip_reason()) is not None:
        print(f"real Home Assistant not installed: {reason}")
        sys.exit(0)
    check_python()
    hass, seconds = ensure_installed()
    print(f"{hass} ready; install took {seconds:.1f} s")


class AdminSocket:
    """The test's own websocket to HA (plain aiohttp, not EdgeVoice's client), to set up the
    home through HA's API: areas, aliases, exposure, renames."""

    def __init__(self, url: str, token: str):
        self.url = url
        self.token = token
        self._ids = iter(range(1, 1 << 30))

    async def __aenter__(self) -> AdminSocket:
        import aiohttp

        self._session = aiohttp.ClientSession()
        self._socket = await self._session.ws_connect(self.url + "/api/websocket")
        assert (await self._socket.receive_json())["type"] == "auth_required"
        await self._socket.send_json({"type": "auth", "access_token": self.token})
        answer = await self._socket.receive_json()
        if answer["type"] != "auth_ok":
            await self.__aexit__()
            raise PermissionError(answer)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._socket.close()
        await self._session.close()

    async def command(self, message_type: str, **payload: object) -> object:
        message_id = next(self._ids)
        await self._socket.send_json({"id": message_id, "type": message_type, **payload})
        while True:
            message = await self._socket.receive_json(timeout=30)
            if message.get("id") == message_id and message.get("type") == "result":
                if not message["success"]:
                    raise RuntimeError(f"{message_type}: {message['error']}")
                return message.get("result")


def run_in_thread(function, *args):  # type: ignore[no-untyped-def]
    """Run ``asyncio.run(function(*args))`` on a thread of its own (a sync session fixture
    must not touch the test's event loop)."""
    import asyncio
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, function(*args)).result()


async def connect_mqtt(
    ha: HomeAssistantProcess, broker_port: int, within: float = 60.0
) -> tuple[dict[str, object], float]:
    """Add HA's MQTT integration for the broker on 127.0.0.1:``broker_port`` the way a
    user does: the ``mqtt`` config flow over the REST API (one "broker" form: host and
    port), then wait until HA's birth message (``homeassistant/status`` = ``online``)
    shows it connected: HA sends it once its discovery subscriptions are in place, after a
    2 s discovery cool-down of its own. Returns the created config entry and the seconds
    the flow took."""
    import asyncio

    import aiohttp
    import aiomqtt

    headers = {"Authorization": f"Bearer {ha.token}"}
    async with (
        aiomqtt.Client("127.0.0.1", broker_port, identifier="ha-birth-watcher") as watcher,
        aiohttp.ClientSession(ha.url, headers=headers) as http,
    ):
        await watcher.subscribe("homeassistant/status")
        started = time.monotonic()
        async with http.post("/api/config/config_entries/flow", json={"handler": "mqtt"}) as response:
            form = await response.json()
        if form.get("type") != "form" or form.get("step_id") != "broker":
            raise RuntimeError(f"the MQTT config flow did not ask for the broker: {form}")
        async with http.post(
            f"/api/config/config_entries/flow/{form['flow_id']}",
            json={"broker": "127.0.0.1", "port": broker_port},
        ) as response:
            created = await response.json()
        if created.get("type") != "create_entry":
            raise RuntimeError(f"the MQTT config flow did not create an entry: {created}")
        flow_s = time.monotonic() - started
        async with asyncio.timeout(within):
            async for message in watcher.messages:
                if message.payload == b"online":
                    break
    return created["result"], flow_s


class HomeAssistantStates:
    """A websocket to HA that follows every state (``get_states``, then ``state_changed``
    events) and sends commands; tests wait on the states it has seen, with timeouts.

    ``history`` holds (monotonic seconds at arrival, entity_id, state) for every change."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.states: dict[str, dict] = {}
        self.history: list[tuple[float, str, str]] = []
        self._ids = iter(range(1, 1 << 30))
        self._pending: dict[int, object] = {}

    async def __aenter__(self) -> HomeAssistantStates:
        import asyncio

        import aiohttp

        self._changed = asyncio.Condition()
        self._session = aiohttp.ClientSession()
        self._socket = await self._session.ws_connect(self.url + "/api/websocket")
        assert (await self._socket.receive_json())["type"] == "auth_required"
        await self._socket.send_json({"type": "auth", "access_token": self.token})
        if (answer := await self._socket.receive_json())["type"] != "auth_ok":
            await self._session.close()
            raise PermissionError(answer)
        self._reader = asyncio.create_task(self._read())
        # Subscribe first, then read the states: no change can fall between the two.
        await self.command("subscribe_events", event_type="state_changed")
        for state in await self.command("get_states"):  # type: ignore[union-attr]
            self.states.setdefault(state["entity_id"], state)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        import asyncio
        import contextlib

        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()
        await self._session.close()

    async def _read(self) -> None:
        import time as clock

        async for frame in self._socket:
            message = frame.json()
            if message.get("type") == "result":
                future = self._pending.pop(message["id"], None)
                if future is not None and not future.done():  # type: ignore[attr-defined]
                    future.set_result(message)  # type: ignore[attr-defined]
            elif message.get("type") == "event":
                data = message["event"]["data"]
                new = data.get("new_state")
                async with self._changed:
                    if new is None:
                        self.states.pop(data["entity_id"], None)
                    else:
                        self.states[data["entity_id"]] = new
                        self.history.append((clock.monotonic(), data["entity_id"], new["state"]))
                    self._changed.notify_all()

    async def command(self, message_type: str, **payload: object) -> object:
        import asyncio

        message_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        await self._socket.send_json({"id": message_id, "type": message_type, **payload})
        async with asyncio.timeout(30):
            answer = await future
        if not answer["success"]:
            raise RuntimeError(f"{message_type}: {answer['error']}")
        return answer.get("result")

    async def call_service(self, domain: str, service: str, entity_id: str, **data: object) -> object:
        return await self.command(
            "call_service", domain=domain, service=service, service_data=data, target={"entity_id": entity_id}
        )

    async def wait_state(self, entity_id: str, predicate, timeout: float = 30.0) -> dict:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        """The entity's state once ``predicate(state string)`` holds."""
        import asyncio

        def holds() -> bool:
            state = self.states.get(entity_id)
            return state is not None and predicate(state["state"])

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(holds)
        except TimeoutError:
            seen = self.states.get(entity_id, {}).get("state")
            raise AssertionError(
                f"{entity_id} did not reach the state wanted within {timeout:g} s (is {seen!r})"
            ) from None
        return self.states[entity_id]

    async def wait_gone(self, entity_id: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        """Until HA has removed the entity (a state_changed event without a new state)."""
        import asyncio

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: entity_id not in self.states)
        except TimeoutError:
            raise AssertionError(f"{entity_id} was not removed within {timeout:g} s") from None

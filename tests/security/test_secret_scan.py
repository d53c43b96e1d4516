"""Secret hygiene: a whole simulated conversation at DEBUG, then a search of everything the
daemon wrote for every secret it held, in clear and in base64.

Secrets: the Gemini API key (from the environment or a credential file), the Home Assistant
token (used for a real request to a local Home Assistant-like server), the device secret
and every ephemeral token of a token-broker run. Places: log records at DEBUG (messages,
arguments, tracebacks), stdout and stderr (in-process and of the CLI in a subprocess), the
trace file, every file in the state directory, a faulthandler dump taken mid-conversation,
``check-config`` output, and the repr of the daemon's settings and objects. The scan works
with plain ``logging``: nothing depends on a redacting handler.
"""

from __future__ import annotations

import asyncio
import base64
import faulthandler
import io
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from edgevoice.config import load_settings, redacted_dump
from edgevoice.security.credentials import BrokerCredentials
from edgevoice_broker.broker import TokenBroker
from edgevoice_broker.config import load_broker_settings, read_api_key
from edgevoice_testbed.emulator import Emulator
from edgevoice_testbed.emulator.auth import TokenAuthenticator
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.emulator.helpers import scenario
from tests.security.helpers import GEMINI_KEY, credentials_dir, write_broker_files
from tests.tools.home_fakes import FakeHomeAssistant

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")

HA_SECRET = "ha-long-lived-token-5e0c8b7a9d1f2e3c4b6a8d0f1e2c3b4a"
DEVICE_SECRET = "device-secret-a8f3c1e5b7d9f2a4c6e8b0d1f3a5c7e9"
ENTITIES = [{"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"}]
LIGHT_TURN = {
    "input_transcript": "Turn on the kitchen light",
    "reply": "Okay.",
    "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    "follow_up": "The kitchen light is on.",
}
TIMEOUT = 60


def forms(secret: str) -> set[str]:
    """The secret and its base64 forms (standard and URL-safe, padded or not)."""
    raw = secret.encode()
    encoded = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return {secret} | encoded | {text.rstrip("=") for text in encoded}


def scan(places: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """Where each secret (in any form) was found: ``["<secret name> in <place>"]``."""
    found = []
    for place, text in places.items():
        for name, secret in secrets.items():
            if any(form in text for form in forms(secret)):
                found.append(f"{name} in {place}")
    return found


def log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    lines = []
    for record in records:
        lines.append(formatter.format(record))
        lines.append(repr(record.args))
        for value in vars(record).values():
            if type(value) is str:  # (some libraries attach weak proxies; isinstance would touch them)
                lines.append(value)
    return "\n".join(lines)


def state_files(directory: Path) -> dict[str, str]:
    return {
        f"state file {path.name}": path.read_bytes().decode("utf-8", "replace")
        for path in directory.rglob("*")
        if path.is_file()
    }


def home_overrides(ha: FakeHomeAssistant) -> dict[str, object]:
    return {"home": {"backend": "homeassistant", "entities": ENTITIES, "homeassistant": {"url": ha.url}}}


async def dump_threads_during(emulator: Emulator, path: Path) -> None:
    """A faulthandler dump of every thread while the daemon is mid-conversation."""
    await emulator.wait_for(lambda e: bool(e.tool_responses), TIMEOUT)
    with path.open("w") as handle:
        faulthandler.dump_traceback(file=handle, all_threads=True)


def assert_was_used(ha: FakeHomeAssistant, emulator: Emulator) -> None:
    """The secrets were really exercised: Home Assistant saw the token, the model the result."""
    assert HA_SECRET in ha.logins
    assert any(r.known and r.response.get("ok") for r in emulator.tool_responses)


async def test_api_key_mode_leaks_nothing(tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", HA_SECRET)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    ha = FakeHomeAssistant(token=HA_SECRET)
    await ha.start()
    # Only the real key opens a session: proof that the daemon sent it.
    emulator = Emulator(scenario(turns=[LIGHT_TURN]), authenticator=TokenAuthenticator(api_keys=[GEMINI_KEY]))
    await emulator.start()
    stdout = io.StringIO()
    options = SimulationOptions(
        out=tmp_path / "out.wav",
        trace=tmp_path / "trace.jsonl",
        state_dir=tmp_path / "state",
        earcons=False,
        emulator=emulator,
        overrides=home_overrides(ha),
        timeout_s=30,
        presses=[(0.1, 0.6), (1.0, 1.5)],
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            dumper = asyncio.create_task(dump_threads_during(emulator, tmp_path / "faulthandler.txt"))
            result = await simulate(options, stdout=stdout)
            await dumper
    finally:
        await emulator.aclose()
        await ha.stop()
    assert_was_used(ha, emulator)
    assert emulator.connections[0].auth_scheme == "api_key" and emulator.connections[0].accepted
    assert "assistant: The kitchen light is on." in result.transcript
    loaded = load_settings(None, overrides=options.overrides)
    out, err = capfd.readouterr()
    places = {
        "log records (DEBUG)": log_text(caplog.records),
        "stdout (simulate)": stdout.getvalue(),
        "process stdout": out,
        "process stderr": err,
        "trace file": (tmp_path / "trace.jsonl").read_text(),
        "faulthandler dump": (tmp_path / "faulthandler.txt").read_text(),
        "check-config": redacted_dump(loaded),
        "repr of the settings": repr(loaded.settings) + str(loaded.settings) + repr(result.daemon.settings),
        "repr of the daemon's parts": repr(result.daemon.toolbox) + repr(result.daemon.toolbox.backend),
        **state_files(tmp_path / "state"),
    }
    assert len(caplog.records) > 100 and "websockets" in places["log records (DEBUG)"]
    assert scan(places, {"API key": GEMINI_KEY, "Home Assistant token": HA_SECRET}) == []


async def test_token_broker_mode_leaks_nothing(tmp_path, monkeypatch, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    fetch = BrokerCredentials.__call__

    async def recording(self: BrokerCredentials) -> str:
        token = await fetch(self)
        tokens.append(token)  # the test must know every token to look for it
        return token

    monkeypatch.setattr(BrokerCredentials, "__call__", recording)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("HOMEASSISTANT_TOKEN", HA_SECRET)
    device_creds = credentials_dir(tmp_path / "device-creds", edgevoice_device_secret=DEVICE_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(device_creds))
    broker_creds = credentials_dir(tmp_path / "broker-creds", gemini_api_key=GEMINI_KEY)
    ha = FakeHomeAssistant(token=HA_SECRET)
    await ha.start()
    emulator = Emulator(scenario(turns=[LIGHT_TURN]), authenticator=TokenAuthenticator(api_keys=[GEMINI_KEY]))
    await emulator.start()
    files = write_broker_files(
        tmp_path / "broker",
        devices={"kitchen": {"secret": DEVICE_SECRET}},
        gemini_base_url=emulator.rest_base_url,
        gemini_ca_file=emulator.write_ca(tmp_path / "emu-ca.pem"),
    )
    broker = TokenBroker(
        load_broker_settings(files.config), read_api_key({"CREDENTIALS_DIRECTORY": str(broker_creds)})
    )
    await broker.start()
    stdout = io.StringIO()
    overrides = home_overrides(ha) | {
        "auth": {
            "mode": "token_broker",
            "broker_url": broker.url,
            "device_id": "kitchen",
            "broker_ca_file": str(files.ca_file),
        }
    }
    options = SimulationOptions(
        out=tmp_path / "out.wav",
        trace=tmp_path / "trace.jsonl",
        state_dir=tmp_path / "state",
        earcons=False,
        emulator=emulator,
        overrides=overrides,
        timeout_s=30,
        presses=[(0.1, 0.6), (1.0, 1.5)],
        faults=["drop@utterance:2:frame:3"],
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            dumper = asyncio.create_task(dump_threads_during(emulator, tmp_path / "faulthandler.txt"))
            result = await simulate(options, stdout=stdout)
            await dumper
    finally:
        await broker.aclose()
        await emulator.aclose()
        await ha.stop()
    assert_was_used(ha, emulator)
    assert len(tokens) == len(emulator.connections) >= 2  # the drop brought a second token
    assert {c.auth_scheme for c in emulator.connections} == {"token"}
    loaded = load_settings(None, overrides=overrides)
    out, err = capfd.readouterr()
    places = {
        "log records (DEBUG)": log_text(caplog.records),
        "stdout (simulate)": stdout.getvalue(),
        "process stdout": out,
        "process stderr": err,
        "trace file": (tmp_path / "trace.jsonl").read_text(),
        "faulthandler dump": (tmp_path / "faulthandler.txt").read_text(),
        "check-config": redacted_dump(loaded),
        "repr of the settings": repr(loaded.settings) + repr(result.daemon.settings),
        "repr of the broker": repr(broker) + repr(broker.issued) + repr(broker.refused),
        "broker config file": files.config.read_text(),
        "emulator records": repr(emulator.connections) + repr(emulator.issued_tokens),
        **state_files(tmp_path / "state"),
    }
    assert any("issued a token to device kitchen" in r.getMessage() for r in caplog.records)
    secrets = {"API key": GEMINI_KEY, "Home Assistant token": HA_SECRET, "device secret": DEVICE_SECRET}
    secrets |= {f"token {n}": token for n, token in enumerate(tokens, 1)}
    assert scan(places, secrets) == []


async def test_the_cli_in_a_subprocess_leaks_nothing(tmp_path):
    """`edgevoice simulate` and `check-config` as a user runs them, logging at DEBUG, with the
    key in a credential file and the Home Assistant token in the environment."""
    ha = FakeHomeAssistant(token=HA_SECRET)
    await ha.start()
    creds = credentials_dir(tmp_path / "creds", gemini_api_key=GEMINI_KEY)
    config = tmp_path / "edgevoice.toml"
    config.write_text(
        '[logging]\nlevel = "DEBUG"\n\n[home]\nbackend = "homeassistant"\n'
        '[[home.entities]]\nid = "light.kitchen"\nname = "Kitchen light"\n'
        f'[home.homeassistant]\nurl = "{ha.url}"\n'
    )
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(json.dumps({"voice": "tone", "pace": "fast", "turns": [LIGHT_TURN]}))
    env = dict(
        os.environ, CREDENTIALS_DIRECTORY=str(creds), HOMEASSISTANT_TOKEN=HA_SECRET, PYTHONFAULTHANDLER="1"
    )
    env.pop("GEMINI_API_KEY", None)
    # simulate configures its own logging (WARNING, or INFO with -v, and the service's
    # redacting handler): the driver swaps that for plain logging at DEBUG, every logger
    # included, so what is scanned is what the code itself writes.
    driver = (
        "import logging, sys\n"
        "import edgevoice_testbed.sim.simulate as simulate\n"
        "def plain_debug(*args, **kwargs):\n"
        "    logging.basicConfig(level=logging.DEBUG, force=True,\n"
        "                        format='%(levelname)s %(name)s: %(message)s')\n"
        "    for name in list(logging.root.manager.loggerDict):\n"
        "        logging.getLogger(name).setLevel(logging.NOTSET)\n"
        "simulate.setup_logging = plain_debug\n"
        "from edgevoice.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    try:
        simulated = await run(
            env,
            "-X",
            "faulthandler",
            "-c",
            driver,
            "simulate",
            "--config",
            str(config),
            "--scenario",
            str(scenario_file),
            "--trace",
            str(tmp_path / "trace.jsonl"),
            "--state-dir",
            str(tmp_path / "state"),
            "--out",
            str(tmp_path / "out.wav"),
            "--no-earcons",
            "--press",
            "0.1:0.6",
            "--press",
            "1.0:1.5",
            "--timeout",
            "60",
        )
        checked = await run(env, "-m", "edgevoice", "check-config", "--config", str(config))
    finally:
        await ha.stop()
    assert simulated[0] == 0, simulated[2][-3000:]
    assert "assistant: The kitchen light is on." in simulated[1]
    assert "DEBUG websockets.client.edgevoice: > x-goog-api-key: [redacted]" in simulated[2]
    assert HA_SECRET in ha.logins
    assert checked[0] == 0 and "gemini_api_key: set (redacted)" in checked[1]
    places = {
        "simulate stdout": simulated[1],
        "simulate stderr (DEBUG log)": simulated[2],
        "check-config stdout": checked[1],
        "check-config stderr": checked[2],
        "trace file": (tmp_path / "trace.jsonl").read_text(),
        **state_files(tmp_path / "state"),
    }
    assert scan(places, {"API key": GEMINI_KEY, "Home Assistant token": HA_SECRET}) == []


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


def test_the_scan_finds_what_it_looks_for():
    secret = "s3cret-value-0123456789"
    encoded = base64.b64encode(secret.encode()).decode()
    places = {"a": f"x {secret} y", "b": f"data={encoded}", "c": "nothing here"}
    assert scan(places, {"key": secret}) == ["key in a", "key in b"]

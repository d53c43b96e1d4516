"""What `edgevoice run` loads with a plain configuration: nothing a feature it does not use
needs. Each module below costs resident memory on every device (numpy about 11 MB, the MQTT
client 1 MB) and is loaded only where its feature starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Loaded only by: selftest (numpy); a card that needs converting, a volume other than 1 or a
# model speaking at another rate (numpy, soxr); a device shown over MQTT or an MQTT home
# (aiomqtt, paho); a Home Assistant or MQTT home (their backends).
HEAVY = (
    "numpy",
    "soxr",
    "aiomqtt",
    "paho",
    "edgevoice.service.device_mqtt",
    "edgevoice.tools.backends.homeassistant",
    "edgevoice.tools.backends.mqtt",
)

# `edgevoice run` up to the hardware: the command's parser (every room registers its
# subcommands), the configuration, the daemon with its devices' adapter and credentials,
# then what starts without hardware (the tools, the household with its control socket and
# MQTT decision). Prints the heavy modules loaded, after a line saying it got that far.
RUN_WITHOUT_HARDWARE = """
import asyncio, json, sys
from pathlib import Path

from edgevoice.cli import build_parser

config = sys.argv[1]
build_parser(["run", "--config", config]).parse_args(["run", "--config", config])
from edgevoice.config import load_settings
from edgevoice.security.credentials import credential_source
from edgevoice.service.daemon import Daemon
from edgevoice.service.devices import AlsaDevices

settings = load_settings(Path(config)).settings
daemon = Daemon(settings, AlsaDevices(settings.audio), credentials=credential_source(settings))


async def start_what_needs_no_hardware():
    async with daemon.build_tools(), daemon.household:
        pass


asyncio.run(start_what_needs_no_hardware())
print("started", "google.genai" in sys.modules)
print(json.dumps(sorted(name for name in sys.argv[2:] if name in sys.modules)))
"""


def run_without_hardware(config: Path, *, prelude: str = "") -> tuple[str, list[str]]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("EDGEVOICE_", "RUNTIME_DIRECTORY", "CREDENTIALS_DIRECTORY"))
    }
    env["GEMINI_API_KEY"] = "test-key-not-secret"
    result = subprocess.run(
        [sys.executable, "-c", prelude + RUN_WITHOUT_HARDWARE, str(config), *HEAVY],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    started, loaded = result.stdout.splitlines()[-2:]
    return started, json.loads(loaded)


def test_a_plain_configuration_loads_no_module_of_an_unused_feature(tmp_path: Path) -> None:
    config = tmp_path / "edgevoice.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    started, loaded = run_without_hardware(config)
    assert started == "started True"  # it got as far as the daemon's Live door
    assert loaded == []


def test_the_daemon_and_every_backend_load_where_aiohttp_is_not_installed(tmp_path: Path) -> None:
    # The test environment has aiohttp (the token broker and the fakes need it); a device
    # does not, and google-genai must then do without it. Home Assistant's client and the
    # token broker's are loaded here too, since the plain run above does not load them.
    config = tmp_path / "edgevoice.toml"
    config.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    prelude = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # `import aiohttp` raises ImportError, as if not installed\n"
        "import edgevoice.tools.backends.homeassistant, edgevoice.tools.backends.mqtt\n"
        "import edgevoice.security.credentials\n"
    )
    started, _ = run_without_hardware(config, prelude=prelude)
    assert started == "started True"

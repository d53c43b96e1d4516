"""EdgeVoice installed by scripts/install.sh and run by a real systemd (PID 1 of a
booted container), on Debian 13 "trixie" (current Raspberry Pi OS, systemd 257, Python
3.13) and Debian 12 "bookworm" (systemd 252, Python 3.11).

Only the board's hardware is stood in for: the Live API is the emulator (its own unit,
on a loopback port), the button is gpiozero's mock pins (a drop-in), and the sound card
is a PulseAudio null sink behind ALSA's `default` device, which keeps real time like a
card. Everything else is what a user gets: the unit as shipped, the installer run as the
README says, the example configuration edited the way an owner would.

The tests of one release run in order on one machine, as a device's life goes: start,
reload, a stall, stop, upgrade, uninstall.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import record, require_deploy_prerequisites, timed
from tests.deploy.debian import Log, Machine, RootfsSpec, copy_checkout, new_workdir, rootfs

RELEASES = ["trixie", "bookworm"]
KEY = "AIzaSyCI-deploy-test-key_0123456789abc"
CHECKOUT = "/root/edgevoice"
CONFIG = "/etc/edgevoice/edgevoice.toml"
CA_DIR = "/run/edgevoice-ci-emulator"
EMULATOR_UNIT = "/etc/systemd/system/edgevoice-ci-emulator.service"
# The emulator is one of the tools that test the device (edgevoice-testbed), which
# install.sh leaves out: it gets a virtual environment of its own beside the device's.
EMULATOR_VENV = "/opt/edgevoice-ci/venv"
# The state directory of a DynamicUser= service (/var/lib/edgevoice links to it).
STATE = "/var/lib/private/edgevoice"

PULSE_SCRIPT = """\
# edgevoice CI: a sound card stand-in with real timing. The null sink plays into nothing
# at the clock's pace; its monitor is the microphone.
load-module module-null-sink sink_name=board rate=48000
set-default-sink board
set-default-source board.monitor
load-module module-native-protocol-unix auth-anonymous=1 socket=/run/pulse/native
"""
PULSE_UNIT = """\
[Unit]
Description=edgevoice CI: PulseAudio null sink as the sound card
[Service]
ExecStart=/usr/bin/pulseaudio --system --daemonize=no --disallow-exit --exit-idle-time=-1 \\
    --log-target=journal -n --file=/etc/pulse/edgevoice-ci.pa
[Install]
WantedBy=multi-user.target
"""
ALSA_TO_PULSE = """\
# edgevoice CI: ALSA's default device is PulseAudio (libasound2-plugins).
pcm.!default { type pulse }
ctl.!default { type pulse }
"""
PULSE_CLIENT = "autospawn = no\nenable-shm = no\n"
DAEMON_DROP_IN = """\
# edgevoice CI: stand-ins for the board's button and sound card.
[Unit]
Wants=edgevoice-ci-pulseaudio.service
After=edgevoice-ci-pulseaudio.service edgevoice-ci-emulator.service
[Service]
Environment=GPIOZERO_PIN_FACTORY=mock
Environment=PULSE_SERVER=unix:/run/pulse/native
"""


def emulator_unit(port: int, ca_name: str) -> str:
    return f"""\
[Unit]
Description=edgevoice CI: the Live API emulator
[Service]
ExecStart={EMULATOR_VENV}/bin/edgevoice emulator --host 127.0.0.1 --port {port} \\
    --ca-out {CA_DIR}/{ca_name}
RuntimeDirectory=edgevoice-ci-emulator
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
"""


def free_loopback_port() -> int:
    # The container shares the host's network namespace: a port free here is free there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Device:
    """A booted machine with EdgeVoice installed, and what the tests need to know of it."""

    release: str
    machine: Machine
    port: int

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        path = self.machine.path(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    def show(self, *properties: str) -> dict[str, str]:
        return self.machine.show("edgevoice.service", *properties)

    def cursor(self) -> str:
        out = self.machine.sh("journalctl -u edgevoice.service -n 0 --show-cursor -q").stdout
        match = re.search(r"-- cursor: (\S+)", out)
        return match.group(1) if match else ""

    def journal_since(self, cursor: str, *options: str) -> str:
        after = f"--after-cursor={shlex.quote(cursor)}" if cursor else ""
        return self.machine.sh(f"journalctl -u edgevoice.service --no-pager {after} "
                               + " ".join(options)).stdout

    def wait_status(self, prefix: str, timeout: float) -> str:
        """Wait until the unit is active and its Status line starts with ``prefix``."""
        script = ("out=$(systemctl show edgevoice.service -p ActiveState -p StatusText); "
                  f"echo \"$out\"; grep -qx ActiveState=active <<<\"$out\" && "
                  f"grep -q ^StatusText={shlex.quote(prefix)} <<<\"$out\"")
        return self.machine.wait_for(f"status {prefix!r}", script, timeout)

    def edit_config(self, pattern: str, replacement: str) -> None:
        path = self.machine.path(CONFIG)
        text, count = re.subn(pattern, replacement, path.read_text(), count=1, flags=re.MULTILINE)
        assert count == 1, f"{pattern!r} not in {CONFIG}"
        path.write_text(text)


@pytest.fixture(scope="session", params=RELEASES)
def device(request: pytest.FixtureRequest) -> Iterator[Device]:
    require_deploy_prerequisites()
    release = request.param
    workdir = new_workdir(f"deploy-{release}")
    started = time.monotonic()
    lower, cached = rootfs(RootfsSpec(release), Log(workdir / "rootfs.log"))
    record(release, "root filesystem (cached)" if cached else "root filesystem (debootstrap, not cached)",
           time.monotonic() - started)
    machine = Machine(release, lower, workdir)
    device = Device(release, machine, free_loopback_port())
    machine.mount()
    try:
        with timed(release, "boot"):
            machine.boot()
        # The stand-ins for the board's hardware, before the install (a board has them).
        device.write("/etc/pulse/edgevoice-ci.pa", PULSE_SCRIPT)
        device.write("/etc/systemd/system/edgevoice-ci-pulseaudio.service", PULSE_UNIT)
        device.write("/etc/asound.conf", ALSA_TO_PULSE)
        device.write("/etc/pulse/client.conf.d/edgevoice-ci.conf", PULSE_CLIENT)
        device.write("/etc/systemd/system/edgevoice.service.d/edgevoice-ci.conf", DAEMON_DROP_IN)
        device.write(EMULATOR_UNIT, emulator_unit(device.port, "ca.pem"))
        machine.sh("systemctl daemon-reload && systemctl start edgevoice-ci-pulseaudio.service")
        copy_checkout(machine.path(CHECKOUT))
        yield device
    finally:
        machine.poweroff()
        machine.discard()


@pytest.fixture(scope="session")
def installed(device: Device) -> Device:
    """`sudo scripts/install.sh` from a checkout, the key typed in (here: piped)."""
    machine = device.machine
    # Plain Debian has no gpio group: the installer must cope (systemd refuses to start a
    # unit whose SupplementaryGroups= names a missing group: status 216/GROUP).
    assert machine.sh("getent group gpio", check=False).returncode == 2
    with timed(device.release, "install (fresh: apt, venv, pip, unit, start)"):
        result = machine.sh(f"cd {CHECKOUT} && scripts/install.sh", input=KEY + "\n", timeout=1200)
    assert "edgevoice install: done" in result.stdout
    assert KEY not in result.stdout + result.stderr
    assert machine.sh("getent group gpio", check=False).returncode == 0
    # The device carries none of the tools that test it.
    assert machine.sh("/opt/edgevoice/venv/bin/python -c 'import edgevoice_testbed'", check=False).returncode
    assert machine.sh("/opt/edgevoice/venv/bin/python -c 'import trustme'", check=False).returncode
    with timed(device.release, "emulator venv (the testbed, beside the device)"):
        machine.sh(f"python3 -m venv {EMULATOR_VENV} && {EMULATOR_VENV}/bin/pip install -q "
                   f"{CHECKOUT} {CHECKOUT}/testbed", timeout=1200)
    # The owner points the example configuration at the Live API (here the emulator).
    machine.sh("systemctl start edgevoice-ci-emulator.service")
    machine.wait_for("the emulator's CA", f"test -s {CA_DIR}/ca.pem", timeout=60)
    device.edit_config(r"^# base_url = .*$",
                       f'base_url = "https://127.0.0.1:{device.port}"\nca_file = "{CA_DIR}/ca.pem"')
    return device


def test_start_reaches_active_with_a_status_line(installed: Device) -> None:
    machine = installed.machine
    with timed(installed.release, "start (systemctl restart -> READY=1)"):
        machine.sh("systemctl restart edgevoice.service", timeout=60)
    # Type=notify: systemctl returned only after READY=1.
    shown = installed.show("Type", "ActiveState", "SubState", "StatusText", "Result")
    assert shown["Type"] == "notify"
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
    assert shown["StatusText"], shown
    with timed(installed.release, "start -> connected (Status: idle)"):
        installed.wait_status("idle", timeout=60)


def test_the_credentials_arrive(installed: Device) -> None:
    listing = installed.machine.sh("stat -c '%a %n' /run/credentials/edgevoice.service/*").stdout
    modes = dict(reversed(line.split(" ", 1)) for line in listing.splitlines())
    names = {Path(path).name: mode for path, mode in modes.items()}
    assert set(names) == {"gemini-api-key", "homeassistant-token"}, listing
    # systemd 252 hands them over 0400, systemd 257 0440: both are accepted (the unit is up).
    assert names["gemini-api-key"] in ("400", "440"), listing
    key = installed.machine.sh("cat /run/credentials/edgevoice.service/gemini-api-key").stdout
    assert key.strip() == KEY


def test_a_dynamic_user_without_capabilities(installed: Device) -> None:
    shown = installed.show("MainPID", "DynamicUser")
    assert shown["DynamicUser"] == "yes"
    status = installed.machine.sh(f"cat /proc/{shown['MainPID']}/status").stdout
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    uid = int(fields["Uid"].split()[0])
    assert 61184 <= uid <= 65519, fields["Uid"]  # systemd's dynamic user range
    for capabilities in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(fields[capabilities], 16) == 0, (capabilities, fields[capabilities])
    assert fields["NoNewPrivs"].strip() == "1"
    groups = {int(g) for g in fields["Groups"].split()}
    named = installed.machine.sh("getent group audio gpio | cut -d: -f3").stdout.split()
    assert {int(g) for g in named} <= groups


def test_the_journal_carries_edgevoice_fields(installed: Device) -> None:
    out = installed.machine.sh("journalctl -u edgevoice.service -o json --no-pager").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    states = {entry["EDGEVOICE_STATE"] for entry in entries if "EDGEVOICE_STATE" in entry}
    assert "idle" in states, states
    assert any("EDGEVOICE_SESSION_ID" in entry for entry in entries)


def test_systemd_analyze_security_at_most_2(installed: Device) -> None:
    out = installed.machine.sh("systemd-analyze security --no-pager edgevoice.service").stdout
    match = re.search(r"Overall exposure level for edgevoice\.service: ([0-9.]+)", out)
    assert match, out[-500:]
    assert float(match.group(1)) <= 2.0, out[-2000:]


def test_reload_applies_a_changed_setting(installed: Device) -> None:
    machine = installed.machine
    pid = installed.show("MainPID")["MainPID"]
    cursor = installed.cursor()
    installed.edit_config(r"^volume = .*$", "volume = 0.5")
    with timed(installed.release, "reload (systemctl reload -> applied)"):
        machine.sh("systemctl reload edgevoice.service")
        machine.wait_for("the reload", "journalctl -u edgevoice.service --no-pager -q "
                         f"--after-cursor={shlex.quote(cursor)} | grep -q 'configuration reloaded'",
                         timeout=30)
    assert "configuration reloaded; changed: audio" in installed.journal_since(cursor)
    assert installed.show("MainPID")["MainPID"] == pid  # reloaded, not restarted


def test_reload_trusts_a_new_live_ca_file(installed: Device) -> None:
    """The Live API's CA changes; the owner points live.ca_file at the new one and reloads:
    the device reconnects without a restart (it used to keep the old TLS context)."""
    machine = installed.machine
    installed.write(EMULATOR_UNIT, emulator_unit(installed.port, "ca-2.pem"))
    machine.sh("systemctl daemon-reload && systemctl restart edgevoice-ci-emulator.service")
    machine.wait_for("the new CA", f"test -s {CA_DIR}/ca-2.pem", timeout=60)
    # The old CA no longer verifies the server: offline, said once.
    status = installed.wait_status("offline: retrying", timeout=60)
    assert status.count("offline") == 1, status
    pid = installed.show("MainPID")["MainPID"]
    installed.edit_config(r'^ca_file = .*$', f'ca_file = "{CA_DIR}/ca-2.pem"')
    machine.sh("systemctl reload edgevoice.service")
    installed.wait_status("idle", timeout=60)
    assert installed.show("MainPID")["MainPID"] == pid


def test_a_stalled_daemon_is_killed_by_the_watchdog_and_restarted(installed: Device) -> None:
    machine = installed.machine
    before = installed.show("MainPID", "NRestarts", "WatchdogUSec")
    assert before["WatchdogUSec"] == "20s", before  # as the unit ships
    cursor = installed.cursor()
    with timed(installed.release, "watchdog: SIGSTOP -> killed -> restarted -> READY"):
        machine.sh(f"kill -STOP {before['MainPID']}")
        machine.wait_for(
            "the watchdog restart",
            f"test \"$(systemctl show edgevoice.service -p NRestarts --value)\" -gt {before['NRestarts']} "
            "&& systemctl is-active -q edgevoice.service",
            timeout=120,
        )
    journal = installed.journal_since(cursor)
    assert "Watchdog timeout" in journal, journal[-3000:]
    # faulthandler's dump of every thread, from the SIGABRT the watchdog sends.
    assert "Current thread" in journal or "Thread 0x" in journal, journal[-3000:]
    assert "edgevoice-capture" in journal or "File " in journal
    assert installed.show("MainPID")["MainPID"] != before["MainPID"]
    installed.wait_status("idle", timeout=60)


def test_stop_returns_within_2_seconds(installed: Device) -> None:
    machine = installed.machine
    cursor = installed.cursor()
    started = time.monotonic()
    with timed(installed.release, "stop (systemctl stop)"):
        machine.sh("systemctl stop edgevoice.service", timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"systemctl stop took {elapsed:.2f} s"
    shown = installed.show("ActiveState", "Result")
    assert (shown["ActiveState"], shown["Result"]) == ("inactive", "success"), shown
    journal = installed.journal_since(cursor)
    assert "SIGKILL" not in journal and "timed out" not in journal, journal[-2000:]


def _snapshot(machine: Machine) -> dict[str, str]:
    out = machine.sh(f"sha256sum {CONFIG} /etc/edgevoice/credentials/gemini-api-key "
                     f"{STATE}/owner-note").stdout
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def test_upgrade_in_place_keeps_configuration_and_state(installed: Device) -> None:
    machine = installed.machine
    machine.sh(f"echo 'kept across upgrades' > {STATE}/owner-note")
    before = _snapshot(machine)
    # A newer version of the checkout (git pull, as the README's upgrade says).
    for name, old, new in (("pyproject.toml", 'version = "0.1.0"', 'version = "0.1.1"'),
                           ("edgevoice/__init__.py", '__version__ = "0.1.0"', '__version__ = "0.1.1"')):
        path = machine.path(f"{CHECKOUT}/{name}")
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new, 1))
    with timed(installed.release, "upgrade (install.sh again, venv reused)"):
        result = machine.sh(f"cd {CHECKOUT} && scripts/install.sh </dev/null", timeout=900)
    assert "upgrading the virtual environment" in result.stdout
    assert "keeping the existing configuration" in result.stdout
    assert "keeping the installed API key" in result.stdout
    assert _snapshot(machine) == before
    assert "0.1.1" in machine.sh("/opt/edgevoice/venv/bin/edgevoice --version").stdout
    assert machine.sh(f"test -s {STATE}/session.json", check=False).returncode == 0
    installed.wait_status("idle", timeout=60)


def test_uninstall_keeps_configuration_and_state(installed: Device) -> None:
    machine = installed.machine
    before = _snapshot(machine)
    with timed(installed.release, "uninstall (install.sh --uninstall)"):
        machine.sh(f"cd {CHECKOUT} && scripts/install.sh --uninstall", timeout=120)
    assert machine.sh("systemctl is-active edgevoice.service", check=False).stdout.strip() != "active"
    assert machine.sh("test -e /etc/systemd/system/edgevoice.service || test -e /opt/edgevoice",
                      check=False).returncode == 1
    assert _snapshot(machine) == before

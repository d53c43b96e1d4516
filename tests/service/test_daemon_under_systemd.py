"""The daemon as systemd sees it, run as a subprocess with a real NOTIFY_SOCKET.

The microphone of the ``run`` test is libasound's file plugin reading a FIFO the test
feeds in real time: when the test stops feeding it, ALSA's read() really blocks, which is
what a stalled capture device looks like.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgevoice_testbed.emulator import EmulatorThread, Scenario
from edgevoice_testbed.sim.fussy import asoundrc_for
from edgevoice_testbed.sim.wav import write_wav
from tests.support.notify import NotifyListener

ROOT = Path(__file__).resolve().parents[2]
WATCHDOG_USEC = 2_000_000  # pings every 2/3 s; a stall shows after 1 s


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    notify = NotifyListener()
    yield notify
    notify.close()


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    environment = dict(os.environ)
    environment.update(env)
    environment["PYTHONPATH"] = str(ROOT)
    environment.pop("JOURNAL_STREAM", None)
    environment.pop("INVOCATION_ID", None)
    return subprocess.Popen(
        [sys.executable, "-m", "edgevoice", *args],
        env=environment,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def statuses(listener: NotifyListener) -> list[str]:
    return [m.fields["STATUS"] for m in listener.history if "STATUS" in m.fields]


def test_simulated_turn_ready_status_watchdog_and_sigterm(tmp_path: Path, listener: NotifyListener) -> None:
    rng = np.random.default_rng(5)
    write_wav(tmp_path / "mic.wav", rng.integers(-8000, 8000, 16000 * 30).astype("<i2").tobytes(), 16000)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"voice": "tone", "pace": 4.0, "default": {"reply": "Fine, thank you."}}))
    state = tmp_path / "state"
    process = spawn(
        [
            "simulate",
            "--realtime",
            "--mic",
            str(tmp_path / "mic.wav"),
            "--press",
            "0.5:1.5",
            "--press",
            "28.0:29.0",
            "--scenario",
            str(scenario),
            "--state-dir",
            str(state),
            "--out",
            str(tmp_path / "out.wav"),
        ],
        {**listener.environ(), "WATCHDOG_USEC": "4000000"},
        tmp_path / "log.txt",
    )
    try:
        ready = listener.wait_for("READY", "1", timeout=30)
        assert ready.pid == process.pid
        # A whole turn: listening, thinking, speaking, back to idle.
        listener.wait_until(lambda m: m.get("STATUS") == "speaking", timeout=20)
        listener.wait_until(lambda m: m.get("STATUS") == "idle", timeout=20)
        seen = statuses(listener)
        for state_name in ("listening", "thinking", "speaking", "idle"):
            assert state_name in seen
        assert seen.index("listening") < seen.index("thinking") < seen.index("speaking")
        # Watchdog pings come at less than half of WATCHDOG_USEC (4 s here).
        listener.wait_for("WATCHDOG", "1", timeout=3)
        arrivals = [time.monotonic()]
        for _ in range(4):
            listener.wait_for("WATCHDOG", "1", timeout=3)
            arrivals.append(time.monotonic())
        assert max(np.diff(arrivals)) < 2.0, np.diff(arrivals)
        # SIGTERM between turns: STOPPING=1, exit 0, the handle kept for a restart.
        process.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", "1", timeout=10)
        assert process.wait(timeout=15) == 0, (tmp_path / "log.txt").read_text()
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads((state / "session.json").read_text())["handle"]


class FifoMicrophone:
    """Feeds a FIFO with 20 ms of audio every 20 ms, until paused."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        # O_RDWR: opening never blocks, and the FIFO never sees end-of-file.
        self._fd = os.open(path, os.O_RDWR)
        self.feeding = threading.Event()
        self.feeding.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = b"\x01\x00" * 320
        next_t = time.monotonic()
        while not self._stop.is_set():
            if self.feeding.is_set():
                os.write(self._fd, period)
            next_t += 0.02
            # Pacing a simulated sound card by the clock.
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self._fd)


def test_run_watchdog_stops_when_capture_stalls_and_sighup_reloads(
    tmp_path: Path, listener: NotifyListener
) -> None:
    mic = FifoMicrophone(tmp_path / "mic.fifo")
    speaker = tmp_path / "speaker.raw"
    asoundrc = tmp_path / "asoundrc"
    asoundrc.write_text(asoundrc_for(tmp_path / "mic.fifo", speaker))
    config = tmp_path / "edgevoice.toml"
    with EmulatorThread(scenario=Scenario.model_validate({"voice": "tone"})) as emulator:
        ca = emulator.write_ca(tmp_path / "ca.pem")

        def write_config(volume: float, state: str = "state", more: str = "") -> None:
            config.write_text(
                f'[audio]\ncapture_device = "edgevoice_mic"\nplayback_device = "edgevoice_speaker"\n'
                f"volume = {volume}\n"
                f'[live]\nbase_url = "{emulator.base_url}"\nca_file = "{ca}"\n'
                f'[paths]\nstate_dir = "{tmp_path / state}"\n' + more
            )

        write_config(1.0)
        env = {
            **listener.environ(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{asoundrc}",
            "GPIOZERO_PIN_FACTORY": "mock",
            "GEMINI_API_KEY": "test-key-not-secret",
        }
        log = tmp_path / "log.txt"
        process = spawn(["run", "--config", str(config)], env, log)
        try:
            listener.wait_for("READY", "1", timeout=30)
            listener.wait_until(lambda m: m.get("STATUS") == "idle", timeout=15)
            for _ in range(3):
                listener.wait_for("WATCHDOG", "1", timeout=2)
            # The microphone stalls: pings stop and the status says why.
            mic.feeding.clear()
            stalled = listener.wait_until(
                lambda m: m.get("STATUS", "").startswith("stalled: capture"), timeout=5
            )
            assert stalled.pid == process.pid
            listener.drain()
            quiet_from = len(listener.history)
            with pytest.raises(TimeoutError):
                listener.wait_for("WATCHDOG", "1", timeout=2.0)
            assert all(m.get("WATCHDOG") != "1" for m in listener.history[quiet_from:])
            # It recovers: pings come back.
            mic.feeding.set()
            listener.wait_for("WATCHDOG", "1", timeout=5)

            # SIGHUP with a good new configuration.
            write_config(0.5)
            process.send_signal(signal.SIGHUP)
            listener.wait_for("RELOADING", "1", timeout=5)
            listener.wait_for("READY", "1", timeout=5)
            # SIGHUP with new [led] and [home] sections and a new state directory: the first
            # two are applied, the last waits for a restart and the log says why.
            write_config(
                0.5,
                state="elsewhere",
                more='[led]\npin = 27\n[home]\nentities = [{id = "light.porch", name = "Porch"}]\n'
                '[device]\nname = "Hall speaker"\n',
            )
            process.send_signal(signal.SIGHUP)
            listener.wait_for("RELOADING", "1", timeout=5)
            listener.wait_for("READY", "1", timeout=5)
            # SIGHUP with a bad one: refused, the old one stays, the daemon goes on.
            config.write_text("[audio]\nvolume = 'loud'\n")
            process.send_signal(signal.SIGHUP)
            listener.wait_for("RELOADING", "1", timeout=5)
            listener.wait_for("READY", "1", timeout=5)
            listener.wait_for("WATCHDOG", "1", timeout=5)
            assert process.poll() is None

            process.send_signal(signal.SIGTERM)
            listener.wait_for("STOPPING", "1", timeout=10)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
            mic.close()
        output = log.read_text()
        assert "configuration reloaded; changed: audio" in output
        assert "configuration reload refused, keeping the running one" in output
        assert "configuration reloaded; changed: led, home; paths.state_dir needs a restart" in output
        assert "device.name needs a restart (the device's timers, announcements" in output
        assert not (tmp_path / "elsewhere").exists()
        assert "audio.volume = 'loud'" in output
        assert "test-key-not-secret" not in output
        assert "Traceback" not in output


def test_reload_trusts_a_new_live_ca_file(tmp_path: Path, listener: NotifyListener) -> None:
    """The Live API moves to a server with another CA; the owner points live.ca_file at the
    new CA and reloads: the next connection must trust it, without a restart."""
    mic = FifoMicrophone(tmp_path / "mic.fifo")
    asoundrc = tmp_path / "asoundrc"
    asoundrc.write_text(asoundrc_for(tmp_path / "mic.fifo", tmp_path / "speaker.raw"))
    config = tmp_path / "edgevoice.toml"

    def write_config(base_url: str, ca: Path) -> None:
        config.write_text(
            f'[audio]\ncapture_device = "edgevoice_mic"\nplayback_device = "edgevoice_speaker"\n'
            f'[live]\nbase_url = "{base_url}"\nca_file = "{ca}"\n'
            "reconnect_initial_s = 0.1\nreconnect_max_s = 0.5\n"
            f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        )

    env = {
        **listener.environ(),
        "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{asoundrc}",
        "GPIOZERO_PIN_FACTORY": "mock",
        "GEMINI_API_KEY": "test-key-not-secret",
    }
    log = tmp_path / "log.txt"
    scenario = Scenario.model_validate({"voice": "tone"})
    process = None
    try:
        with EmulatorThread(scenario=scenario) as old_server:
            write_config(old_server.base_url, old_server.write_ca(tmp_path / "old-ca.pem"))
            process = spawn(["run", "--config", str(config)], env, log)
            listener.wait_for("READY", "1", timeout=30)
            listener.wait_until(lambda m: m.get("STATUS") == "idle", timeout=15)
        # The old server is gone: the device says it is offline, once.
        offline = listener.wait_until(lambda m: m.get("STATUS", "").startswith("offline: retrying"),
                                      timeout=15)
        assert offline.fields["STATUS"].count("offline") == 1
        with EmulatorThread(scenario=scenario) as new_server:
            write_config(new_server.base_url, new_server.write_ca(tmp_path / "new-ca.pem"))
            listener.drain()
            process.send_signal(signal.SIGHUP)
            listener.wait_for("RELOADING", "1", timeout=5)
            listener.wait_until(lambda m: m.get("STATUS") == "idle", timeout=15)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        mic.close()
    output = log.read_text()
    assert "configuration reloaded; changed: live" in output
    assert "Traceback" not in output


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_run_on_alsa_null_devices_neither_spins_nor_misses_signals(
    tmp_path: Path, listener: NotifyListener
) -> None:
    """ALSA's `null` PCM opens on any machine and returns every read at once. The daemon
    must treat it like a card (periods at the clock's pace): no busy core, no flood of the
    event loop, and SIGHUP/SIGTERM handled promptly."""
    config = tmp_path / "edgevoice.toml"
    with EmulatorThread(scenario=Scenario.model_validate({"voice": "tone"})) as emulator:
        ca = emulator.write_ca(tmp_path / "ca.pem")
        config.write_text(
            '[audio]\ncapture_device = "null"\nplayback_device = "null"\n'
            f'[live]\nbase_url = "{emulator.base_url}"\nca_file = "{ca}"\n'
            f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
        )
        env = {
            **listener.environ(),
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "GPIOZERO_PIN_FACTORY": "mock",
            "GEMINI_API_KEY": "test-key-not-secret",
        }
        log = tmp_path / "log.txt"
        process = spawn(["run", "--config", str(config)], env, log)
        try:
            listener.wait_for("READY", "1", timeout=30)
            listener.wait_until(lambda m: m.get("STATUS") == "idle", timeout=15)
            listener.wait_for("WATCHDOG", "1", timeout=3)
            cpu_from, wall_from = _cpu_seconds(process.pid), time.monotonic()
            for _ in range(4):  # pings come every 2/3 s
                listener.wait_for("WATCHDOG", "1", timeout=3)
            cpu = _cpu_seconds(process.pid) - cpu_from
            wall = time.monotonic() - wall_from
            # Spinning on the null device kept a whole core busy.
            assert cpu < 0.5 * wall, f"{cpu:.2f} s of CPU in {wall:.2f} s"
            for _ in range(3):
                process.send_signal(signal.SIGHUP)
                listener.wait_for("RELOADING", "1", timeout=5)
                listener.wait_for("READY", "1", timeout=5)
            process.send_signal(signal.SIGTERM)
            listener.wait_for("STOPPING", "1", timeout=5)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
    output = log.read_text()
    assert "signal wakeup fd" not in output
    assert "delivers faster than real time" in output
    assert "Traceback" not in output

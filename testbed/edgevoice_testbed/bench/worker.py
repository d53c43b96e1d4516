"""One benchmark client in its own process: ``python -m edgevoice_testbed.bench.worker SPEC.json``.

The bench parent starts this with ``NOTIFY_SOCKET`` bound and ``ALSA_CONFIG_PATH`` pointing
at the simulated sound card. The worker brings its client up (EdgeVoice's daemon or the
quickstart-style reference), says READY=1 through ``systemd.daemon.notify``, waits for
"go" on stdin, runs the scripted conversation on the paced simulated devices, and writes
what its probe recorded to the result file named in the spec. READY goes through the
daemon's own :class:`~edgevoice.service.notify.SystemdNotifier`.

stdout carries one JSON object per line for the parent: ``{"event": "start", "t": T}``
when the microphone timeline starts (monotonic clock, shared by every process of the
machine) and ``{"event": "end", "t": T}`` when it has run its course.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("edgevoice_testbed.bench.worker")

CAPTURE_RATE = 16000
PLAYBACK_RATE = 24000
# The reference records at the quickstart's chunk size; EdgeVoice at its configured period.
REFERENCE_CHUNK_FRAMES = 1024
REFERENCE_PLAYBACK_PERIODS = 4
STOP_TIMEOUT_S = 10.0
# Installed beside the bench, never on a device or by a quickstart (`pip install
# google-genai`): PIL by the plot extra (matplotlib), aiohttp by the token broker and the
# test fakes. google-genai imports each whenever it can (PIL 2.3 MB resident, aiohttp
# 9.8 MB). Hidden from both clients so their memory is what an installed device's is.
TESTBED_ONLY_MODULES = ("PIL", "aiohttp")


@dataclass
class WorkerSpec:
    role: str  # "edgevoice" | "reference"
    name: str  # label in the report ("edgevoice", "edgevoice-probe-off", "reference")
    probe: bool
    presses: list[tuple[float, float]]
    duration_s: float
    base_url: str
    ca_file: str
    state_dir: str
    result_file: str
    period_ms: int = 20
    prebuffer_ms: int = 100
    fade_ms: float = 5.0
    thinking_ms: float = 0.0  # the emulator's scripted reply delay (taken off first sound)
    button_pin: int = 17
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WorkerSpec:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["presses"] = [tuple(p) for p in data["presses"]]
        return cls(**data)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")


class Timeline:
    """The start and end of the microphone timeline, told to the parent and awaited here."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.started: asyncio.Future[float] = loop.create_future()
        self.ended: asyncio.Future[float] = loop.create_future()

    def on_start(self, t: float) -> None:  # capture thread
        self._loop.call_soon_threadsafe(self._settle, self.started, "start", t)

    def on_end(self, t: float) -> None:  # capture thread
        self._loop.call_soon_threadsafe(self._settle, self.ended, "end", t)

    @staticmethod
    def _settle(future: asyncio.Future[float], event: str, t: float) -> None:
        if not future.done():
            emit({"event": event, "t": t})
            future.set_result(t)


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def wait_for_go() -> None:
    """Block (off the loop) until the parent writes a line on stdin."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("edgevoice bench worker: the parent went away before the start")


async def until_done(task: asyncio.Task[Any], waitable: asyncio.Future[Any], limit_s: float) -> None:
    """Wait for ``waitable``; surface the client task's failure if it ends first."""
    done, _ = await asyncio.wait({task, waitable}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        raise RuntimeError("the client stopped before the conversation ended")
    if not done:
        raise TimeoutError(f"the conversation did not reach its end within {limit_s:g} s")


def ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


# -- EdgeVoice -------------------------------------------------------------------------------


async def run_edgevoice(spec: WorkerSpec) -> dict[str, Any]:
    from edgevoice.config import deep_merge, load_settings
    from edgevoice.service.daemon import Daemon
    from edgevoice.service.devices import CAPTURE_PERIODS, CAPTURE_READ_AHEAD, PLAYBACK_PERIODS
    from edgevoice_testbed.bench.probe import NullProbe, Probe
    from edgevoice_testbed.bench.simhw import MIC_PCM, SPEAKER_PCM, BenchDevices, counters

    overrides = deep_merge(
        {
            "audio": {
                "capture_device": MIC_PCM,
                "playback_device": SPEAKER_PCM,
                "period_ms": spec.period_ms,
                "prebuffer_ms": spec.prebuffer_ms,
                "fade_ms": spec.fade_ms,
            },
            "button": {"pin": spec.button_pin, "bounce_time_ms": None},
            "live": {"base_url": spec.base_url, "ca_file": spec.ca_file},
            "paths": {"state_dir": spec.state_dir},
        },
        spec.overrides,
    )
    settings = load_settings(None, overrides=overrides).settings
    loop = asyncio.get_running_loop()
    timeline = Timeline(loop)
    devices = BenchDevices(
        presses=spec.presses,
        duration_s=spec.duration_s,
        capture_rate=CAPTURE_RATE,
        capture_period=CAPTURE_RATE * settings.audio.period_ms // 1000,
        playback_rate=PLAYBACK_RATE,
        playback_period=PLAYBACK_RATE * settings.audio.period_ms // 1000,
        playback_periods=PLAYBACK_PERIODS,
        button_pin=settings.button.pin,
        pull_up=settings.button.pull_up,
        on_start=timeline.on_start,
        on_end=timeline.on_end,
        capture_periods=CAPTURE_PERIODS,
        capture_read_ahead=CAPTURE_READ_AHEAD,
    )
    async def credentials() -> str:
        return "bench-key"

    probe = Probe(spec.thinking_ms) if spec.probe else NullProbe()
    daemon = Daemon(settings, devices, credentials=credentials, metrics=probe)
    task = asyncio.create_task(daemon.run(), name="daemon")
    # Bounded, so a daemon that dies before READY does not leave a thread waiting forever.
    await until_done(task, asyncio.ensure_future(asyncio.to_thread(daemon.ready.wait, 60)), 60)
    await wait_for_go()
    devices.gate.set()
    await until_done(task, timeline.started, 10)
    await until_done(task, timeline.ended, spec.duration_s + 60)
    quiet_at_end = daemon.quiet.is_set()
    daemon.request_stop()
    await asyncio.wait_for(task, STOP_TIMEOUT_S)
    await asyncio.to_thread(devices.shutdown)

    assert daemon.microphone is not None and daemon.speaker is not None and daemon.live_link is not None
    snapshot = probe.snapshot()
    return {
        "series": snapshot["series"],
        "counters": {
            **counters(daemon.microphone, ("overruns", "reopens", "frames_delivered")),
            **counters(daemon.speaker, ("interrupts", "write_errors")),
            **counters(
                daemon.speaker.jitter.counters,
                ("underruns", "underrun_frames", "played_frames", "target_raises", "target_cuts"),
            ),
            "late_capture_reads": devices.capture.overruns if devices.capture else 0,
            "connects": daemon.live_link.connects,
            "resumed_links": snapshot["resumed_links"],
            "fresh_links": snapshot["fresh_links"],
            "quiet_at_end": int(quiet_at_end),
        },
        "started_t": timeline.started.result(),
        "ended_t": timeline.ended.result(),
    }


# -- the reference -------------------------------------------------------------------------


async def run_reference(spec: WorkerSpec) -> dict[str, Any]:
    from google import genai
    from google.genai import types

    from edgevoice.service.notify import SystemdNotifier
    from edgevoice_testbed.bench.probe import NullProbe, Probe
    from edgevoice_testbed.bench.reference import ReferenceClient
    from edgevoice_testbed.bench.simhw import BenchDevices

    loop = asyncio.get_running_loop()
    timeline = Timeline(loop)
    devices = BenchDevices(
        presses=spec.presses,
        duration_s=spec.duration_s,
        capture_rate=CAPTURE_RATE,
        capture_period=REFERENCE_CHUNK_FRAMES,
        playback_rate=PLAYBACK_RATE,
        playback_period=REFERENCE_CHUNK_FRAMES,
        playback_periods=REFERENCE_PLAYBACK_PERIODS,
        button_pin=spec.button_pin,
        on_start=timeline.on_start,
        on_end=timeline.on_end,
    )
    client = genai.Client(
        api_key="bench-key",
        http_options=types.HttpOptions(
            base_url=spec.base_url, async_client_args={"ssl": ssl_context(spec.ca_file)}
        ),
    )
    probe = Probe(spec.thinking_ms) if spec.probe else NullProbe()
    reference = ReferenceClient(client, devices, probe=probe, on_ready=SystemdNotifier().ready)
    task = asyncio.create_task(reference.run(), name="reference")
    await until_done(task, reference.connected, 60)
    await wait_for_go()
    devices.gate.set()
    await until_done(task, timeline.started, 10)
    await until_done(task, timeline.ended, spec.duration_s + 60)
    await reference.stop()
    await asyncio.wait_for(task, STOP_TIMEOUT_S)
    snapshot = probe.snapshot()
    return {
        "series": snapshot["series"],
        "counters": {
            **reference.counters(),
            "connects": reference.connects,
            "overruns": 0,  # the quickstart's read() never reports one
            "late_capture_reads": devices.capture.overruns if devices.capture else 0,
        },
        "started_t": timeline.started.result(),
        "ended_t": timeline.ended.result(),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgevoice_testbed.bench.worker SPEC.json", file=sys.stderr)
        return 2
    spec = WorkerSpec.load(Path(argv[0]))
    for name in TESTBED_ONLY_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # makes `import` fail
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = run_edgevoice if spec.role == "edgevoice" else run_reference
    result = asyncio.run(runner(spec))
    result.update({"role": spec.role, "name": spec.name, "probe": spec.probe})
    Path(spec.result_file).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``edgevoice simulate``: the whole daemon on simulated hardware, in one command.

The daemon is the production one. Its microphone and speaker are real pyalsaaudio PCMs on
libasound's file plugin (a WAV file in, a WAV file out), its button is a real gpiozero
``Button`` on a mock pin pressed by a schedule, and it talks to the embedded Live API
emulator over a real TLS websocket (or to Google's service with ``--live``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edgevoice.audio.alsa import AudioDeviceError, open_pcm
from edgevoice.config import Settings, deep_merge, load_settings, resolve_config_path
from edgevoice.core.events import Captured, Event, ToolCallsReceived, ToolResult, TurnComplete
from edgevoice.core.events import Transcript as TranscriptEvent
from edgevoice.errors import UserError
from edgevoice.live import wire
from edgevoice.live.link import CredentialError
from edgevoice.service.daemon import CAPTURE_RATE, PLAYBACK_RATE, Daemon, Hardware
from edgevoice.sim.devices import ButtonSchedule, SimulatedCapture, SimulatedPlayback
from edgevoice.sim.fussy import asoundrc_for
from edgevoice.sim.wav import read_wav_as, write_wav

SAMPLE_WAV = "sample.wav"
MIC_PCM = "edgevoice_mic"
SPEAKER_PCM = "edgevoice_speaker"
# Silence after the microphone file so the last release always has audio to land in.
TAIL_S = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run the daemon on simulated hardware (a WAV file in, a WAV file out)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: built-in defaults)")
    parser.add_argument("--mic", metavar="WAV", type=Path, help="what the microphone hears (any PCM WAV)")
    parser.add_argument(
        "--press",
        metavar="START:END",
        action="append",
        default=[],
        help="hold the button from START to END seconds into the mic file (repeatable)",
    )
    parser.add_argument(
        "--out", metavar="WAV", type=Path, default=Path("reply.wav"), help="what the speaker played"
    )
    parser.add_argument(
        "--trace", metavar="FILE", type=Path, help="write every websocket frame and button edge as JSON lines"
    )
    parser.add_argument("--scenario", metavar="FILE", type=Path, help="emulator scenario (JSON)")
    parser.add_argument("--realtime", action="store_true", help="pace the simulated devices by the clock")
    parser.add_argument(
        "--live", action="store_true", help="talk to the real Gemini Live API instead of the emulator"
    )
    parser.add_argument("--no-earcons", action="store_true", help="do not play the short status sounds")
    parser.add_argument("--state-dir", type=Path, help="state directory (default: a temporary one)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)"
    )
    parser.set_defaults(handler=run_simulate_command)


def run_simulate_command(args: argparse.Namespace) -> int:
    options = SimulationOptions(
        config=Path(args.config) if args.config else None,
        mic=args.mic,
        presses=[ButtonSchedule.parse(spec) for spec in args.press],
        out=args.out,
        trace=args.trace,
        scenario=args.scenario,
        realtime=args.realtime,
        live=args.live,
        earcons=not args.no_earcons,
        state_dir=args.state_dir,
        timeout_s=args.timeout,
    )
    result = asyncio.run(simulate(options, stdout=sys.stdout))
    print(f"speaker output: {options.out} ({result.output_seconds:.2f} s)")
    return 0


@dataclass
class SimulationOptions:
    config: Path | None = None
    mic: Path | None = None
    presses: list[tuple[float, float]] = field(default_factory=list)
    out: Path = Path("reply.wav")
    trace: Path | None = None
    scenario: Path | None = None
    realtime: bool = False
    live: bool = False
    earcons: bool = True
    state_dir: Path | None = None
    timeout_s: float = 120.0
    # Set by tests and the benchmark: extra settings on top of the file, and an emulator
    # they started themselves (anything with base_url and client_ssl_context()).
    overrides: dict[str, Any] = field(default_factory=dict)
    emulator: Any = None


@dataclass
class SimulationResult:
    transcript: list[str]
    output_seconds: float
    daemon: Daemon
    # (pressed, frames of speaker output already heard at that instant), per button edge.
    button_edges: list[tuple[bool, int]] = field(default_factory=list)


async def simulate(options: SimulationOptions, stdout: TextIO | None = None) -> SimulationResult:
    with tempfile.TemporaryDirectory(prefix="edgevoice-sim-") as scratch:
        return await _simulate_in(Path(scratch), options, stdout)


async def _simulate_in(scratch: Path, options: SimulationOptions, stdout: TextIO | None) -> SimulationResult:
    mic_path = options.mic
    presses = list(options.presses)
    if mic_path is None:
        mic_audio = _sample_utterance()
        if not presses:
            presses = [(0.1, len(mic_audio) / CAPTURE_RATE - 0.05)]
    else:
        mic_audio = read_wav_as(mic_path, CAPTURE_RATE)
        if not presses:
            presses = [(0.0, len(mic_audio) / CAPTURE_RATE)]
    schedule = ButtonSchedule(presses, CAPTURE_RATE)
    tail = max(0, schedule.last_position - len(mic_audio)) + int(TAIL_S * CAPTURE_RATE)
    mic_raw = scratch / "mic.raw"
    np.concatenate([mic_audio, np.zeros(tail, dtype="<i2")]).tofile(mic_raw)
    speaker_raw = scratch / "speaker.raw"
    speaker_raw.touch()
    asoundrc = scratch / "asoundrc"
    asoundrc.write_text(asoundrc_for(mic_raw, speaker_raw))
    # libasound reads this when a PCM is opened and notices when it changes.
    os.environ["ALSA_CONFIG_PATH"] = f"/usr/share/alsa/alsa.conf:{asoundrc}"

    state_dir = options.state_dir or scratch / "state"
    overrides: dict[str, Any] = {
        "audio": {"capture_device": MIC_PCM, "playback_device": SPEAKER_PCM},
        "paths": {"state_dir": str(state_dir)},
        "button": {"bounce_time_ms": None},
    }
    if not options.earcons:
        overrides["audio"]["earcons"] = False
    overrides = deep_merge(overrides, options.overrides)
    config_path = resolve_config_path(options.config, {}) if options.config else None
    settings = load_settings(config_path, overrides=overrides).settings

    async with contextlib.AsyncExitStack() as stack:
        if options.live:
            if settings.gemini_api_key is None:
                raise UserError(
                    "--live needs a Gemini API key: set GEMINI_API_KEY or the credential file "
                    "$CREDENTIALS_DIRECTORY/gemini-api-key"
                )
            api_key = settings.gemini_api_key.get_secret_value()
            ssl_context = None
        else:
            emulator = options.emulator
            if emulator is None:
                emulator = await stack.enter_async_context(_start_emulator(options.scenario))
            settings = settings.model_copy(
                update={"live": settings.live.model_copy(update={"base_url": emulator.base_url})}
            )
            ssl_context = emulator.client_ssl_context()
            api_key = "simulated-key"

        async def credentials() -> str:
            if not api_key:
                raise CredentialError("no API key")
            return api_key

        trace = stack.enter_context(_trace_writer(options.trace))
        run = _SimulatedRun(settings, schedule, options, trace, stdout)
        daemon = run.build_daemon(credentials, ssl_context)
        await run.run(daemon)

    out_pcm = speaker_raw.read_bytes()
    write_wav(options.out, out_pcm, PLAYBACK_RATE)
    if daemon.toolbox is not None:
        state = daemon.toolbox.describe_state()
        if stdout is not None and state:
            print("home state:\n" + state, file=stdout)
    return SimulationResult(run.transcript.lines, len(out_pcm) / 2 / PLAYBACK_RATE, daemon, run.button_edges)


class _SimulatedRun:
    def __init__(
        self,
        settings: Settings,
        schedule: ButtonSchedule,
        options: SimulationOptions,
        trace: Callable[[dict[str, Any]], None] | None,
        stdout: TextIO | None,
    ) -> None:
        self.settings = settings
        self.schedule = schedule
        self.options = options
        self.trace = trace
        self.transcript = _TranscriptPrinter(stdout)
        self.capture: SimulatedCapture | None = None
        self.playback: SimulatedPlayback | None = None
        self.button_edges: list[tuple[bool, int]] = []
        self.done = asyncio.Event()
        self._final_position = schedule.last_position
        self._final_frame_seen = not schedule.edges

    def build_daemon(self, credentials: Callable[[], Any], ssl_context: Any) -> Daemon:
        from gpiozero.pins.mock import MockFactory

        settings = self.settings
        pin_factory = MockFactory()
        pin = pin_factory.pin(settings.button.pin)
        pull_up = settings.button.pull_up
        capture_period = CAPTURE_RATE * settings.audio.period_ms // 1000
        playback_period = PLAYBACK_RATE * settings.audio.period_ms // 1000
        realtime = self.options.realtime
        daemon_ref: list[Daemon] = []

        def drive_button(pressed: bool) -> None:
            heard = self.playback.heard_frames() if self.playback is not None else 0
            self.button_edges.append((pressed, heard))
            if self.trace is not None:
                self.trace({"event": "button", "state": "pressed" if pressed else "released"})
            if pressed == pull_up:
                pin.drive_low()
            else:
                pin.drive_high()

        def ready_for_press(timeout: float) -> bool:
            daemon = daemon_ref[0]
            return daemon.quiet.wait(timeout) and daemon.conversation.link_up

        def open_capture() -> SimulatedCapture:
            pcm, _format = open_pcm(
                "capture",
                settings.audio.capture_device,
                rate=CAPTURE_RATE,
                channels=1,
                period_frames=capture_period,
            )
            self.capture = SimulatedCapture(
                pcm,
                rate=CAPTURE_RATE,
                period_frames=capture_period,
                schedule=self.schedule,
                drive_button=drive_button,
                realtime=realtime,
                ready_for_press=ready_for_press,
            )
            return self.capture

        def open_playback() -> SimulatedPlayback:
            pcm, _format = open_pcm(
                "playback",
                settings.audio.playback_device,
                rate=PLAYBACK_RATE,
                channels=1,
                period_frames=playback_period,
            )
            self.playback = SimulatedPlayback(
                pcm, rate=PLAYBACK_RATE, channels=1, buffer_frames=playback_period * 2, paced=realtime
            )
            return self.playback

        def stamp_and_post(post: Callable[[int], None]) -> None:
            assert self.capture is not None
            self.capture.stamp_and_post(post)

        hardware = Hardware(
            open_capture=open_capture,
            open_playback=open_playback,
            playback_buffer_frames=playback_period * 2,
            paced_playback=realtime,
            pin_factory=pin_factory,
            stamp_and_post=stamp_and_post,
        )
        from edgevoice.tools import ToolBox

        daemon = Daemon(
            settings,
            hardware,
            credentials=credentials,
            ssl_context=ssl_context,
            toolbox=ToolBox.from_settings(settings.home, settings.paths.state_dir),
            earcons_factory=_earcons,
            observers=[self._observe],
        )
        daemon.after_dispatch.append(lambda: self._check_done(daemon))
        daemon_ref.append(daemon)
        return daemon

    async def run(self, daemon: Daemon) -> None:
        if self.trace is not None:
            trace = self.trace
            wire.set_frame_observer(lambda direction, frame, _t: trace(_frame_record(direction, frame)))
        task = asyncio.create_task(daemon.run(), name="daemon")
        try:
            waiter = asyncio.create_task(self.done.wait())
            finished, _ = await asyncio.wait(
                {task, waiter}, timeout=self.options.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            waiter.cancel()
            if task in finished:
                task.result()  # the daemon ended on its own: surface why
                return
            if not finished:
                status = daemon.conversation.status
                raise UserError(
                    f"the simulated conversation did not finish within {self.options.timeout_s:g} s "
                    f"(status: {status.text() if status else 'starting'})"
                )
            daemon.request_stop()
            await task
        finally:
            wire.set_frame_observer(None)
            if not task.done():
                daemon.request_stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)

    def _observe(self, event: Event) -> None:
        if isinstance(event, Captured):
            if self.capture is not None and not self.options.realtime:
                self.capture.frame_consumed()
            if event.position + len(event.pcm) // 2 > self._final_position:
                self._final_frame_seen = True
        elif isinstance(event, TranscriptEvent | TurnComplete | ToolCallsReceived | ToolResult):
            self.transcript.observe(event)

    def _check_done(self, daemon: Daemon) -> None:
        if self._final_frame_seen and daemon.conversation.idle and daemon.conversation.link_up:
            self.done.set()


class _TranscriptPrinter:
    def __init__(self, stdout: TextIO | None) -> None:
        self._stdout = stdout
        self.lines: list[str] = []
        self._model: list[str] = []

    def observe(self, event: Event) -> None:
        if isinstance(event, ToolCallsReceived):
            for call in event.calls:
                arguments = ", ".join(f"{k}={v!r}" for k, v in call.args.items())
                self._emit(f"tool call: {call.name}({arguments})  [id {call.id}]")
        elif isinstance(event, ToolResult):
            self._emit(
                f"tool result: {event.name} -> {json.dumps(event.response, sort_keys=True)}"
                f"  [id {event.id}, scheduling {event.scheduling}]"
            )
        elif isinstance(event, TranscriptEvent):
            if event.role == "user":
                self._emit(f"you: {event.text}")
            else:
                self._model.append(event.text)
        elif isinstance(event, TurnComplete) and self._model:
            self._emit(f"assistant: {''.join(self._model).strip()}")
            self._model.clear()

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if self._stdout is not None:
            print(line, file=self._stdout, flush=True)


@contextlib.asynccontextmanager
async def _start_emulator(scenario_path: Path | None) -> Any:
    from edgevoice.emulator import Emulator, Scenario
    from edgevoice.emulator.scenario import ScenarioError

    try:
        scenario = Scenario.load(scenario_path) if scenario_path else Scenario.default()
    except ScenarioError as exc:
        raise UserError(str(exc)) from None
    async with Emulator(scenario=scenario) as emulator:
        yield emulator


@contextlib.contextmanager
def _trace_writer(path: Path | None) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    if path is None:
        yield None
        return
    start = time.monotonic()
    try:
        handle = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write the trace file {path}: {exc.strerror}") from None
    with handle:

        def write(record: dict[str, Any]) -> None:
            handle.write(json.dumps({"t": round(time.monotonic() - start, 6), **record}) + "\n")

        yield write


def _frame_record(direction: str, frame: Any) -> dict[str, Any]:
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else str(frame)
    try:
        message = json.loads(text)
    except ValueError:
        message = {"unparsed": text[:1000]}
    return {"dir": direction, "msg": message}


def _sample_utterance() -> np.ndarray:
    with resources.as_file(resources.files("edgevoice.sim") / "data" / SAMPLE_WAV) as path:
        return read_wav_as(path, CAPTURE_RATE)


def _earcons(settings: Settings) -> Callable[[str], bytes | None] | None:
    if not settings.audio.earcons:
        return None
    try:
        from edgevoice.audio.earcons import Earcons
    except ImportError:
        return None
    return Earcons(True, settings.audio.disabled_earcons).get


__all__ = ["AudioDeviceError", "SimulationOptions", "SimulationResult", "register", "simulate"]

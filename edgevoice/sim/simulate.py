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
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from edgevoice.audio.alsa import AudioDeviceError, OpenedFormat
from edgevoice.audio.devices import ConvertingPlayback
from edgevoice.audio.devices import open_capture as open_capture_device
from edgevoice.audio.devices import open_playback as open_playback_device
from edgevoice.config import Settings, deep_merge, load_settings, resolve_config_path
from edgevoice.core.events import (
    Captured,
    Event,
    Pressed,
    Released,
    ServerAudio,
    ToolCallsReceived,
    ToolResult,
    TurnComplete,
)
from edgevoice.core.events import Transcript as TranscriptEvent
from edgevoice.errors import UserError
from edgevoice.live import wire
from edgevoice.live.link import CredentialError
from edgevoice.service.daemon import CAPTURE_RATE, PLAYBACK_PERIODS, PLAYBACK_RATE, Daemon, Hardware
from edgevoice.service.logging import setup_logging
from edgevoice.service.watchdog import enable_crash_dumps
from edgevoice.sim.devices import ButtonSchedule, SimulatedCapture, SimulatedPlayback
from edgevoice.sim.fussy import FussyPluginError, asoundrc_for, to_device_format
from edgevoice.sim.wav import read_wav_as, write_wav

if TYPE_CHECKING:
    from edgevoice.emulator.faults import Fault, Trigger

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
    parser.add_argument(
        "--fault",
        metavar="KIND@WHEN",
        action="append",
        default=[],
        help="break something (repeatable): KIND drop, close:CODE, goaway:SECONDS, refuse:SECONDS, "
        "restart; WHEN utterance:N:frame:K or reply:N:chunk:K",
    )
    card = parser.add_argument_group(
        "simulated sound card", "make the card accept only one format, as fussy USB/I2S cards do"
    )
    card.add_argument("--capture-device-rate", type=int, metavar="HZ", help="the microphone runs only at HZ")
    card.add_argument(
        "--capture-device-channels", type=int, metavar="N", help="the microphone has N channels"
    )
    card.add_argument("--playback-device-rate", type=int, metavar="HZ", help="the speaker runs only at HZ")
    card.add_argument("--playback-device-channels", type=int, metavar="N", help="the speaker has N channels")
    parser.add_argument("--state-dir", type=Path, help="state directory (default: a temporary one)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the daemon does (INFO)")
    parser.set_defaults(handler=run_simulate_command)


def run_simulate_command(args: argparse.Namespace) -> int:
    setup_logging("INFO" if args.verbose else "WARNING", transcripts=False)
    enable_crash_dumps()
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
        faults=args.fault,
        card=SimulatedCard(
            capture_rate=args.capture_device_rate,
            capture_channels=args.capture_device_channels,
            playback_rate=args.playback_device_rate,
            playback_channels=args.playback_device_channels,
        ),
    )
    result = asyncio.run(simulate(options, stdout=sys.stdout, handle_signals=True))
    print(f"speaker output: {options.out} ({result.output_seconds:.2f} s)")
    return 0


@dataclass(frozen=True)
class SimulatedCard:
    """What the simulated sound card accepts (None: anything, like a forgiving card)."""

    capture_rate: int | None = None
    capture_channels: int | None = None
    playback_rate: int | None = None
    playback_channels: int | None = None


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
    card: SimulatedCard = field(default_factory=SimulatedCard)
    # KIND@WHEN specs (see edgevoice.emulator.faults); "restart" restarts the daemon itself.
    faults: list[str] = field(default_factory=list)
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
    # Every daemon of the run: more than one after a ``restart`` fault.
    daemons: list[Daemon] = field(default_factory=list)


async def simulate(
    options: SimulationOptions, stdout: TextIO | None = None, *, handle_signals: bool = False
) -> SimulationResult:
    """Run one simulated conversation. ``handle_signals``: SIGTERM/SIGINT end it the way
    they end the daemon (the command line sets it; tests in-process do not)."""
    with tempfile.TemporaryDirectory(prefix="edgevoice-sim-") as scratch:
        return await _simulate_in(Path(scratch), options, stdout, handle_signals)


async def _simulate_in(
    scratch: Path, options: SimulationOptions, stdout: TextIO | None, handle_signals: bool
) -> SimulationResult:
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
    mic_pcm = np.concatenate([mic_audio, np.zeros(tail, dtype="<i2")]).tobytes()
    card = options.card
    if card.capture_rate or card.capture_channels:
        # The simulated microphone hears the file at the card's own rate and channel count.
        mic_pcm = to_device_format(
            mic_pcm, CAPTURE_RATE, card.capture_rate or CAPTURE_RATE, card.capture_channels or 1
        )
    mic_raw = scratch / "mic.raw"
    mic_raw.write_bytes(mic_pcm)
    speaker_raw = scratch / "speaker.raw"
    speaker_raw.touch()
    asoundrc = scratch / "asoundrc"
    try:
        asoundrc.write_text(
            asoundrc_for(
                mic_raw,
                speaker_raw,
                capture_rate=card.capture_rate,
                capture_channels=card.capture_channels,
                playback_rate=card.playback_rate,
                playback_channels=card.playback_channels,
            )
        )
    except (FussyPluginError, ValueError) as exc:
        raise UserError(f"cannot simulate that sound card: {exc}") from None
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

    faults = [_parse_fault(spec) for spec in options.faults]
    restarts = [fault.when for fault in faults if fault.kind == "restart" and fault.when is not None]
    server_faults = [fault for fault in faults if fault.kind != "restart"]
    if options.live and server_faults:
        raise UserError("--fault needs the emulator: it cannot break the real Gemini service")
    async with contextlib.AsyncExitStack() as stack:
        if options.live:
            if settings.gemini_api_key is None and settings.auth.mode == "api_key":
                raise UserError(
                    "--live needs a Gemini API key: set GEMINI_API_KEY or the credential file "
                    "$CREDENTIALS_DIRECTORY/gemini-api-key"
                )
            api_key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else ""
            ssl_context = None
        else:
            emulator = options.emulator
            if emulator is None:
                emulator = await stack.enter_async_context(_start_emulator(options.scenario))
            for fault in server_faults:
                emulator.inject_fault(fault)
            settings = settings.model_copy(
                update={"live": settings.live.model_copy(update={"base_url": emulator.base_url})}
            )
            ssl_context = emulator.client_ssl_context()
            # The configured key if there is one (the emulator keeps only a fingerprint).
            key = settings.gemini_api_key
            api_key = key.get_secret_value() if key is not None else "simulated-key"

        async def credentials() -> str:
            if not api_key:
                raise CredentialError("no API key")
            return api_key

        if settings.auth.mode == "token_broker":
            from edgevoice.security.credentials import credential_source

            credentials = credential_source(settings)  # type: ignore[assignment]

        trace = stack.enter_context(_trace_writer(options.trace))
        run = _SimulatedRun(settings, schedule, options, trace, stdout, restarts)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, run.done.set)
        await run.run(credentials, ssl_context)
        daemon = run.daemon

    out_pcm = speaker_raw.read_bytes()
    speaker = run.speaker_format
    out_rate, out_channels = (speaker.rate, speaker.channels) if speaker else (PLAYBACK_RATE, 1)
    write_wav(options.out, out_pcm, out_rate, out_channels)
    if daemon.toolbox is not None:
        state = daemon.toolbox.describe_state()
        if stdout is not None and state:
            print("home state:\n" + state, file=stdout)
    return SimulationResult(
        run.transcript.lines,
        len(out_pcm) / 2 / out_channels / out_rate,
        daemon,
        run.button_edges,
        run.daemons,
    )


class _SimulatedRun:
    """One simulated conversation: the devices, the button schedule, and the daemon (a new
    one after each ``restart`` fault, resuming from the handle the last one saved)."""

    def __init__(
        self,
        settings: Settings,
        schedule: ButtonSchedule,
        options: SimulationOptions,
        trace: Callable[[dict[str, Any]], None] | None,
        stdout: TextIO | None,
        restarts: list[Trigger],
    ) -> None:
        self.settings = settings
        self.schedule = schedule
        self.options = options
        self.trace = trace
        self.transcript = _TranscriptPrinter(stdout)
        self.capture: SimulatedCapture | None = None
        self.playback: SimulatedPlayback | None = None
        self.speaker_format: OpenedFormat | None = None
        self.button_edges: list[tuple[bool, int]] = []
        self.daemons: list[Daemon] = []
        self.done = asyncio.Event()
        self._restart = asyncio.Event()
        self._restarts = list(restarts)
        self._final_position = schedule.last_position
        self._final_frame_seen = not schedule.edges
        # For restart triggers: presses and releases so far, frames and chunks since.
        self._presses = 0
        self._frames_since_press = 0
        self._releases = 0
        self._chunks_since_release = 0
        from gpiozero.pins.mock import MockFactory

        self._pin_factory = MockFactory()

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def build_daemon(self, credentials: Callable[[], Any], ssl_context: Any) -> Daemon:
        from edgevoice.tools import ToolBox

        settings = self.settings
        hardware = Hardware(
            open_capture=self._open_capture,
            open_playback=self._open_playback,
            playback_buffer_frames=self._playback_period * 2,
            paced_playback=self.options.realtime,
            paced_capture=self.options.realtime,
            pin_factory=self._pin_factory,
            edge_position=self._edge_position,
        )
        daemon = Daemon(
            settings,
            hardware,
            credentials=credentials,
            ssl_context=ssl_context,
            toolbox=ToolBox.from_settings(settings.home, settings.paths.state_dir),
            observers=[self._observe],
        )
        daemon.after_dispatch.append(lambda: self._check_done(daemon))
        self.daemons.append(daemon)
        return daemon

    async def run(self, credentials: Callable[[], Any], ssl_context: Any) -> None:
        if self.trace is not None:
            trace = self.trace
            wire.set_frame_observer(lambda direction, frame, _t: trace(_frame_record(direction, frame)))
        deadline = time.monotonic() + self.options.timeout_s
        try:
            while True:
                daemon = self.build_daemon(credentials, ssl_context)
                if await self._run_until_done_or_restart(daemon, deadline):
                    return
                if self.trace is not None:
                    self.trace({"event": "restart"})
        finally:
            wire.set_frame_observer(None)
            for device in (self.capture, self.playback):
                if device is not None:
                    device.shutdown()

    async def _run_until_done_or_restart(self, daemon: Daemon, deadline: float) -> bool:
        self._restart.clear()
        task = asyncio.create_task(daemon.run(), name="daemon")
        waiters = {asyncio.create_task(self.done.wait()), asyncio.create_task(self._restart.wait())}
        try:
            timeout = max(0.0, deadline - time.monotonic())
            finished, _ = await asyncio.wait(
                {task, *waiters}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if task in finished:
                task.result()  # the daemon ended on its own: surface why
                return True
            if not finished:
                status = daemon.conversation.status
                raise UserError(
                    f"the simulated conversation did not finish within {self.options.timeout_s:g} s "
                    f"(status: {status.text() if status else 'starting'})"
                )
            daemon.request_stop()
            await task
            return self.done.is_set()
        finally:
            for waiter in waiters:
                waiter.cancel()
            if not task.done():
                daemon.request_stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 5)

    # -- devices -------------------------------------------------------------------------------

    @property
    def _capture_period(self) -> int:
        return CAPTURE_RATE * self.settings.audio.period_ms // 1000

    @property
    def _playback_period(self) -> int:
        return PLAYBACK_RATE * self.settings.audio.period_ms // 1000

    def _open_capture(self) -> SimulatedCapture:
        if self.capture is not None:
            return self.capture.attach()
        audio = self.settings.audio
        # The card is asked for 16 kHz mono and negotiated like a real one; the schedule
        # and the pacing count pipeline samples, after any conversion.
        device, _format = open_capture_device(
            audio.capture_device,
            rate=CAPTURE_RATE,
            period_ms=audio.period_ms,
            device_rate=audio.capture_device_rate,
            device_channels=audio.capture_device_channels,
            channel=audio.capture_channel,
        )
        self.capture = SimulatedCapture(
            device,
            rate=CAPTURE_RATE,
            period_frames=self._capture_period,
            schedule=self.schedule,
            drive_button=self._drive_button,
            realtime=self.options.realtime,
            ready_for_press=self._ready_for_press,
        )
        return self.capture

    def _open_playback(self) -> ConvertingPlayback:
        audio = self.settings.audio

        def card_with_clock(pcm: Any, opened: OpenedFormat) -> SimulatedPlayback:
            if self.playback is None:
                self.playback = SimulatedPlayback(
                    pcm,
                    rate=opened.rate,
                    channels=opened.channels,
                    buffer_frames=opened.rate * audio.period_ms // 1000 * PLAYBACK_PERIODS,
                    paced=self.options.realtime,
                )
                self.speaker_format = opened
            else:
                pcm.close()  # a restarted daemon: the card (and its output file) lives on
            return self.playback

        device, _format = open_playback_device(
            audio.playback_device,
            rate=PLAYBACK_RATE,
            period_ms=audio.period_ms,
            periods=PLAYBACK_PERIODS,
            device_rate=audio.playback_device_rate,
            device_channels=audio.playback_device_channels,
            wrap=card_with_clock,
        )
        return device

    def _drive_button(self, pressed: bool) -> None:
        heard = self.playback.heard_frames() if self.playback is not None else 0
        self.button_edges.append((pressed, heard))
        if self.trace is not None:
            self.trace({"event": "button", "state": "pressed" if pressed else "released"})
        pin = self._pin_factory.pin(self.settings.button.pin)
        if pressed == self.settings.button.pull_up:
            pin.drive_low()
        else:
            pin.drive_high()

    def _ready_for_press(self, timeout: float) -> bool:
        daemon = self.daemon
        # The simulated user waiting for an answer is not a stalled microphone.
        heartbeat = daemon.heartbeats.get("capture")
        if heartbeat is not None:
            heartbeat.beat()
        return daemon.quiet.wait(timeout) and daemon.conversation.link_up

    def _edge_position(self) -> int:
        assert self.capture is not None
        return self.capture.edge_position_now()

    # -- observing the daemon ---------------------------------------------------------------------

    def _observe(self, event: Event) -> None:
        if isinstance(event, Captured):
            if self.capture is not None:
                if not self.options.realtime:
                    self.capture.frame_consumed()
                if self.capture.base + event.position + len(event.pcm) // 2 > self._final_position:
                    self._final_frame_seen = True
            self._frames_since_press += 1
            self._check_restart("utterance", self._presses, self._frames_since_press)
        elif isinstance(event, Pressed):
            self._presses += 1
            self._frames_since_press = 0
        elif isinstance(event, Released):
            self._releases += 1
            self._chunks_since_release = 0
        elif isinstance(event, ServerAudio):
            self._chunks_since_release += 1
            self._check_restart("reply", self._releases, self._chunks_since_release)
        if isinstance(event, TranscriptEvent | TurnComplete | ToolCallsReceived | ToolResult):
            self.transcript.observe(event)

    def _check_restart(self, kind: str, utterance: int, index: int) -> None:
        for trigger in self._restarts:
            if trigger.kind == kind and trigger.utterance == utterance and trigger.index == index:
                self._restarts.remove(trigger)
                self._restart.set()
                return

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


def _parse_fault(spec: str) -> Fault:
    from edgevoice.emulator import parse_fault

    try:
        fault = parse_fault(spec)
    except ValueError as exc:
        raise UserError(f"--fault: {exc}") from None
    if fault.kind == "restart" and fault.when is None:
        raise UserError(f"--fault {spec}: restart needs @utterance:N:frame:K or @reply:N:chunk:K")
    return fault


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


__all__ = ["AudioDeviceError", "SimulationOptions", "SimulationResult", "register", "simulate"]

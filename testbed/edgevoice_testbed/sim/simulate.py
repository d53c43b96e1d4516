"""``edgevoice simulate``: the whole daemon on simulated hardware, in one command.

The daemon is the production one. Its microphone and speaker are real pyalsaaudio PCMs on
libasound's file plugin (a WAV file in, a WAV file out), its button is a real gpiozero
``Button`` on a mock pin pressed by a schedule, and it talks to the embedded Live API
emulator over a real TLS websocket (or to Google's service with ``--live``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

import numpy as np
from gpiozero.pins.mock import MockFactory

from edgevoice.audio.alsa import AudioDeviceError, CaptureDevice, OpenedFormat, PlaybackDevice
from edgevoice.config import AudioSettings, Settings, deep_merge, load_settings, resolve_config_path
from edgevoice.core.connection import LinkState
from edgevoice.core.events import (
    Captured,
    Event,
    LinkUp,
    Pressed,
    Released,
    ServerAudio,
    ToolCallsReceived,
    ToolResult,
    TurnComplete,
)
from edgevoice.core.events import Transcript as TranscriptEvent
from edgevoice.errors import UserError
from edgevoice.live import sdk
from edgevoice.live.link import CredentialError
from edgevoice.live.trace import TraceFile, frame_record
from edgevoice.security.credentials import credential_source
from edgevoice.service.daemon import Daemon
from edgevoice.service.devices import CAPTURE_RATE, PLAYBACK_RATE, AlsaDevices
from edgevoice.service.logging import setup_logging
from edgevoice.service.watchdog import enable_crash_dumps
from edgevoice_testbed.sim.devices import ButtonSchedule, SimulatedCapture, SimulatedPlayback
from edgevoice_testbed.sim.fussy import FussyPluginError, asoundrc_for, to_device_format
from edgevoice_testbed.sim.wav import read_wav_as, write_wav

if TYPE_CHECKING:
    from edgevoice_testbed.emulator.faults import Fault, Trigger

SAMPLE_WAV = "sample.wav"
MIC_PCM = "edgevoice_mic"
SPEAKER_PCM = "edgevoice_speaker"
# Silence after the microphone file so the last release always has audio to land in.
TAIL_S = 0.5
# Presses may go on past the end of the file (the microphone then hears silence), but
# not so far that the silence would not fit in memory.
MAX_SILENCE_AFTER_S = 600.0


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
    if not args.timeout > 0:  # also refuses nan
        raise UserError(f"--timeout {args.timeout:g}: must be a number of seconds greater than 0")
    if args.out.is_dir():
        raise UserError(f"--out {args.out}: is a directory; give the name of a WAV file to write")
    if not args.out.absolute().parent.is_dir():
        raise UserError(f"--out {args.out}: the directory {args.out.absolute().parent} does not exist")
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

    def check(self) -> None:
        """Refuse a card no sound card could be, naming the option."""
        for option, value, low, high, unit in (
            ("--capture-device-rate", self.capture_rate, 8000, 192000, "Hz"),
            ("--playback-device-rate", self.playback_rate, 8000, 192000, "Hz"),
            ("--capture-device-channels", self.capture_channels, 1, 8, "channels"),
            ("--playback-device-channels", self.playback_channels, 1, 8, "channels"),
        ):
            if value is not None and not low <= value <= high:
                raise UserError(f"{option} {value}: must be between {low} and {high} {unit}")


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
    # KIND@WHEN specs (see edgevoice_testbed.emulator.faults); "restart" restarts the daemon itself.
    faults: list[str] = field(default_factory=list)
    # Set by tests and the benchmark: extra settings on top of the file, and an emulator
    # they started themselves (anything with base_url, write_ca(path) and inject_fault()).
    overrides: dict[str, Any] = field(default_factory=dict)
    emulator: Any = None
    # Set by the soak: restarts at moments it picks (see RunControl); a user who asks up
    # to this many questions while the device is offline instead of waiting for the link
    # (fast mode only); and only the running daemon kept, so that a long run holds no
    # stopped ones.
    control: RunControl | None = None
    press_while_offline: int = 0
    keep_daemons: bool = True


class RunControl:
    """A caller's hold on a running simulation: restart its daemon the way SIGTERM and a
    service restart do (the daemon ends the open utterance at that moment, persists its
    ledger and exits; a new one starts on the same state directory and devices), at a
    moment the caller describes rather than at a frame count.

    ``restart_when(moment)`` arms one restart: ``moment(daemon, event)`` is asked after
    the daemon has handled each event, and the restart happens at the first event for
    which it holds. Everything runs on the simulation's loop.
    """

    def __init__(self) -> None:
        self.restarts = 0
        self.presses = 0
        # Presses (by schedule order, from 0) held when a restart was asked for, or made
        # while one was under way: what of them the old daemon had not taken when the
        # signal came is heard by nobody.
        self.cut_presses: set[int] = set()
        # Presses (from 0) whose first sample a daemon's core took before it began to
        # stop: from there on it holds them, and must keep them across a restart. A press
        # cut at its very start (the signal came before its first period reached the
        # core) is heard from its start by nobody, as on a device whose service stops as
        # the button goes down.
        self.taken_presses: set[int] = set()
        self._run: _SimulatedRun | None = None
        self._armed: list[tuple[Callable[[Daemon, Event], bool], asyncio.Future[str]]] = []
        self._watched: list[tuple[Callable[[Daemon, Event], bool], asyncio.Future[None]]] = []
        self._press_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._running_waiters: list[asyncio.Future[None]] = []

    @property
    def daemon(self) -> Daemon | None:
        """The daemon running now (None before the first starts)."""
        return self._run.daemon if self._run is not None and self._run.daemons else None

    @property
    def held_press(self) -> int | None:
        """The press of the schedule (from 0) whose button is down now, if any."""
        return self._run._held_press if self._run is not None else None

    @property
    def last_press(self) -> int | None:
        """The latest press of the schedule (from 0) driven so far, held or released."""
        return self._run._presses_driven - 1 if self._run is not None and self._run._presses_driven else None

    def restart_when(self, moment: Callable[[Daemon, Event], bool]) -> asyncio.Future[str]:
        """Restart at the first event after which ``moment`` holds; the future gets the
        name of that event's type once the restart is requested."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._armed.append((moment, future))
        return future

    def when(self, moment: Callable[[Daemon, Event], bool]) -> asyncio.Future[None]:
        """Done at the first event after which ``moment`` holds for the running daemon
        (not one a restart is taking down); nothing else happens then."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watched.append((moment, future))
        return future

    async def presses_reach(self, count: int) -> None:
        """Return once the simulated user has pressed the button ``count`` times."""
        if self.presses >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._press_waiters.append((count, future))
        await future

    async def running(self) -> None:
        """Return once a daemon runs that no restart is taking down and it listens: after a
        restart, the new one. Whatever the caller does next (a fault, another restart)
        then reaches that daemon, not one on its way out."""
        run = self._run
        if run is not None and run.daemons and run.may_restart() and run.daemon.ready.is_set():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running_waiters.append(future)
        await future

    def disarm(self) -> None:
        for _, future in self._armed:
            future.cancel()
        self._armed.clear()

    def _note_taken(self, daemon: Daemon, event: Captured) -> None:
        run = self._run
        capture = run.devices.capture if run is not None else None
        if capture is None or daemon is not run.daemon:  # type: ignore[union-attr]
            return
        if daemon.conversation.connection_state is LinkState.STOPPED:
            return  # handed over after the stop: the core no longer takes audio
        start = capture.base + event.position
        end = start + len(event.pcm) // 2
        starts = run._press_starts  # type: ignore[union-attr]
        index = bisect.bisect_left(starts, start)
        while index < len(starts) and starts[index] < end:
            self.taken_presses.add(index)
            index += 1

    def _observe(self, daemon: Daemon, event: Event) -> None:
        if isinstance(event, Captured):
            self._note_taken(daemon, event)
        if isinstance(event, Pressed):
            self.presses += 1
            for waiter in [w for w in self._press_waiters if w[0] <= self.presses]:
                self._press_waiters.remove(waiter)
                if not waiter[1].done():
                    waiter[1].set_result(None)
        run = self._run
        if run is None or daemon is not run.daemon or not run.may_restart():
            return  # a daemon on its way out, or a restart already under way
        if daemon.ready.is_set() and self._running_waiters:
            waiters, self._running_waiters = self._running_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        for watched in list(self._watched):
            moment, waiter = watched
            if waiter.done() or moment(daemon, event):
                self._watched.remove(watched)
                if not waiter.done():
                    waiter.set_result(None)
        for armed in list(self._armed):
            moment, future = armed
            if future.done():
                self._armed.remove(armed)
            elif moment(daemon, event):
                self._armed.remove(armed)
                run.request_restart()
                self.restarts += 1
                future.set_result(type(event).__name__)
                return


@dataclass
class SimulationResult:
    transcript: list[str]
    output_seconds: float
    daemon: Daemon
    # (pressed, frames of speaker output already heard at that instant), per button edge.
    button_edges: list[tuple[bool, int]] = field(default_factory=list)
    # Every daemon of the run: more than one after a ``restart`` fault (only the last
    # with ``keep_daemons`` False).
    daemons: list[Daemon] = field(default_factory=list)
    restarts: int = 0


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
    recorded_s = len(mic_audio) / CAPTURE_RATE
    if schedule.last_position / CAPTURE_RATE > recorded_s + MAX_SILENCE_AFTER_S:
        start, end = max(presses, key=lambda press: press[1])
        raise UserError(
            f"--press {start:.10g}:{end:.10g} ends {end - recorded_s:.1f} s after the {recorded_s:.1f} s "
            f"recording; a press may end at most {MAX_SILENCE_AFTER_S:g} s after it"
        )
    options.card.check()
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
    # libasound reads this when a PCM is opened and notices when it changes; the process's
    # own value comes back when the simulation ends.
    with _environment_variable("ALSA_CONFIG_PATH", f"/usr/share/alsa/alsa.conf:{asoundrc}"):
        return await _simulate_with_card(scratch, options, stdout, handle_signals, schedule, speaker_raw)


async def _simulate_with_card(
    scratch: Path,
    options: SimulationOptions,
    stdout: TextIO | None,
    handle_signals: bool,
    schedule: ButtonSchedule,
    speaker_raw: Path,
) -> SimulationResult:
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
        else:
            emulator = options.emulator
            if emulator is None:
                emulator = await stack.enter_async_context(_start_emulator(options.scenario))
            for fault in server_faults:
                emulator.inject_fault(fault)
            # The daemon trusts the emulator the way a user would: through live.ca_file.
            ca_file = emulator.write_ca(scratch / "emulator-ca.pem")
            settings = settings.model_copy(
                update={
                    "live": settings.live.model_copy(
                        update={"base_url": emulator.base_url, "ca_file": Path(ca_file)}
                    )
                }
            )
            # The configured key if there is one (the emulator keeps only a fingerprint).
            key = settings.gemini_api_key
            api_key = key.get_secret_value() if key is not None else "simulated-key"

        async def credentials() -> str:
            if not api_key:
                raise CredentialError("no API key")
            return api_key

        if settings.auth.mode == "token_broker":
            credentials = credential_source(settings)  # type: ignore[assignment]

        trace = stack.enter_context(_trace_writer(options.trace))
        run = _SimulatedRun(settings, schedule, options, trace, stdout, restarts)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, run.done.set)
        await run.run(credentials)
        daemon = run.daemon

    out_pcm = await asyncio.to_thread(speaker_raw.read_bytes)
    speaker = run.devices.speaker_format
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
        run.restarts,
    )


class SimulatedDevices(AlsaDevices):
    """The simulator's hardware, behind the daemon's usual seam.

    The PCMs are opened exactly as on a device (:class:`AlsaDevices`, on libasound's file
    plugin); the simulator only puts its clock between them and the daemon, and gives the
    button and LED a gpiozero mock pin factory. The card outlives a daemon: after a
    ``restart`` fault the next daemon reads on from where the last one stopped.
    """

    # The simulated card hands over periods as the simulator feeds them: no read-ahead.
    capture_read_ahead = 0

    def __init__(
        self,
        audio: AudioSettings,
        schedule: ButtonSchedule,
        *,
        realtime: bool,
        drive_button: Callable[[bool], None],
        ready_for_press: Callable[[float], bool],
    ) -> None:
        super().__init__(audio, pin_factory=MockFactory())
        self.paced_playback = realtime
        # In fast mode the simulated microphone runs ahead of the clock on purpose.
        self.paced_capture = realtime
        self._schedule = schedule
        self._drive_button = drive_button
        self._ready_for_press = ready_for_press
        self.capture: SimulatedCapture | None = None
        self.playback: SimulatedPlayback | None = None
        self.speaker_format: OpenedFormat | None = None

    def open_capture(self) -> CaptureDevice:
        if self.capture is not None:
            return self.capture.attach()
        return super().open_capture()

    def wrap_capture(self, device: CaptureDevice, opened: OpenedFormat) -> CaptureDevice:
        # The card is asked for 16 kHz mono and negotiated like a real one; the schedule
        # and the pacing count pipeline samples, after any conversion.
        self.capture = SimulatedCapture(
            device,
            rate=CAPTURE_RATE,
            period_frames=self.capture_period_frames,
            schedule=self._schedule,
            drive_button=self._drive_button,
            realtime=self.paced_playback,
            ready_for_press=self._ready_for_press,
        )
        return self.capture

    def wrap_playback(self, pcm: PlaybackDevice, opened: OpenedFormat) -> PlaybackDevice:
        if self.playback is not None:
            pcm.close()  # a restarted daemon: the card (and its output file) lives on
            return self.playback
        self.playback = SimulatedPlayback(
            pcm,
            rate=opened.rate,
            channels=opened.channels,
            buffer_frames=opened.buffer_frames,
            paced=self.paced_playback,
        )
        self.speaker_format = opened
        return self.playback

    def edge_position(self) -> int | None:
        assert self.capture is not None
        return self.capture.edge_position_now()

    def heard_frames(self) -> int:
        return self.playback.heard_frames() if self.playback is not None else 0

    def shutdown(self) -> None:
        for device in (self.capture, self.playback):
            if device is not None:
                device.shutdown()


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
        self.devices = SimulatedDevices(
            settings.audio,
            schedule,
            realtime=options.realtime,
            drive_button=self._drive_button,
            ready_for_press=self._ready_for_press,
        )
        self.button_edges: list[tuple[bool, int]] = []
        self._edge_lock = threading.Lock()
        self._held_press: int | None = None  # the schedule's press held now, from 0
        # Where each press starts, in microphone samples, in schedule order.
        self._press_starts = [edge.position for edge in schedule.edges if edge.pressed]
        self._presses_driven = 0
        self.daemons: list[Daemon] = []
        self.restarts = 0
        self.control = options.control
        if self.control is not None:
            self.control._run = self
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

    @property
    def daemon(self) -> Daemon:
        return self.daemons[-1]

    def build_daemon(self, credentials: Callable[[], Any]) -> Daemon:
        daemon = Daemon(self.settings, self.devices, credentials=credentials)
        daemon.watchers.append(self._observe)
        daemon.watchers.append(lambda _event: self._check_done(daemon))
        if self.control is not None:
            control = self.control
            daemon.watchers.append(lambda event: control._observe(daemon, event))
        if not self.options.keep_daemons:
            self.daemons.clear()
        self.daemons.append(daemon)
        return daemon

    def may_restart(self) -> bool:
        """False while the run is ending or a restart is already under way."""
        return not self.done.is_set() and not self._restart.is_set()

    def request_restart(self) -> None:
        """Stop the running daemon as SIGTERM does and start a new one."""
        with self._edge_lock:
            self._restart.set()
            if self._held_press is not None and self.control is not None:
                self.control.cut_presses.add(self._held_press)

    async def run(self, credentials: Callable[[], Any]) -> None:
        if self.trace is not None:
            trace = self.trace
            sdk.set_frame_observer(lambda direction, frame, _t: trace(frame_record(direction, frame)))
        deadline = time.monotonic() + self.options.timeout_s
        try:
            while True:
                daemon = self.build_daemon(credentials)
                if await self._run_until_done_or_restart(daemon, deadline):
                    return
                self.restarts += 1
                if self.trace is not None:
                    self.trace({"event": "restart"})
        finally:
            sdk.set_frame_observer(None)
            self.devices.shutdown()

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

    # -- the simulated user -------------------------------------------------------------------

    def _drive_button(self, pressed: bool) -> None:
        with self._edge_lock:
            if pressed:
                self._held_press = self._presses_driven
                self._presses_driven += 1
                if self._restart.is_set() and self.control is not None:
                    self.control.cut_presses.add(self._held_press)
            else:
                self._held_press = None
        heard = self.devices.heard_frames()
        self.button_edges.append((pressed, heard))
        if self.trace is not None:
            self.trace({"event": "button", "state": "pressed" if pressed else "released"})
        pin = self.devices.pin_factory.pin(self.settings.button.pin)
        if pressed == self.settings.button.pull_up:
            pin.drive_low()
        else:
            pin.drive_high()
        # A mock pin keeps every change it saw (for gpiozero's assertions, which the
        # button's pin never needs): a long run would hold thousands.
        pin.clear_states()

    def _ready_for_press(self, timeout: float) -> bool:
        daemon = self.daemon
        # The simulated user waiting for an answer is not a stalled microphone.
        heartbeat = daemon.heartbeats.get("capture")
        if heartbeat is not None:
            heartbeat.beat()
        conversation = daemon.conversation
        if (
            daemon.ready.is_set()
            and not conversation.link_up
            and conversation.connection_state is not LinkState.STOPPED  # not a daemon on its way out
            and not self._restart.is_set()
            and conversation.pending_utterances < self.options.press_while_offline
        ):
            # Offline: this user asks anyway, a few things, and the device keeps them.
            return True
        # Not while a restart is under way: the daemon that would hear it is stopping.
        return daemon.quiet.wait(timeout) and conversation.link_up and not self._restart.is_set()

    # -- observing the daemon ---------------------------------------------------------------------

    def _observe(self, event: Event) -> None:
        counter = self._COUNTERS.get(type(event))
        if counter is not None:
            counter(self, event)
        self.transcript.observe(event)

    def _count_frame(self, event: Captured) -> None:
        capture = self.devices.capture
        # The daemon joins a hand-over's consecutive periods into one event: count periods.
        periods = 1
        if capture is not None:
            periods = max(1, len(event.pcm) // (2 * capture.period_frames))
            if not self.options.realtime:
                for _ in range(periods):
                    capture.frame_consumed()
            if capture.base + event.position + len(event.pcm) // 2 > self._final_position:
                self._final_frame_seen = True
        for _ in range(periods):
            self._frames_since_press += 1
            self._check_restart("utterance", self._presses, self._frames_since_press)

    def _count_press(self, event: Pressed) -> None:
        self._presses += 1
        self._frames_since_press = 0

    def _count_release(self, event: Released) -> None:
        self._releases += 1
        self._chunks_since_release = 0

    def _count_chunk(self, event: ServerAudio) -> None:
        self._chunks_since_release += 1
        self._check_restart("reply", self._releases, self._chunks_since_release)

    _COUNTERS: ClassVar[dict[type, Callable[[_SimulatedRun, Any], None]]] = {
        Captured: _count_frame,
        Pressed: _count_press,
        Released: _count_release,
        ServerAudio: _count_chunk,
    }

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
        printer = self._PRINTERS.get(type(event))
        if printer is not None:
            printer(self, event)

    def _tool_calls(self, event: ToolCallsReceived) -> None:
        for call in event.calls:
            arguments = ", ".join(f"{k}={v!r}" for k, v in call.args.items())
            self._emit(f"tool call: {call.name}({arguments})  [id {call.id}]")

    def _tool_result(self, event: ToolResult) -> None:
        self._emit(
            f"tool result: {event.name} -> {json.dumps(event.response, sort_keys=True)}"
            f"  [id {event.id}, scheduling {event.scheduling}]"
        )

    def _transcript(self, event: TranscriptEvent) -> None:
        if event.role == "user":
            self._emit(f"you: {event.text}")
        else:
            self._model.append(event.text)

    def _turn_complete(self, event: TurnComplete) -> None:
        if self._model:
            self._emit(f"assistant: {''.join(self._model).strip()}")
            self._model.clear()

    def _new_connection(self, event: LinkUp) -> None:
        # Words of a reply cut by the end of the last connection are not half of the next.
        self._model.clear()

    _PRINTERS: ClassVar[dict[type, Callable[[_TranscriptPrinter, Any], None]]] = {
        ToolCallsReceived: _tool_calls,
        ToolResult: _tool_result,
        TranscriptEvent: _transcript,
        TurnComplete: _turn_complete,
        LinkUp: _new_connection,
    }

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if self._stdout is not None:
            print(line, file=self._stdout, flush=True)


@contextlib.contextmanager
def _environment_variable(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for a while, then give the process its own back."""
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


@contextlib.asynccontextmanager
async def _start_emulator(scenario_path: Path | None) -> Any:
    from edgevoice_testbed.emulator import Emulator, Scenario
    from edgevoice_testbed.emulator.scenario import ScenarioError

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
    try:
        trace = TraceFile.open(path)
    except OSError as exc:
        raise UserError(f"cannot write the trace file {path}: {exc.strerror}") from None
    # Written from the loop (frames) and the button thread (edges): TraceFile locks.
    with trace:
        yield trace.write


def _parse_fault(spec: str) -> Fault:
    from edgevoice_testbed.emulator import parse_fault

    try:
        fault = parse_fault(spec)
    except ValueError as exc:
        raise UserError(f"--fault: {exc}") from None
    if fault.kind == "restart" and fault.when is None:
        raise UserError(f"--fault {spec}: restart needs @utterance:N:frame:K or @reply:N:chunk:K")
    return fault


def _sample_utterance() -> np.ndarray:
    with resources.as_file(resources.files("edgevoice_testbed.sim") / "data" / SAMPLE_WAV) as path:
        return read_wav_as(path, CAPTURE_RATE)


__all__ = ["AudioDeviceError", "RunControl", "SimulationOptions", "SimulationResult", "register", "simulate"]

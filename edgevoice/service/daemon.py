"""The daemon's wiring: devices, button, Live link and tools around the conversation core.

Read :meth:`Daemon.run` as the wiring diagram of the device. Every happening becomes an
event handed to the core on the event loop; every decision comes back as an action that an
adapter carries out without waiting. Threads exist only at the blocking ALSA calls (capture
and playback) and in gpiozero's callback thread; they reach the loop with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from google.genai import types
from gpiozero.exc import GPIOZeroError

from edgevoice.audio.alsa import AudioDeviceError, CaptureDevice, PlaybackDevice
from edgevoice.audio.capture import Microphone
from edgevoice.audio.devices import open_capture as open_capture_device
from edgevoice.audio.devices import open_playback as open_playback_device
from edgevoice.audio.earcons import Earcons
from edgevoice.audio.jitter import JitterBuffer
from edgevoice.audio.playback import Speaker
from edgevoice.bench.probe import NullProbe, Probe
from edgevoice.config import Settings
from edgevoice.core.backoff import Backoff
from edgevoice.core.conversation import Conversation, ConversationConfig
from edgevoice.core.events import (
    Action,
    CancelTools,
    Captured,
    CloseLink,
    Connect,
    DeviceProblem,
    EndOfReply,
    Event,
    GenerationComplete,
    GoAway,
    Interrupted,
    LinkDown,
    LinkUp,
    Log,
    NetworkChanged,
    PersistHandle,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    RunTool,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    Status,
    StopPlayback,
    Tick,
    ToolCall,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.errors import UserError
from edgevoice.hardware.button import PushToTalkButton
from edgevoice.hardware.led import StatusLed
from edgevoice.live.handle_store import HandleStore
from edgevoice.live.link import CredentialSource, LiveLink
from edgevoice.live.netwatch import NetworkWatch
from edgevoice.service.logging import clear_log_fields, set_log_fields
from edgevoice.service.notify import SystemdNotifier
from edgevoice.service.watchdog import DEFAULT_STALL_AFTER_S, Heartbeat, WatchdogPolicy, run_watchdog

log = logging.getLogger("edgevoice")
transcript_log = logging.getLogger("edgevoice.transcript")

CAPTURE_RATE = 16000
PLAYBACK_RATE = 24000


class Toolbox(Protocol):
    """What the daemon needs from the tools room (:class:`edgevoice.tools.ToolBox`)."""

    def declarations(self) -> list[types.FunctionDeclaration]: ...
    def start(self, call: types.FunctionCall, on_done: Callable[[Any], None]) -> None: ...
    def cancel(self, ids: Iterable[str]) -> list[str]: ...
    def describe_state(self) -> str: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: Any) -> Any: ...


@dataclass
class Hardware:
    """How the daemon reaches its devices: ALSA and GPIO, or the simulator's stand-ins."""

    open_capture: Callable[[], CaptureDevice]
    open_playback: Callable[[], PlaybackDevice]
    playback_buffer_frames: int
    # False for a simulated sink that plays instantly: never feed it invented silence.
    paced_playback: bool = True
    # False for a simulated microphone that runs ahead of the clock on purpose; a real
    # device that does not block is read at the clock's pace.
    paced_capture: bool = True
    pin_factory: object | None = None
    # The simulator knows the exact sample of a button edge; None: the capture clock says.
    edge_position: Callable[[], int] | None = None


# Capture periods handed to the loop together while no utterance is open (100 ms at 20 ms
# periods): the pre-roll history does not need them sooner, and a press flushes them.
IDLE_CAPTURE_BATCH = 5

# Two periods in the card: enough to ride scheduling jitter, little enough that a barge-in
# has almost nothing to cut.
PLAYBACK_PERIODS = 2


def alsa_hardware(settings: Settings) -> Hardware:
    """The board's sound card(s), opened at whatever format they accept."""
    audio = settings.audio

    def open_capture() -> CaptureDevice:
        device, _format = open_capture_device(
            audio.capture_device,
            rate=CAPTURE_RATE,
            period_ms=audio.period_ms,
            device_rate=audio.capture_device_rate,
            device_channels=audio.capture_device_channels,
            channel=audio.capture_channel,
        )
        return device

    def open_playback() -> PlaybackDevice:
        device, _format = open_playback_device(
            audio.playback_device,
            rate=PLAYBACK_RATE,
            period_ms=audio.period_ms,
            periods=PLAYBACK_PERIODS,
            device_rate=audio.playback_device_rate,
            device_channels=audio.playback_device_channels,
        )
        return device

    playback_period = PLAYBACK_RATE * audio.period_ms // 1000
    return Hardware(open_capture, open_playback, playback_buffer_frames=playback_period * PLAYBACK_PERIODS)


def default_earcons(settings: Settings) -> Callable[[str], bytes | None] | None:
    if not settings.audio.earcons:
        return None
    return Earcons(True, settings.audio.disabled_earcons).get


class Daemon:
    def __init__(
        self,
        settings: Settings,
        hardware: Hardware,
        *,
        credentials: CredentialSource,
        ssl_context: ssl.SSLContext | None = None,
        toolbox: Toolbox | None = None,
        notifier: SystemdNotifier | None = None,
        probe: Probe | None = None,
        earcons_factory: Callable[[Settings], Callable[[str], bytes | None] | None] | None = default_earcons,
        observers: Iterable[Callable[[Event], None]] = (),
        handle_store: HandleStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hardware = hardware
        self._credentials = credentials
        self._ssl_context = ssl_context
        self.toolbox = toolbox
        # A no-op outside systemd (NOTIFY_SOCKET unset); the watchdog still logs stalls.
        self.notifier = notifier or SystemdNotifier()
        self.heartbeats: dict[str, Heartbeat] = {}
        self._session_id: str | None = None
        self.probe = probe or NullProbe()
        self._earcons_factory = earcons_factory
        self._earcons = earcons_factory(settings) if earcons_factory else None
        self._observers = list(observers)
        self.handle_store = handle_store or HandleStore(settings.paths.state_dir)
        self._clock = clock
        audio = settings.audio
        self.capture_period = CAPTURE_RATE * audio.period_ms // 1000
        self.playback_period = PLAYBACK_RATE * audio.period_ms // 1000
        live = settings.live
        self.conversation = Conversation(
            ConversationConfig(
                rate=CAPTURE_RATE,
                period_samples=self.capture_period,
                preroll_samples=CAPTURE_RATE * audio.preroll_ms // 1000,
                max_utterance_samples=int(CAPTURE_RATE * live.max_utterance_s),
                offline_max_age_s=live.offline_max_age_s,
                reply_timeout_s=live.reply_timeout_s,
            ),
            Backoff(live.reconnect_initial_s, live.reconnect_max_s),
        )
        # Set whenever nothing is in flight (the simulator waits on it between turns).
        self.quiet = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self.microphone: Microphone | None = None
        self.speaker: Speaker | None = None
        self.link: LiveLink | None = None
        self.button: PushToTalkButton | None = None
        self.ready = threading.Event()
        self.led: StatusLed | None = None
        # Called after every event the core has handled (the simulator's end-of-run check).
        self.after_dispatch: list[Callable[[], None]] = []
        self._model_words: list[str] = []
        self._capturing = True  # so the first dispatch switches the microphone to batches

    # -- thread-safe entry points -------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Hand an event to the loop from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, event)

    def _post_captured(self, periods: list[tuple[int, bytes, float]]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch_captured, periods)

    def _dispatch_captured(self, periods: list[tuple[int, bytes, float]]) -> None:
        for position, pcm, t in periods:
            self._dispatch(Captured(position, pcm, t))

    def request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    # -- the wiring -----------------------------------------------------------------------------

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        capture_device, playback_device = self._open_devices()

        self.microphone, self.speaker = self._make_audio()
        declarations = self.toolbox.declarations() if self.toolbox is not None else []
        self.link = LiveLink(
            self.settings.live,
            credentials=self._credentials,
            post=self._post_from_loop,
            function_declarations=declarations,
            ssl_context=self._ssl_context,
            probe=self.probe,
            clock=self._clock,
        )
        try:
            self.button = self._make_button()
            self.led = self._make_led()
        except UserError:
            for resource in (self.button, capture_device, playback_device):
                if resource is not None:
                    _close_quietly(resource)
            raise

        self.conversation.resume_handle = self.handle_store.load()
        try:
            async with contextlib.AsyncExitStack() as resources, asyncio.TaskGroup() as tasks:
                if self.toolbox is not None:
                    await resources.enter_async_context(self.toolbox)
                tasks.create_task(self.link.run(), name="live-link")
                self._start_audio(capture_device, playback_device)
                network = NetworkWatch(lambda: self._dispatch(NetworkChanged(self._clock())))
                resources.callback(network.close)
                network.start()
                watchdog = tasks.create_task(
                    run_watchdog(self.notifier, self.heartbeats, policy=_watchdog_policy(self.notifier)),
                    name="watchdog",
                )
                self._execute(self.conversation.start(self._clock()))
                if self.button.is_pressed:
                    # Held through a restart: the user is talking now.
                    self.post(Pressed(0, self._clock()))
                status = self.conversation.status
                self.notifier.ready(status.text() if status else None)
                self.ready.set()
                log.info("ready: push the button to talk")
                await self._stop.wait()
                await self._shutdown()
                watchdog.cancel()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.button.close()
            if self.led is not None:
                self.led.close()
            await asyncio.to_thread(self.microphone.stop)
            await asyncio.to_thread(self.speaker.stop)
            clear_log_fields()
            self._loop = None
        return 0

    def _make_audio(self) -> tuple[Microphone, Speaker]:
        audio = self.settings.audio
        self.capture_period = CAPTURE_RATE * audio.period_ms // 1000
        self.playback_period = PLAYBACK_RATE * audio.period_ms // 1000
        # The same dict object for the watchdog task's whole life: replaced in place.
        self.heartbeats["capture"] = capture_beat = Heartbeat()
        self.heartbeats["playback"] = playback_beat = Heartbeat()
        microphone = Microphone(
            self.hardware.open_capture,
            rate=CAPTURE_RATE,
            period_frames=self.capture_period,
            on_frames=self._post_captured,
            on_problem=lambda problem: self.post(DeviceProblem("microphone", problem, self._clock())),
            heartbeat=capture_beat.beat,
            paced=self.hardware.paced_capture,
        )
        speaker = Speaker(
            self.hardware.open_playback,
            rate=PLAYBACK_RATE,
            period_frames=self.playback_period,
            buffer_frames=self.hardware.playback_buffer_frames,
            jitter=JitterBuffer(PLAYBACK_RATE, audio.prebuffer_ms, audio.fade_ms, audio.volume),
            paced=self.hardware.paced_playback,
            fade_ms=audio.fade_ms,
            on_idle=lambda: self.post(PlaybackIdle(self._clock())),
            on_problem=lambda problem: self.post(DeviceProblem("speaker", problem, self._clock())),
            heartbeat=playback_beat.beat,
            probe=self.probe,
        )
        return microphone, speaker

    def _start_audio(
        self, capture: CaptureDevice | None = None, playback: PlaybackDevice | None = None
    ) -> None:
        assert self.microphone is not None and self.speaker is not None
        self.microphone.start(capture)
        self.speaker.start(playback)
        # A thread that dies counts as stalled, not as quietly idle.
        self.heartbeats["capture"].attach_thread(self.microphone.thread)
        self.heartbeats["playback"].attach_thread(self.speaker.thread)

    def _open_devices(self) -> tuple[CaptureDevice, PlaybackDevice]:
        """Open both devices before reporting ready, so a wrong name fails loudly at start."""
        try:
            capture = self.hardware.open_capture()
        except AudioDeviceError as exc:
            raise UserError(str(exc)) from None
        try:
            playback = self.hardware.open_playback()
        except AudioDeviceError as exc:
            _close_quietly(capture)
            raise UserError(str(exc)) from None
        return capture, playback

    async def reload(
        self,
        settings: Settings,
        hardware: Hardware | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> list[str]:
        """Apply a new configuration, keeping the conversation where the change allows.

        A change of the Live settings starts a new session (told the recent exchanges);
        anything else keeps it. ``hardware`` replaces the devices when their settings
        changed; ``ssl_context``, built from the new settings, is used from the next
        connection on. Returns the sections that changed.
        """
        old, self.settings = self.settings, settings
        assert self.link is not None and self.speaker is not None and self.microphone is not None
        changed = [name for name, _ in settings if getattr(settings, name) != getattr(old, name)]
        self._ssl_context = ssl_context
        self.link.use_ssl_context(ssl_context)
        if settings.live != old.live:
            self.link.update_settings(settings.live)
            self._execute(self.conversation.new_session(self._clock(), "the Live settings changed"))
        if settings.audio.volume != old.audio.volume:
            self.speaker.jitter.volume = settings.audio.volume
        if (settings.audio.earcons, settings.audio.disabled_earcons) != (
            old.audio.earcons,
            old.audio.disabled_earcons,
        ) and self._earcons_factory is not None:
            self._earcons = self._earcons_factory(settings)
        if hardware is not None and _device_settings(settings) != _device_settings(old):
            await self._replace_audio(hardware)
        if settings.button != old.button:
            assert self.button is not None
            self.button.close()
            self.button = self._make_button()
        return changed

    def _stamp_and_post(self, post: Callable[[int], None]) -> None:
        assert self.microphone is not None
        self.microphone.stamp_and_post(post, self.hardware.edge_position)

    def _make_led(self) -> StatusLed:
        led = self.settings.led
        try:
            return StatusLed(led.pin, led.pwm, self.hardware.pin_factory)
        except (GPIOZeroError, OSError, ValueError) as exc:
            raise UserError(f"the status LED on BCM pin {led.pin} cannot be used: {exc}") from None

    def _make_button(self) -> PushToTalkButton:
        assert self.microphone is not None
        button = self.settings.button
        return PushToTalkButton(
            button.pin,
            pull_up=button.pull_up,
            bounce_time_s=(button.bounce_time_ms or 0) / 1000 or None,
            stamp_and_post=self._stamp_and_post,
            on_edge=self._on_button_edge,
            pin_factory=self.hardware.pin_factory,
        )

    async def _replace_audio(self, hardware: Hardware) -> None:
        assert self.microphone is not None and self.speaker is not None
        await asyncio.to_thread(self.microphone.stop)
        await asyncio.to_thread(self.speaker.stop)
        self.hardware = hardware
        self.microphone, self.speaker = self._make_audio()
        self._start_audio()

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        self._execute(self.conversation.stop(self._clock()))
        assert self.link is not None
        await self.link.shutdown()
        try:
            self.handle_store.touch()
        except OSError as exc:
            log.warning("could not record the session's last activity: %s", exc)

    # -- events in, actions out -------------------------------------------------------------

    def _post_from_loop(self, event: Event) -> None:
        # Deferred, so an adapter never re-enters the core from inside an action.
        loop = self._loop
        if loop is not None:
            loop.call_soon(self._dispatch, event)

    def _on_button_edge(self, pressed: bool, position: int, t: float) -> None:
        self.post(Pressed(position, t) if pressed else Released(position, t))

    def _dispatch(self, event: Event) -> None:
        if (
            isinstance(event, LinkUp)
            and event.link == self.conversation.link
            and (not event.resumed or self._session_id is None)
        ):
            self._session_id = uuid.uuid4().hex[:8]
            set_log_fields(session_id=self._session_id)
        if isinstance(event, Transcript | TurnComplete | GenerationComplete | Interrupted):
            self._log_transcript(event)
        for observer in self._observers:
            observer(event)
        if isinstance(event, LinkUp | LinkDown | GoAway) and event.link == self.conversation.link:
            self.probe.link_event(event)  # reconnect and GoAway-switch timing for the benchmark
        try:
            self._execute(self.conversation.handle(event))
        except Exception:
            # A bug must not leave the device deaf: log it with its stack and go on with
            # the next event (the core's state stays as it was before this one, or close).
            log.exception("internal error while handling %s", type(event).__name__)
        if self.conversation.idle and self.conversation.link_up:
            self.quiet.set()
        else:
            self.quiet.clear()
        self._arm_timer()
        capturing = self.conversation.capturing
        if capturing != self._capturing and self.microphone is not None:
            self._capturing = capturing
            self.microphone.batch = 1 if capturing else IDLE_CAPTURE_BATCH
        for callback in self.after_dispatch:
            callback()

    def _log_transcript(self, event: Event) -> None:
        # The model's words arrive in fragments: one log line per answer reads better.
        if isinstance(event, Transcript):
            if event.role == "user":
                transcript_log.info("you: %s", event.text)
            else:
                self._model_words.append(event.text)
        elif self._model_words:
            transcript_log.info("assistant: %s", "".join(self._model_words).strip())
            self._model_words.clear()

    def _arm_timer(self) -> None:
        deadline = self.conversation.next_deadline()
        if deadline == self._timer_deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = None
        self._dispatch(Tick(self._clock()))

    def _execute(self, actions: list[Action]) -> None:
        link, speaker = self.link, self.speaker
        assert link is not None and speaker is not None
        for action in actions:
            if isinstance(
                action, SendAudio | SendActivityStart | SendActivityEnd | SendToolResponses | SendContext
            ):
                link.send(action)
                if isinstance(action, SendActivityStart):
                    set_log_fields(turn_id=action.utterance)
            elif isinstance(action, PlayAudio):
                speaker.play(action.pcm, action.received_t)
            elif isinstance(action, EndOfReply):
                speaker.end_of_reply()
            elif isinstance(action, StopPlayback):
                speaker.interrupt(action.pressed_t)
            elif isinstance(action, Connect):
                link.connect(action)
            elif isinstance(action, CloseLink):
                self.probe.link_closed(self._clock())
                link.close(action)
            elif isinstance(action, PlayEarcon):
                pcm = self._earcons(action.earcon.value) if self._earcons else None
                if pcm:
                    speaker.earcon(pcm)
            elif isinstance(action, RunTool):
                self._run_tool(action.call)
            elif isinstance(action, CancelTools):
                if self.toolbox is not None:
                    self.toolbox.cancel(action.ids)
            elif isinstance(action, PersistHandle):
                try:
                    self.handle_store.save(action.handle)
                except OSError as exc:
                    log.warning("could not save the session handle: %s", exc)
            elif isinstance(action, Status):
                self._show_status(action)
            elif isinstance(action, Log):
                log.log(action.level, action.message)

    def _show_status(self, status: Status) -> None:
        set_log_fields(state=status.state.value)
        if self.led is not None:
            self.led.show(status.state.value)
        log.info("status: %s", status.text())
        self.notifier.status(status.text())

    def _run_tool(self, call: ToolCall) -> None:
        def done(outcome: Any) -> None:
            self._post_from_loop(
                ToolResult(outcome.id, outcome.name, outcome.response, outcome.scheduling, self._clock())
            )

        if self.toolbox is None:
            self._post_from_loop(
                ToolResult(
                    call.id,
                    call.name,
                    {"ok": False, "error": "this device has no smart-home functions configured"},
                    "INTERRUPT",
                    self._clock(),
                )
            )
            return
        self.toolbox.start(types.FunctionCall(id=call.id, name=call.name, args=call.args), done)


def _watchdog_policy(notifier: SystemdNotifier) -> WatchdogPolicy:
    # A stall must be noticed (and the ping withheld) well before systemd's own timeout.
    stall_after = DEFAULT_STALL_AFTER_S
    if notifier.watchdog_usec:
        stall_after = min(stall_after, notifier.watchdog_usec / 1e6 / 2)
    return WatchdogPolicy(stall_after_s=stall_after)


def _device_settings(settings: Settings) -> tuple[object, ...]:
    audio = settings.audio
    return (
        audio.capture_device,
        audio.playback_device,
        audio.period_ms,
        audio.capture_device_rate,
        audio.capture_device_channels,
        audio.capture_channel,
        audio.playback_device_rate,
        audio.playback_device_channels,
        audio.prebuffer_ms,
        audio.fade_ms,
    )


def _close_quietly(device: Any) -> None:
    try:
        device.close()
    except Exception:
        log.debug("closing a device failed", exc_info=True)

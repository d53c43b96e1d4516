"""The daemon's wiring: devices, button, Live link and tools around the conversation core.

Read :meth:`Daemon.run` as the wiring diagram of the device. Every happening becomes an
event handed to the core on the event loop; every decision comes back as an action that an
adapter carries out without waiting (one handler per action type, in :data:`_ACTIONS`).
Threads exist only at the blocking ALSA calls (capture and playback) and in gpiozero's
callback thread; they reach the loop with ``call_soon_threadsafe``.

The hardware comes in through a :class:`~edgevoice.service.devices.Devices` object, the
smart-home tools through a factory, so production, tests and the simulator wire the same
daemon. :meth:`Daemon.reload` builds the new parts from new settings, then swaps them.
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
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from gpiozero.exc import GPIOZeroError

from edgevoice.audio.alsa import SAMPLE_BYTES, AudioDeviceError, CaptureDevice, PlaybackDevice
from edgevoice.audio.capture import Microphone, contiguous_runs
from edgevoice.audio.earcons import Earcons
from edgevoice.audio.jitter import AdaptiveTarget, JitterBuffer
from edgevoice.audio.playback import Speaker
from edgevoice.config import LiveSettings, Settings
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
    PersistLedger,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    RunTool,
    SavedLedger,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    Status,
    StopPlayback,
    Tick,
    ToolCall,
    ToolDeclarationsChanged,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.core.families import family_for
from edgevoice.errors import UserError
from edgevoice.hardware.button import PushToTalkButton
from edgevoice.hardware.led import StatusLed
from edgevoice.live.handle_store import HandleStore
from edgevoice.live.link import CredentialSource, LiveLink
from edgevoice.live.netwatch import NetworkWatch
from edgevoice.metrics import NO_METRICS, Metrics
from edgevoice.service.devices import (
    CAPTURE_RATE,
    PLAYBACK_PERIODS,
    PLAYBACK_RATE,
    PLAYBACK_WRITE_PERIODS,
    AlsaDevices,
    Devices,
)
from edgevoice.service.household import Household
from edgevoice.service.instance_lock import InstanceLock
from edgevoice.service.ledger_store import LedgerStore
from edgevoice.service.logging import clear_log_fields, set_log_fields
from edgevoice.service.notify import SystemdNotifier
from edgevoice.service.reload import Reload, ReloadReport, tls_context
from edgevoice.service.watchdog import DEFAULT_STALL_AFTER_S, Heartbeat, WatchdogPolicy, run_watchdog
from edgevoice.tools.device_functions import DeviceToolbox
from edgevoice.tools.toolbox import ToolBox

log = logging.getLogger("edgevoice")
transcript_log = logging.getLogger("edgevoice.transcript")


class HomeTools(Protocol):
    """What the daemon needs from the smart-home tools (:class:`edgevoice.tools.ToolBox`)."""

    def declarations(self) -> list[dict[str, Any]]: ...
    def start(self, call: ToolCall, on_done: Callable[[Any], None]) -> None: ...
    def cancel(self, ids: Iterable[str]) -> list[str]: ...
    def describe_state(self) -> str: ...
    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc_info: Any) -> Any: ...


# Builds the tools for a configuration (None: no smart-home functions). Raises ConfigError
# or UserError for a configuration it cannot serve.
ToolsFactory = Callable[[Settings], "HomeTools | None"]


def home_tools(settings: Settings) -> HomeTools | None:
    """The ``[home]`` section's tools: the production :data:`ToolsFactory`."""
    return ToolBox.from_settings(settings.home, settings.paths.state_dir)


def no_tools(settings: Settings) -> None:
    return None


# Capture periods handed to the loop together while no utterance is open (100 ms at 20 ms
# periods): the pre-roll history does not need them sooner, and a press flushes them.
IDLE_CAPTURE_BATCH = 5
# Periods per microphone read while an utterance streams (40 ms at 20 ms periods): half the
# hand-overs, dispatches and websocket frames of one a period. The model answers only
# after activityEnd, and a release cuts the read short, so nothing the user waits for is
# later.
STREAMING_READ_PERIODS = 2
# How long a stop waits for device actions already started: their results are remembered
# with the question, which a restart asks again. Well inside the unit's TimeoutStopSec.
STOP_CALLS_GRACE_S = 3.0


class Daemon:
    """One device: its settings, its hardware, its credentials; ``run`` until stopped.

    ``watchers`` are called on the loop after the core has handled each event (tests and
    the simulator follow the conversation through them); ``quiet`` is set whenever nothing
    is in flight, ``ready`` once the device listens.
    """

    def __init__(
        self,
        settings: Settings,
        devices: Devices,
        *,
        credentials: CredentialSource,
        tools: ToolsFactory = home_tools,
        metrics: Metrics = NO_METRICS,
    ) -> None:
        self.settings = settings
        self.devices = devices
        self._credentials = credentials
        self._tools_factory = tools
        self.toolbox: HomeTools | None = None
        self.metrics = metrics
        # A no-op outside systemd (NOTIFY_SOCKET unset); the watchdog still logs stalls.
        self.notifier = SystemdNotifier()
        self.heartbeats: dict[str, Heartbeat] = {}
        self._session_id: str | None = None
        self._earcons = _earcons(settings)
        self.handle_store = HandleStore(settings.paths.state_dir)
        # The handle and the ledger are saved off the loop: an atomic write (two fsyncs) took
        # 8-16 ms on the bench machine and can take tens of ms on an SD card, time the loop
        # owes the microphone, the speaker and the sends queued in the same turn (a release's
        # activityEnd waited for the ledger's write). One thread keeps the writes in order;
        # idle, it sleeps.
        self._state_writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgevoice-state")
        self._ledger_written: Future[None] | None = None
        # Function calls waiting for the ledger that remembers them to reach the disk.
        self._calls_awaiting_disk: dict[str, RunTool] = {}
        self._instance_lock = InstanceLock(settings.paths.state_dir)
        self._clock: Callable[[], float] = time.monotonic
        # Timers, volume, mute and announcements: the device's own features.
        self.household = Household(settings, clock=self._clock)
        self._backoff = _backoff(settings.live)
        # What a previous run was asked and never answered is asked again.
        self.ledger_store = LedgerStore(settings.paths.state_dir)
        self.conversation = Conversation(
            _conversation_config(settings),
            self._backoff,
            family=family_for(settings.live.model).family,
            ledger=self.ledger_store.load(),
        )
        self.watchers: list[Callable[[Event], None]] = []
        self.quiet = threading.Event()
        self.ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self.microphone: Microphone | None = None
        self.speaker: Speaker | None = None
        self.live_link: LiveLink | None = None
        self.button: PushToTalkButton | None = None
        self.led: StatusLed | None = None
        self._model_words: list[str] = []
        self._shown: tuple[str, str] | None = None
        self._capturing = True  # so the first dispatch switches the microphone to batches

    def __repr__(self) -> str:
        return f"Daemon(devices={self.devices!r}, state_dir={str(self.settings.paths.state_dir)!r})"

    # -- thread-safe entry points -------------------------------------------------------------

    def post(self, event: Event) -> None:
        """Hand an event to the loop from any thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, event)

    def _post_captured(self, periods: list[tuple[int, bytes, float]]) -> None:
        if self.metrics.enabled:
            for position, pcm, t in periods:
                self.metrics.audio_captured(position, position + len(pcm) // SAMPLE_BYTES, t)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch_captured, periods)

    def _dispatch_captured(self, periods: list[tuple[int, bytes, float]]) -> None:
        # One event per contiguous run: the core takes audio of any length, and a dispatch
        # costs far more than joining the bytes (an idle hand-over carries a dozen periods).
        for position, pcm, t in contiguous_runs(periods):
            self._dispatch(Captured(position, pcm, t))

    def request_stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    # -- the wiring -----------------------------------------------------------------------------

    async def run(self) -> int:
        # Before anything touches the state directory or the hardware: a second daemon on
        # the same state directory refuses to start instead of fighting the first.
        self._instance_lock.acquire()
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            toolbox, capture, playback = self._build_parts()
            try:
                await self._serve(toolbox, capture, playback)
            finally:
                await self._release_parts()
        finally:
            self._loop = None
            self._instance_lock.release()
        return 0

    def _build_parts(self) -> tuple[HomeTools | None, CaptureDevice, PlaybackDevice]:
        """Everything the device runs with, from the settings; a part that cannot be made
        raises a clear error and leaves nothing open."""
        # What can refuse the configuration comes before any device is opened.
        toolbox = self.build_tools()
        tls = tls_context(self.settings.live)
        capture_device, playback_device = self._open_devices()
        self.microphone, self.speaker = self._make_audio()
        self.live_link = LiveLink(
            self.settings.live,
            credentials=self._credentials,
            post=self._post_from_loop,
            function_declarations=toolbox.declarations() if toolbox is not None else [],
            ssl_context=tls,
            metrics=self.metrics,
            clock=self._clock,
        )
        try:
            self.button = self._make_button()
            self.led = self._make_led()
            self.household.attach(self)
        except UserError:
            for resource in (self.button, capture_device, playback_device):
                if resource is not None:
                    _close_quietly(resource)
            raise
        self.conversation.resume_handle = self.handle_store.load()
        return toolbox, capture_device, playback_device

    async def _serve(
        self, toolbox: HomeTools | None, capture: CaptureDevice, playback: PlaybackDevice
    ) -> None:
        """Start every part, tell systemd the device is ready, and run until stopped."""
        assert self.live_link is not None and self.button is not None and self._stop is not None
        async with contextlib.AsyncExitStack() as household, asyncio.TaskGroup() as tasks:
            if toolbox is not None:
                await toolbox.__aenter__()
            self.toolbox = toolbox
            if toolbox is not None:
                self._follow_toolbox(toolbox)
            await household.enter_async_context(self.household)
            tasks.create_task(self.live_link.run(), name="live-link")
            self._start_audio(capture, playback)
            network = NetworkWatch(lambda: self._dispatch(NetworkChanged(self._clock())))
            network.start()
            watchdog = tasks.create_task(
                run_watchdog(self.notifier, self.heartbeats, policy=_watchdog_policy(self.notifier)),
                name="watchdog",
            )
            try:
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
            finally:
                watchdog.cancel()
                network.close()
                await self._close_tools()

    async def _release_parts(self) -> None:
        self.household.detach()
        if self._timer is not None:
            self._timer.cancel()
        assert self.button is not None and self.microphone is not None and self.speaker is not None
        self.button.close()
        if self.led is not None:
            self.led.close()
        await asyncio.to_thread(self.microphone.stop)
        await asyncio.to_thread(self.speaker.stop)
        clear_log_fields()

    def _follow_toolbox(self, toolbox: HomeTools) -> None:
        """Opening the tools may have learned the home (Home Assistant discovery): the first
        session declares what they offer; later changes switch sessions when quiet."""
        assert self.live_link is not None
        live_link = self.live_link
        live_link.update_settings(self.settings.live, function_declarations=toolbox.declarations())
        # The home's own toolbox (inside the device's) is the one that learns and fails.
        home = getattr(toolbox, "home", None) or toolbox

        def declarations_changed() -> None:
            live_link.update_settings(self.settings.live, function_declarations=toolbox.declarations())
            self._dispatch(ToolDeclarationsChanged(self._clock()))

        def home_problem(problem: str | None) -> None:
            self._dispatch(DeviceProblem("home", problem, self._clock()))

        if hasattr(home, "on_declarations_changed"):
            home.on_declarations_changed = declarations_changed
        if hasattr(home, "on_problem"):
            home.on_problem = home_problem
            if getattr(home, "problem", None):
                home_problem(home.problem)

    def _make_audio(self) -> tuple[Microphone, Speaker]:
        audio = self.settings.audio
        # The same dict object for the watchdog task's whole life: replaced in place.
        self.heartbeats["capture"] = capture_beat = Heartbeat()
        self.heartbeats["playback"] = playback_beat = Heartbeat()
        microphone = Microphone(
            self.devices.open_capture,
            rate=CAPTURE_RATE,
            period_frames=CAPTURE_RATE * audio.period_ms // 1000,
            on_frames=self._post_captured,
            on_problem=lambda problem: self.post(DeviceProblem("microphone", problem, self._clock())),
            heartbeat=capture_beat.beat,
            idle_read_ahead=self.devices.capture_read_ahead,
            paced=self.devices.paced_capture,
        )
        speaker = Speaker(
            self.devices.open_playback,
            rate=PLAYBACK_RATE,
            period_frames=PLAYBACK_RATE * audio.period_ms // 1000,
            buffer_frames=self.devices.playback_buffer_frames,
            # Adaptive: a reply plays with its first period; prebuffer_ms is the most the
            # buffer will hold back after underruns.
            jitter=JitterBuffer(
                PLAYBACK_RATE,
                audio.prebuffer_ms,
                audio.fade_ms,
                audio.volume,
                adaptive=AdaptiveTarget(max_ms=audio.prebuffer_ms),
            ),
            paced=self.devices.paced_playback,
            fade_ms=audio.fade_ms,
            on_idle=lambda: self.post(PlaybackIdle(self._clock())),
            on_problem=lambda problem: self.post(DeviceProblem("speaker", problem, self._clock())),
            heartbeat=playback_beat.beat,
            metrics=self.metrics,
            write_periods=PLAYBACK_WRITE_PERIODS,
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
            capture = self.devices.open_capture()
        except AudioDeviceError as exc:
            raise UserError(str(exc)) from None
        try:
            playback = self.devices.open_playback()
        except AudioDeviceError as exc:
            _close_quietly(capture)
            raise UserError(str(exc)) from None
        return capture, playback

    def _make_led(self) -> StatusLed:
        led = self.settings.led
        try:
            return StatusLed(led.pin, led.pwm, self.devices.pin_factory)
        except (GPIOZeroError, OSError, ValueError) as exc:
            raise UserError(f"the status LED on BCM pin {led.pin} cannot be used: {exc}") from None

    def _make_button(self) -> PushToTalkButton:
        button = self.settings.button
        return PushToTalkButton(
            button.pin,
            pull_up=button.pull_up,
            bounce_time_s=(button.bounce_time_ms or 0) / 1000 or None,
            stamp_and_post=self._stamp_and_post,
            on_edge=self._on_button_edge,
            pin_factory=self.devices.pin_factory,
        )

    def _stamp_and_post(self, post: Callable[[int], None]) -> None:
        assert self.microphone is not None
        self.microphone.stamp_and_post(post, self._edge_position)

    def _edge_position(self) -> int:
        # The hardware's own knowledge of the edge's sample, else the capture clock's.
        position = self.devices.edge_position()
        if position is None:
            assert self.microphone is not None
            return self.microphone.position_now()
        return position

    async def _close_tools(self) -> None:
        # The closed tools stay readable (describe_state) until replaced.
        toolbox = self.toolbox
        if toolbox is not None:
            try:
                await toolbox.__aexit__(None, None, None)
            except Exception:
                log.exception("closing the smart-home tools failed")

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        self._execute(self.conversation.stop(self._clock()))
        assert self.live_link is not None
        await self.live_link.shutdown()
        await self._let_calls_finish()
        # Every handle and ledger saved so far is on disk before the last activity is recorded.
        await asyncio.wrap_future(self._state_writes.submit(self._touch_handle))

    async def _let_calls_finish(self) -> None:
        """A function started before the stop (a light switching, a timer being set) has
        done its work or is about to: its result, once here, is persisted with the
        question, so that the question asked again after a restart is answered with it
        rather than with "already requested, result unknown"."""
        if not self.conversation.calls_running:
            return
        finished = asyncio.Event()

        def watch(_event: Event) -> None:
            if not self.conversation.calls_running:
                finished.set()

        self.watchers.append(watch)
        try:
            await asyncio.wait_for(finished.wait(), STOP_CALLS_GRACE_S)
        except TimeoutError:
            log.warning(
                "stopping with %d function call(s) unfinished after %g s: their results are not known",
                self.conversation.calls_running,
                STOP_CALLS_GRACE_S,
            )
        finally:
            self.watchers.remove(watch)

    def _touch_handle(self) -> None:
        try:
            self.handle_store.touch()
        except OSError as exc:
            log.warning("could not record the session's last activity: %s", exc)

    # -- reloading ------------------------------------------------------------------------------

    async def reload(self, settings: Settings, devices: Devices | None = None) -> ReloadReport:
        """Apply a new configuration section by section (see :mod:`edgevoice.service.reload`).
        ``devices`` replaces the sound card when ``[audio]``'s devices changed.

        A reload is how a user cures a refused key or a retired model (the key is read
        at each connection): a long back-off ends and the next attempt goes at once."""
        report = await Reload(self, settings, devices).apply()
        self.execute(self.conversation.retry_now(self._clock(), "the configuration was reloaded"))
        return report

    def swap_gpio(self, name: str) -> None:
        """Close the button or LED (it holds the pin) and open it from the settings."""
        if name == "button":
            assert self.button is not None
            self.button.close()
            self.button = self._make_button()
        else:
            if self.led is not None:
                self.led.close()
            self.led = self._make_led()
            self._shown = None  # so the new LED is told the state now
            self.refresh_status()

    def new_session(self, why: str) -> None:
        self._execute(self.conversation.new_session(self._clock(), why))

    def follow_audio_settings(self) -> None:
        """Volume and earcons from the settings, at once (the card stays open)."""
        assert self.speaker is not None
        # The volume set by voice (kept in the state directory) wins over the file.
        self.speaker.jitter.volume = self.household.gain
        self._earcons = _earcons(self.settings)

    def follow_live_settings(self, tls: ssl.SSLContext | None) -> None:
        """The Live settings and TLS context for the next connection, and the timings."""
        assert self.live_link is not None
        live = self.settings.live
        self.live_link.update_settings(live, ssl_context=tls)
        self._backoff.initial_s, self._backoff.max_s = live.reconnect_initial_s, live.reconnect_max_s
        self.conversation.config = _conversation_config(self.settings)
        self.conversation.family = family_for(live.model).family

    def build_tools(self) -> HomeTools:
        """The home's tools from the settings, with the device's own functions beside them."""
        functions = self.household.functions if self.settings.device.functions else None
        return DeviceToolbox(self._tools_factory(self.settings), functions)

    async def swap_tools(self, tools: HomeTools | None) -> None:
        """Close the running tools, open these (they raise if they cannot start) and offer
        their functions from the next connection on."""
        assert self.live_link is not None
        await self._close_tools()
        self.toolbox = None
        if tools is not None:
            await tools.__aenter__()
        self.toolbox = tools
        if tools is not None:
            self._follow_toolbox(tools)
        else:
            self.live_link.update_settings(self.settings.live, function_declarations=[])

    async def replace_audio(self, devices: Devices) -> None:
        assert self.microphone is not None and self.speaker is not None
        await asyncio.to_thread(self.microphone.stop)
        await asyncio.to_thread(self.speaker.stop)
        self.devices = devices
        self.microphone, self.speaker = self._make_audio()
        self._start_audio()

    # -- events in, actions out -------------------------------------------------------------

    def _post_from_loop(self, event: Event) -> None:
        # Deferred, so an adapter never re-enters the core from inside an action.
        loop = self._loop
        if loop is not None:
            loop.call_soon(self._dispatch, event)

    def _on_button_edge(self, pressed: bool, position: int, t: float) -> None:
        if pressed:
            self.metrics.pressed(t)
        else:
            self.metrics.released(t)
        self.post(Pressed(position, t) if pressed else Released(position, t))

    def _dispatch(self, event: Event) -> None:
        filtered = self.household.before_core(event)
        if filtered is None:
            return  # a press that stopped a ring, or came while muted: not a question
        event = filtered
        noted = _NOTED.get(type(event))
        if noted is not None:
            noted(self, event)
        try:
            self._execute(self.conversation.handle(event))
        except Exception:
            # A bug must not leave the device deaf: log it with its stack and go on with
            # the next event (the core's state stays as it was before this one, or close).
            log.exception("internal error while handling %s", type(event).__name__)
        quiet = self.conversation.idle and self.conversation.link_up
        if quiet != self.quiet.is_set():  # set() and clear() take a lock: only on a change
            if quiet:
                self.quiet.set()
            else:
                self.quiet.clear()
        self._arm_timer()
        capturing = self.conversation.capturing
        if capturing != self._capturing and self.microphone is not None:
            self._capturing = capturing
            self.microphone.batch = 1 if capturing else IDLE_CAPTURE_BATCH
            self.microphone.read_periods = STREAMING_READ_PERIODS if capturing else 1
        self.household.after_dispatch()
        for watcher in self.watchers:
            watcher(event)

    # What the daemon itself notes about an event before the core sees it.

    def _note_link_up(self, event: LinkUp) -> None:
        if event.link != self.conversation.link:
            return
        # Words of a reply cut by the end of the last connection are not half of the next.
        self._model_words.clear()
        if not event.resumed or self._session_id is None:
            self._session_id = uuid.uuid4().hex[:8]
            set_log_fields(session_id=self._session_id)
        self.metrics.link_up(event.t, event.resumed)

    def _note_link_down(self, event: LinkDown) -> None:
        if event.link == self.conversation.link:
            self.metrics.link_down(event.t)

    def _note_go_away(self, event: GoAway) -> None:
        if event.link == self.conversation.link:
            self.metrics.goaway()

    def _note_transcript(self, event: Transcript) -> None:
        # The model's words arrive in fragments: one log line per answer reads better.
        if event.role == "user":
            transcript_log.info("you: %s", event.text)
        else:
            self._model_words.append(event.text)

    def _note_end_of_answer(self, event: Event) -> None:
        if self._model_words:
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
        for action in actions:
            handler = _ACTIONS.get(type(action))
            if handler is None:
                log.error("no handler for the core's %s action; ignored", type(action).__name__)
                continue
            handler(self, action)

    # One handler per action the core can ask for.

    def _send(self, action: SendAudio | SendActivityEnd | SendToolResponses | SendContext) -> None:
        assert self.live_link is not None
        self.live_link.send(action)

    def _send_activity_start(self, action: SendActivityStart) -> None:
        self._send(action)
        set_log_fields(turn_id=action.utterance)

    def _close_link(self, action: CloseLink) -> None:
        assert self.live_link is not None
        self.metrics.link_closed(self._clock())
        self.live_link.close(action)

    def _play_earcon(self, action: PlayEarcon) -> None:
        pcm = self._earcons(action.earcon.value) if self._earcons else None
        if pcm and self.speaker is not None:
            self.speaker.earcon(pcm)

    def _run_tool(self, action: RunTool) -> None:
        written = self._ledger_written
        if written is not None and not written.done():
            # The ledger that remembers this call is on disk before it runs, so that a
            # restart cannot run it twice.
            loop = self._loop
            assert loop is not None
            call_id = action.call.id
            self._calls_awaiting_disk[call_id] = action
            start = self._start_after_disk
            written.add_done_callback(lambda _written: loop.call_soon_threadsafe(start, call_id))
            return
        self._start_tool(action)

    def _start_after_disk(self, call_id: str) -> None:
        action = self._calls_awaiting_disk.pop(call_id, None)
        if action is not None:  # (None: cancelled meanwhile)
            self._start_tool(action)

    def _start_tool(self, action: RunTool) -> None:
        call: ToolCall = action.call

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
        self.toolbox.start(call, done)

    def _cancel_tools(self, action: CancelTools) -> None:
        unstarted = [call_id for call_id in action.ids if self._calls_awaiting_disk.pop(call_id, None)]
        if unstarted:
            log.info("tool calls cancelled: %s (before they started)", ", ".join(unstarted))
        if self.toolbox is not None:
            self.toolbox.cancel(action.ids)

    def _persist_handle(self, action: PersistHandle) -> None:
        self._state_writes.submit(self._save_handle, action.handle)

    def _save_handle(self, handle: str | None) -> None:
        try:
            self.handle_store.save(handle)
        except OSError as exc:
            log.warning("could not save the session handle: %s", exc)

    def _persist_ledger(self, action: PersistLedger) -> None:
        self._ledger_written = self._state_writes.submit(self._save_ledger, action.ledger)

    def _save_ledger(self, ledger: SavedLedger) -> None:
        try:
            self.ledger_store.save(ledger)
        except OSError as exc:
            log.warning("could not save the unanswered utterances: %s", exc)

    # -- the household's way in ------------------------------------------------------------------

    def execute(self, actions: list[Action]) -> None:
        """Carry out actions decided outside the conversation (the household's prompts)."""
        self._execute(actions)
        self._arm_timer()

    def earcon(self, kind: str) -> bytes | None:
        """The sound ``kind`` as configured (None when earcons are off)."""
        return self._earcons(kind) if self._earcons else None

    def refresh_status(self) -> None:
        """Show the status again (the household's ringing or muted state changed)."""
        status = self.conversation.status
        if status is not None:
            self._show_status(status)

    def _show_status(self, status: Status) -> None:
        state, text = self.household.shown(status.state.value, status.text())
        if (state, text) == self._shown:
            return
        self._shown = (state, text)
        set_log_fields(state=state)
        if self.led is not None:
            self.led.show(state)
        log.info("status: %s", text)
        self.notifier.status(text)
        self.household.status_changed(state)


_ACTIONS: dict[type, Callable[[Daemon, Any], None]] = {
    SendAudio: Daemon._send,
    SendActivityStart: Daemon._send_activity_start,
    SendActivityEnd: Daemon._send,
    SendToolResponses: Daemon._send,
    SendContext: Daemon._send,
    PlayAudio: lambda daemon, action: daemon.speaker.play(action.pcm, action.chunk),
    EndOfReply: lambda daemon, _action: daemon.speaker.end_of_reply(),
    StopPlayback: lambda daemon, action: daemon.speaker.interrupt(),
    Connect: lambda daemon, action: daemon.live_link.connect(action),
    CloseLink: Daemon._close_link,
    PlayEarcon: Daemon._play_earcon,
    RunTool: Daemon._run_tool,
    CancelTools: Daemon._cancel_tools,
    PersistHandle: Daemon._persist_handle,
    PersistLedger: Daemon._persist_ledger,
    Status: Daemon._show_status,
    Log: lambda _daemon, action: log.log(action.level, action.message),
}

_NOTED: dict[type, Callable[[Daemon, Any], None]] = {
    LinkUp: Daemon._note_link_up,
    LinkDown: Daemon._note_link_down,
    GoAway: Daemon._note_go_away,
    Transcript: Daemon._note_transcript,
    TurnComplete: Daemon._note_end_of_answer,
    GenerationComplete: Daemon._note_end_of_answer,
    Interrupted: Daemon._note_end_of_answer,
}


def _conversation_config(settings: Settings) -> ConversationConfig:
    audio, live = settings.audio, settings.live
    return ConversationConfig(
        rate=CAPTURE_RATE,
        period_samples=CAPTURE_RATE * audio.period_ms // 1000,
        preroll_samples=CAPTURE_RATE * audio.preroll_ms // 1000,
        max_utterance_samples=int(CAPTURE_RATE * live.max_utterance_s),
        offline_max_age_s=live.offline_max_age_s,
        reply_timeout_s=live.reply_timeout_s,
    )


def _backoff(live: LiveSettings) -> Backoff:
    return Backoff(live.reconnect_initial_s, live.reconnect_max_s)


def _earcons(settings: Settings) -> Callable[[str], bytes | None] | None:
    if not settings.audio.earcons:
        return None
    earcons = Earcons(True, settings.audio.disabled_earcons)
    earcons.warm()
    return earcons.get


def _watchdog_policy(notifier: SystemdNotifier) -> WatchdogPolicy:
    # A stall must be noticed (and the ping withheld) well before systemd's own timeout.
    stall_after = DEFAULT_STALL_AFTER_S
    if notifier.watchdog_usec:
        stall_after = min(stall_after, notifier.watchdog_usec / 1e6 / 2)
    return WatchdogPolicy(stall_after_s=stall_after)


def _close_quietly(device: Any) -> None:
    try:
        device.close()
    except Exception:
        log.debug("closing a device failed", exc_info=True)


__all__ = [
    "CAPTURE_RATE",
    "PLAYBACK_PERIODS",
    "PLAYBACK_RATE",
    "AlsaDevices",
    "Daemon",
    "Devices",
    "HomeTools",
    "home_tools",
    "no_tools",
]

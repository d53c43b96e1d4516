"""The device's own features on the running daemon: timers that ring, volume, microphone
mute, and announcements the model speaks unasked.

The decisions live in :mod:`edgevoice.core.timers` and :mod:`edgevoice.core.announcements`;
this module carries them out on the event loop: it arms one loop timer for the next timer
deadline, plays the ring, chime and "muted" sounds, keeps volume, mute and timers in the
state directory (atomic writes), and hooks into the daemon at three points only:

- :meth:`Household.before_core`: a button press that stops a ring, or comes while the
  microphone is muted, never reaches the conversation (it starts no question); while muted
  every captured period reaches it as silence, so nothing heard is ever sent;
- :meth:`Household.after_dispatch`: at a quiet moment with the link up, the next queued
  notice is spoken (``Conversation.prompt``);
- :meth:`Household.shown`: the status shown in systemd, the journal and the LED becomes
  ``ringing`` or ``muted`` while that is what the device is doing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevoice.audio.earcons import RATE as EARCON_RATE
from edgevoice.audio.earcons import render
from edgevoice.core.announcements import Notice, NoticeKind, NoticeQueue, Queued, Rejected
from edgevoice.core.events import (
    Captured,
    Event,
    GenerationComplete,
    Interrupted,
    Pressed,
    Released,
    SendContext,
    Transcript,
    TurnComplete,
)
from edgevoice.core.timers import RingPulse, RingStarted, RingStopped, TimerBook
from edgevoice.tools.backends.simulated import write_json_atomically
from edgevoice.tools.device_functions import MAX_VOLUME_LEVEL, DeviceFunctions
from edgevoice.tools.device_settings import device_mqtt_settings

if TYPE_CHECKING:
    from edgevoice.config import Settings
    from edgevoice.service.daemon import Daemon

log = logging.getLogger("edgevoice")

DEVICE_STATE_FILE = "device-state.json"
TIMERS_FILE = "timers.json"
STATE_FORMAT_VERSION = 1

# What a state-change listener (the MQTT publisher) hears: ("state", "ringing"), ("volume", 4)...
Listener = Callable[[str, Any], None]


class Household:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        device = settings.device
        self.settings = settings
        self._clock = clock
        self._wall_clock = wall_clock
        self.timers = TimerBook(device.timer_max_ring_s, device.timer_ring_period_s, device.max_timers)
        self.notices = NoticeQueue(device.announcement_max_age_s)
        state_dir = Path(settings.paths.state_dir)
        self._state_path = state_dir / DEVICE_STATE_FILE
        self._timers_path = state_dir / TIMERS_FILE
        self._volume_level = min(
            MAX_VOLUME_LEVEL, round(settings.audio.volume / device.max_volume * MAX_VOLUME_LEVEL)
        )
        self._muted = False
        self._load_state()
        self._load_timers()
        self.functions = DeviceFunctions(
            self, DeviceFunctions.policy_from(device.scheduling, device.failure_scheduling), clock
        )
        self.listeners: list[Listener] = []
        self._daemon: Daemon | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._handle_deadline: float | None = None
        self._swallow_release = False
        # A prompt whose client_content waits for the chime to finish.
        self._chiming: asyncio.TimerHandle | None = None
        self._shown_state: str | None = None
        # Monotonic instants of each ring start, pulse and stop (the journal has them too).
        self.ring_log: list[tuple[float, str]] = []
        self.spoken: list[Notice] = []
        self._control: Any = None
        self._mqtt: Any = None
        self._said: list[str] = []
        self._heard: list[str] = []

    # -- DeviceControls -------------------------------------------------------------------

    def now(self) -> float:
        return self._clock()

    def timers_changed(self) -> None:
        self._save_timers()
        self._arm()
        self._tell("timers", len(self.timers.running(self.now())))

    @property
    def volume_level(self) -> int:
        return self._volume_level

    def set_volume_level(self, level: int) -> None:
        level = max(0, min(MAX_VOLUME_LEVEL, int(level)))
        self._volume_level = level
        self._apply_volume()
        self._save_state()
        log.info("volume: %d of %d", level, MAX_VOLUME_LEVEL)
        self._tell("volume", level)

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        if muted == self._muted:
            return
        self._muted = muted
        self._save_state()
        log.info("microphone %s", "muted" if muted else "unmuted")
        self._tell("muted", muted)
        self._refresh_status()

    # -- the daemon's hooks ---------------------------------------------------------------

    def attach(self, daemon: Daemon) -> None:
        """The daemon's devices exist: apply the volume and start keeping time."""
        self._daemon = daemon
        self._apply_volume()
        self._arm()

    def detach(self) -> None:
        for handle in (self._handle, self._chiming):
            if handle is not None:
                handle.cancel()
        self._handle = self._chiming = None
        self._handle_deadline = None
        self._daemon = None

    def before_core(self, event: Event) -> Event | None:
        """The event the conversation should see instead (None: it sees nothing)."""
        if isinstance(event, Captured):
            if self._muted:
                return Captured(event.position, bytes(len(event.pcm)), event.t)
            return event
        if isinstance(event, Pressed):
            stopped = self.timers.press(event.t)
            if stopped is not None:
                self._swallow_release = True
                log.info("button: the ring stopped (no question)")
                self._ring_stopped(stopped, event.t)
                self._service(event.t)
                return None
            if self._muted:
                self._swallow_release = True
                log.info("button pressed while the microphone is muted: not listening")
                self._play_earcon("muted", respect_settings=True)
                return None
            return event
        if isinstance(event, Released) and self._swallow_release:
            self._swallow_release = False
            return None
        if self.listeners and isinstance(event, Transcript | TurnComplete | GenerationComplete | Interrupted):
            self._follow_transcript(event)
        return event

    def _follow_transcript(self, event: Event) -> None:
        # The last thing heard and said, for Home Assistant (the model's words arrive in
        # fragments: one value per answer).
        if isinstance(event, Transcript):
            (self._heard if event.role == "user" else self._said).append(event.text)
            return
        if self._heard:
            self._tell("heard", " ".join(" ".join(self._heard).split()))
            self._heard.clear()
        if self._said:
            self._tell("said", "".join(self._said).strip())
            self._said.clear()

    def after_dispatch(self) -> None:
        self._service(self.now())

    def shown(self, state: str, text: str) -> tuple[str, str]:
        """The state and status line to show, given the conversation's."""
        if self.timers.ringing:
            names = ", ".join(self.timers.ringing)
            return "ringing", f"ringing: {names} timer"
        if self._muted and state == "idle":
            return "muted", "muted: the microphone is off"
        return state, text

    @property
    def shown_state(self) -> str | None:
        return self._shown_state

    def status_changed(self, state: str) -> None:
        """The daemon showed ``state`` (for listeners: the Home Assistant state sensor)."""
        if state != self._shown_state:
            self._shown_state = state
            self._tell("state", state)

    # -- the control socket and MQTT ------------------------------------------------------

    async def __aenter__(self) -> Household:
        from edgevoice.errors import UserError
        from edgevoice.service.control import ControlServer, served_socket_path

        path = served_socket_path(self.settings.device.control_socket)
        if path is not None:
            server = ControlServer(path, self.handle_control)
            try:
                await server.start()
            except (OSError, UserError) as exc:
                log.warning("no control socket (edgevoice announce will not work): %s", exc)
            else:
                self._control = server
        mqtt = device_mqtt_settings(self.settings)
        if mqtt is not None:
            # Only a device shown over MQTT loads the MQTT client (aiomqtt and paho, 1 MB).
            from edgevoice.service.device_mqtt import DeviceMqtt

            self._mqtt = DeviceMqtt(self.settings, mqtt, self)
            await self._mqtt.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._mqtt is not None:
            await self._mqtt.close()
            self._mqtt = None
        if self._control is not None:
            await self._control.close()
            self._control = None

    def handle_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """One request from the control socket (or MQTT): its answer."""
        command = request.get("command")
        if command == "announce":
            text = request.get("text")
            if not isinstance(text, str):
                return {"ok": False, "error": "announce needs a text"}
            error = self.announce(text)
            return {"ok": error is None, **({"error": error} if error else {})}
        if command in ("mute", "unmute"):
            self.set_muted(command == "mute")
            return {"ok": True}
        if command == "volume":
            level = request.get("level")
            if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= MAX_VOLUME_LEVEL:
                return {"ok": False, "error": f"volume needs a level from 0 to {MAX_VOLUME_LEVEL}"}
            self.set_volume_level(level)
            return {"ok": True}
        if command == "status":
            now = self.now()
            return {
                "ok": True,
                "state": self._shown_state,
                "volume": self._volume_level,
                "muted": self._muted,
                "ringing": list(self.timers.ringing),
                "timers": [
                    {"name": t.name, "seconds_left": round(left, 1)} for t, left in self.timers.running(now)
                ],
                "queued": len(self.notices),
            }
        known = "announce, mute, unmute, volume, status"
        return {"ok": False, "error": f"unknown command {command!r}; known: {known}"}

    # -- announcements --------------------------------------------------------------------

    def announce(self, text: str) -> str | None:
        """Queue an announcement (control socket, MQTT). Returns an error, or None."""
        now = self.now()
        daemon = self._daemon
        link_up = daemon is not None and daemon.conversation.link_up
        result = self.notices.announce(text, now, link_up=link_up)
        if isinstance(result, Rejected):
            log.warning("announcement refused: %s", result.reason)
            return result.reason
        assert isinstance(result, Queued)
        log.info("announcement queued: %s", result.notice.text)
        if result.chime_now:
            log.info("offline: chime now, the words when the connection is back")
            self._play_earcon("chime")
        self._service(now)
        return None

    # -- internals ------------------------------------------------------------------------

    def _service(self, now: float) -> None:
        """Expire old notices; at a quiet moment, speak the next one."""
        if not len(self.notices):  # most events (every captured period): nothing to do
            self._arm()
            return
        for dropped in self.notices.expire(now):
            log.warning("not spoken, too old: %s", dropped.text)
        daemon = self._daemon
        if daemon is None or self._chiming is not None or self.timers.ringing:
            self._arm()
            return
        conversation = daemon.conversation
        notice = self.notices.release(
            now, quiet=conversation.quiet_moment, link_up=conversation.link_up
        )
        if notice is not None:
            actions = conversation.prompt(notice.prompt(), now)
            if not actions:
                self.notices.put_back(notice)
            else:
                self._speak(notice, actions)
        self._arm()

    def _speak(self, notice: Notice, actions: list[Any]) -> None:
        daemon = self._daemon
        assert daemon is not None and daemon._loop is not None
        self.spoken.append(notice)
        log.info(
            "%s: asking the model to say it",
            "announcement" if notice.kind is NoticeKind.ANNOUNCEMENT else "timer notice",
        )
        if not notice.chime:
            daemon.execute(actions)
            return
        chime = self._play_earcon("chime")
        delay = len(chime) / 2 / EARCON_RATE if chime else 0.0

        def send() -> None:
            self._chiming = None
            current = self._daemon
            if current is not None:
                # Sent only if the connection it was meant for is still the current one.
                link = current.conversation.link
                current.execute([a for a in actions if not isinstance(a, SendContext) or a.link == link])

        # The conversation is busy from now on; the words are asked for once the chime
        # has played, so the answer never sounds over it.
        self._chiming = daemon._loop.call_later(delay, send)

    def _arm(self) -> None:
        daemon = self._daemon
        if daemon is None or daemon._loop is None:
            return
        deadlines = [d for d in (self.timers.next_deadline(), self.notices.next_deadline()) if d is not None]
        deadline = min(deadlines) if deadlines else None
        if deadline == self._handle_deadline:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._handle_deadline = deadline
        if deadline is not None:
            self._handle = daemon._loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._handle = None
        self._handle_deadline = None
        now = self.now()
        changed = False
        for action in self.timers.advance(now):
            if isinstance(action, RingStarted):
                changed = True
                self.ring_log.append((now, "start"))
                log.info("timer ended, ringing: %s", ", ".join(action.names))
                self._refresh_status()
            elif isinstance(action, RingPulse):
                self.ring_log.append((now, "pulse"))
                self._play_earcon("ring")
            elif isinstance(action, RingStopped):
                self._ring_stopped(action, now)
        if changed:
            self._save_timers()
        self._service(now)

    def _ring_stopped(self, stopped: RingStopped, now: float) -> None:
        self.ring_log.append((now, "stop"))
        daemon = self._daemon
        if daemon is not None and daemon.speaker is not None:
            daemon.speaker.clear_earcons()
        log.info(
            "ring stopped (%s): %s",
            "button" if stopped.by_press else "maximum ring time",
            ", ".join(stopped.names),
        )
        self.notices.timer_ended(stopped.names, stopped.ended_at)
        self._save_timers()
        self._refresh_status()

    def _refresh_status(self) -> None:
        daemon = self._daemon
        if daemon is not None:
            daemon.refresh_status()

    def _play_earcon(self, kind: str, *, respect_settings: bool = False) -> bytes | None:
        """Play a sound; the ring and the chime are not status cues: they always play."""
        daemon = self._daemon
        if daemon is None or daemon.speaker is None:
            return None
        pcm = daemon.earcon(kind) if respect_settings else render(kind)
        if pcm:
            daemon.speaker.earcon(pcm)
        return pcm

    def _apply_volume(self) -> None:
        daemon = self._daemon
        if daemon is not None and daemon.speaker is not None:
            daemon.speaker.jitter.volume = self.gain

    @property
    def gain(self) -> float:
        return self.settings.device.max_volume * self._volume_level / MAX_VOLUME_LEVEL

    def _tell(self, what: str, value: Any) -> None:
        for listener in list(self.listeners):
            try:
                listener(what, value)
            except Exception:
                log.exception("a device state listener failed")

    # -- persistence ----------------------------------------------------------------------

    def _load_state(self) -> None:
        data = _read_json(self._state_path)
        if data is None:
            return
        if not isinstance(data, dict) or data.get("version") != STATE_FORMAT_VERSION:
            log.warning("%s has an unknown format; using the configured volume", self._state_path)
            return
        volume = data.get("volume_level")
        if isinstance(volume, int) and not isinstance(volume, bool) and 0 <= volume <= MAX_VOLUME_LEVEL:
            self._volume_level = volume
        if isinstance(data.get("muted"), bool):
            self._muted = data["muted"]

    def _save_state(self) -> None:
        document = {"version": STATE_FORMAT_VERSION, "volume_level": self._volume_level, "muted": self._muted}
        try:
            write_json_atomically(self._state_path, document)
        except OSError as exc:
            log.warning("could not save the volume and mute state: %s", exc)

    def _load_timers(self) -> None:
        data = _read_json(self._timers_path)
        if data is None:
            return
        for problem in self.timers.restore(data, self._clock(), self._wall_clock()):
            log.warning("timers: %s", problem)
        running = self.timers.running(self._clock())
        if running:
            log.info("timers kept across the restart: %s", ", ".join(t.name for t, _ in running))

    def _save_timers(self) -> None:
        try:
            write_json_atomically(self._timers_path, self.timers.to_data(self._clock(), self._wall_clock()))
        except OSError as exc:
            log.warning("could not save the timers: %s", exc)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        log.warning("%s is not valid JSON (%s); ignoring it", path, exc)
        return None


__all__ = ["DEVICE_STATE_FILE", "TIMERS_FILE", "Household", "Listener"]

"""Reloading the configuration (SIGHUP): build the new parts, compare, swap, section by section.

Parts that can be built without touching the running ones (the TLS context from
``live.ca_file``, the smart-home tools from ``[home]``) are built first: if one cannot be,
nothing changes and the reload is refused (:class:`UserError` or ``ConfigError``). Then
each changed section is swapped in:

- ``[live]``: the next connection uses the new endpoint, model, voice and TLS context,
  on a new session (told the recent exchanges); timings apply at once.
- ``[home]``: the old tools close, the new ones open and their functions are offered to a
  new session. If the new ones cannot start (a server unreachable), the old come back.
- ``[audio]``: volume and earcons at once; new device settings reopen the sound card.
- ``[button]``, ``[led]``: the pin is released and the new one taken; if it cannot be
  used, the old one comes back.
- ``[logging]`` is applied by the caller; ``[auth]`` and the API key are read at each
  connection.

A key that cannot change while the daemon runs (:data:`RESTART_ONLY`, and every key of the
sections in :data:`RESTART_ONLY_SECTIONS`: ``[device]``) keeps its running value, and the
report (and so the journal) says that it needs a restart and why.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgevoice.config import LiveSettings, Settings
from edgevoice.errors import UserError
from edgevoice.service.devices import Devices

if TYPE_CHECKING:
    # The daemon imports this module to reload itself.
    from edgevoice.service.daemon import Daemon

log = logging.getLogger("edgevoice")

# Keys whose new value waits for a restart, and why.
RESTART_ONLY: dict[tuple[str, str], str] = {
    ("paths", "state_dir"): (
        "the running daemon holds its lock, session handle and home state in the state "
        "directory it started with"
    ),
    ("audio", "period_ms"): "the conversation's audio history is laid out in periods at start",
    ("audio", "preroll_ms"): "the conversation's audio history is sized for the pre-roll at start",
}
# Sections whose every key waits for a restart, and why.
RESTART_ONLY_SECTIONS: dict[str, str] = {
    "device": (
        "the device's timers, announcements, control socket and MQTT discovery (name, "
        "node id, broker) are set up from it at start"
    ),
}

# [audio] keys that need the sound card reopened.
DEVICE_KEYS = (
    "capture_device",
    "playback_device",
    "capture_device_rate",
    "capture_device_channels",
    "capture_channel",
    "playback_device_rate",
    "playback_device_channels",
    "prebuffer_ms",
    "fade_ms",
)


def tls_context(live: LiveSettings) -> ssl.SSLContext | None:
    """The TLS context for the Live endpoint: the system's trust store, or ``live.ca_file``."""
    if live.ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(live.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"live.ca_file {live.ca_file} cannot be used: {exc}") from None


@dataclass
class ReloadReport:
    """What a reload did, section by section."""

    applied: list[str] = field(default_factory=list)
    # "section.key" -> why it keeps its running value until the daemon restarts.
    needs_restart: dict[str, str] = field(default_factory=dict)
    # Section -> why applying it failed (the old part stays).
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"changed: {', '.join(self.applied) or 'nothing'}"]
        parts += [f"{name} needs a restart ({why})" for name, why in self.needs_restart.items()]
        parts += [f"{name} kept its old value ({why})" for name, why in self.failed.items()]
        return "; ".join(parts)


class Reload:
    """One reload of one daemon."""

    def __init__(self, daemon: Daemon, settings: Settings, devices: Devices | None) -> None:
        self.daemon = daemon
        self.old = daemon.settings
        self.new = settings
        self.devices = devices
        self.report = ReloadReport()

    async def apply(self) -> ReloadReport:
        daemon, report = self.daemon, self.report
        new = self._keep_restart_only_keys()
        changed = [name for name, _ in new if getattr(new, name) != getattr(self.old, name)]
        # 1. Build: nothing running is touched yet; a part that cannot be built refuses all.
        tls = tls_context(new.live) if "live" in changed else None
        daemon.settings = new
        try:
            tools = daemon.build_tools() if "home" in changed else None
        except BaseException:
            daemon.settings = self.old
            raise
        # 2. Swap, section by section.
        for name in changed:
            if name == "live":
                daemon.follow_live_settings(tls)
            elif name == "home":
                await self._swap_home(tools)
                continue
            elif name == "audio":
                await self._swap_audio()
            elif name in ("button", "led") and not self._swap_gpio(name):
                continue
            report.applied.append(name)
        if "live" in report.applied or "home" in report.applied:
            daemon.new_session(
                "the Live settings changed" if "live" in report.applied else "the home's functions changed"
            )
        return report

    def _keep_restart_only_keys(self) -> Settings:
        kept: dict[str, dict[str, Any]] = {}
        restart_only = dict(RESTART_ONLY)
        for section, why in RESTART_ONLY_SECTIONS.items():
            keys = type(getattr(self.old, section)).model_fields
            restart_only.update({(section, key): why for key in keys})
        for (section, key), why in restart_only.items():
            running = getattr(getattr(self.old, section), key)
            if getattr(getattr(self.new, section), key) != running:
                kept.setdefault(section, {})[key] = running
                self.report.needs_restart[f"{section}.{key}"] = why
        return self.new.model_copy(
            update={name: getattr(self.new, name).model_copy(update=keys) for name, keys in kept.items()}
        )

    async def _swap_home(self, tools: Any) -> None:
        daemon = self.daemon
        try:
            await daemon.swap_tools(tools)
        except Exception as exc:
            # The new home cannot start (a server unreachable): the old one comes back.
            log.error("the new [home] configuration could not start: %s", exc)
            self.report.failed["home"] = f"it could not start: {exc}"
            daemon.settings = daemon.settings.model_copy(update={"home": self.old.home})
            await daemon.swap_tools(daemon.build_tools())
        else:
            self.report.applied.append("home")

    async def _swap_audio(self) -> None:
        daemon = self.daemon
        daemon.follow_audio_settings()
        new, old = daemon.settings.audio, self.old.audio
        if self.devices is not None and any(getattr(new, k) != getattr(old, k) for k in DEVICE_KEYS):
            await daemon.replace_audio(self.devices)

    def _swap_gpio(self, name: str) -> bool:
        daemon = self.daemon
        try:
            daemon.swap_gpio(name)
        except UserError as exc:
            log.error("%s; keeping the old [%s] settings", exc, name)
            self.report.failed[name] = f"its pin could not be used: {exc}"
            daemon.settings = daemon.settings.model_copy(update={name: getattr(self.old, name)})
            daemon.swap_gpio(name)
            return False
        return True


__all__ = ["DEVICE_KEYS", "RESTART_ONLY", "RESTART_ONLY_SECTIONS", "Reload", "ReloadReport", "tls_context"]

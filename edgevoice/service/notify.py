"""sd_notify: tell systemd when the daemon is ready, what it is doing, and that it is alive.

The messages go through libsystemd's ``sd_notify`` (systemd-python's
:func:`systemd.daemon.notify`), which reads ``NOTIFY_SOCKET`` from the *process*
environment. :class:`SystemdNotifier` reads the same variables from the ``environ`` it is
given to decide whether it is enabled and how often to ping the watchdog; handing it an
environment whose ``NOTIFY_SOCKET`` differs from the process's is a programming error,
because the datagrams would go elsewhere.

Nothing here raises once constructed: a failed send is logged once at debug level and
forgotten, because losing a status line must never take the daemon down.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

from systemd import daemon as _sd_daemon

log = logging.getLogger(__name__)

# systemd kills the service WatchdogSec after the last ping; pinging at a third of it
# leaves room for one late or lost ping (sd_watchdog_enabled(3) asks for under half).
WATCHDOG_PING_FRACTION = 1 / 3

Sender = Callable[[str], object]


class SystemdNotifier:
    """Sends sd_notify messages; every method is a cheap no-op outside systemd.

    ``enabled`` is False when ``NOTIFY_SOCKET`` is unset. ``watchdog_interval_s`` is how
    often to call :meth:`watchdog`, or None when systemd did not ask for pings
    (``WATCHDOG_USEC`` unset, invalid, or meant for another pid per ``WATCHDOG_PID``).
    """

    def __init__(
        self,
        environ: Mapping[str, str] = os.environ,
        *,
        pid: int | None = None,
    ) -> None:
        socket_path = environ.get("NOTIFY_SOCKET") or None
        process_socket = os.environ.get("NOTIFY_SOCKET") or None
        if socket_path != process_socket:
            raise ValueError(
                "NOTIFY_SOCKET in the given environment differs from the process environment; "
                "libsystemd sends to the process's, so set it there"
            )
        self.enabled: bool = socket_path is not None
        self._pid = os.getpid() if pid is None else pid
        self.watchdog_usec: int | None = self._watchdog_usec(environ) if self.enabled else None
        self.watchdog_interval_s: float | None = (
            None if self.watchdog_usec is None else self.watchdog_usec / 1e6 * WATCHDOG_PING_FRACTION
        )
        self._last_status: str | None = None
        self._send_failed_logged = False
        self._send: Sender = _sd_daemon.notify

    def __repr__(self) -> str:
        return f"SystemdNotifier(enabled={self.enabled}, watchdog_interval_s={self.watchdog_interval_s})"

    @property
    def last_status(self) -> str | None:
        """The last STATUS= text sent (None before the first)."""
        return self._last_status

    def ready(self, status: str | None = None) -> None:
        """READY=1, optionally with a STATUS= line: startup is complete."""
        fields = ["READY=1"]
        if status is not None:
            fields.append(_status_field(status))
            self._last_status = _one_line(status)
        self._notify(fields)

    def status(self, text: str) -> None:
        """STATUS=text, shown by ``systemctl status``. Repeats of the last text are not sent."""
        line = _one_line(text)
        if line == self._last_status:
            return
        self._last_status = line
        self._notify([_status_field(line)])

    def reloading(self) -> None:
        """RELOADING=1 (the daemon re-reads its configuration; send :meth:`ready` after).

        MONOTONIC_USEC rides along as systemd >= 253 requires for Type=notify-reload; 252
        ignores it.
        """
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._notify(["RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}"])

    def stopping(self) -> None:
        """STOPPING=1: shutdown has begun."""
        self._notify(["STOPPING=1"])

    def watchdog(self) -> None:
        """WATCHDOG=1: the daemon is alive. Sent only when systemd asked for pings."""
        if self.watchdog_interval_s is None:
            return
        self._notify(["WATCHDOG=1"])

    def errno(self, code: int) -> None:
        """ERRNO=code: the errno-style reason for a failure, shown by ``systemctl status``."""
        self._notify([f"ERRNO={int(code)}"])

    # -- internals ---------------------------------------------------------------------

    def _notify(self, fields: list[str]) -> None:
        if not self.enabled:
            return
        try:
            sent = self._send("\n".join(fields))
        except Exception as exc:  # never let a status line take the daemon down
            self._log_failure(f"{type(exc).__name__}: {exc}")
            return
        if sent is False:
            self._log_failure("sd_notify returned false")

    def _log_failure(self, reason: str) -> None:
        if self._send_failed_logged:
            return
        self._send_failed_logged = True
        log.debug("sd_notify failed (%s); further failures are not logged", reason)

    def _watchdog_usec(self, environ: Mapping[str, str]) -> int | None:
        raw_usec = environ.get("WATCHDOG_USEC")
        if not raw_usec:
            return None
        raw_pid = environ.get("WATCHDOG_PID")
        if raw_pid:
            try:
                watchdog_pid = int(raw_pid)
            except ValueError:
                log.warning("ignoring the watchdog: WATCHDOG_PID=%r is not a pid", raw_pid)
                return None
            if watchdog_pid != self._pid:
                # The pings are owed by another process (e.g. our parent kept the variable).
                return None
        try:
            usec = int(raw_usec)
        except ValueError:
            usec = 0
        if usec <= 0:
            log.warning("ignoring the watchdog: WATCHDOG_USEC=%r is not a positive integer", raw_usec)
            return None
        return usec


def _one_line(text: str) -> str:
    # A newline would end the STATUS= field and start a bogus assignment.
    return " ".join(str(text).split())


def _status_field(text: str) -> str:
    return f"STATUS={_one_line(text)}"


__all__ = ["WATCHDOG_PING_FRACTION", "SystemdNotifier"]

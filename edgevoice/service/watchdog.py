"""The systemd watchdog: ping only while every part of the daemon makes progress.

Three pieces, after the project's rule of decisions without I/O:

- :class:`Heartbeat`: a progress marker a thread updates with :meth:`Heartbeat.beat`
  (one clock read and one attribute store; no lock, since only the owning thread writes).
  The capture thread beats after every period it reads, so a ``read()`` blocked on a
  stalled device stops the beats. The playback thread beats after every period it writes
  *and* after every bounded wait for more audio (``queue.get(timeout=...)``), so a healthy
  idle speaker keeps beating while a ``write()`` blocked on a stalled device does not.
  A component created with ``idle_allowed=True`` may also wrap an unbounded wait in
  :meth:`Heartbeat.idle`, during which silence is not a stall.
- :class:`WatchdogPolicy`: sans-IO; given heartbeat samples and ``now`` it decides
  whether to ping and which components stalled or recovered since the last look.
- :func:`run_watchdog`: the asyncio task. That it runs at all is the proof that the
  event loop is alive; it pings systemd at the notifier's interval while the policy
  allows, logs once when a component stalls (naming it) and once when it recovers.

If a component stays stalled, the pings stop and systemd kills the service with SIGABRT
after ``WatchdogSec``; :func:`enable_crash_dumps` makes that signal print every thread's
Python stack to stderr (the journal) first, so the stall can be diagnosed.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from edgevoice.service.notify import SystemdNotifier

log = logging.getLogger(__name__)

Clock = Callable[[], float]

# Capture beats every 20 ms and playback at least every bounded wait; 5 s without a beat
# is a stall by any measure, and still well inside a 20 s WatchdogSec.
DEFAULT_STALL_AFTER_S = 5.0
# How often to look when systemd asked for no pings (stalls are still logged).
DEFAULT_CHECK_INTERVAL_S = 2.0


class Heartbeat:
    """Last-progress time of one component, written by its thread, read by the watchdog."""

    def __init__(self, *, idle_allowed: bool = False, clock: Clock = time.monotonic) -> None:
        self.idle_allowed = idle_allowed
        self._clock = clock
        self.last_progress: float = clock()
        self._idle = False
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"Heartbeat(idle_allowed={self.idle_allowed}, last_progress={self.last_progress:.3f})"

    def beat(self) -> None:
        """Record progress now. Cheap enough for every audio period."""
        self.last_progress = self._clock()

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Mark an unbounded wait that is not a stall (only for ``idle_allowed`` heartbeats)."""
        if not self.idle_allowed:
            raise ValueError("this heartbeat was not created with idle_allowed=True")
        self._idle = True
        try:
            yield
        finally:
            self._idle = False
            self.beat()

    def attach_thread(self, thread: threading.Thread | None = None) -> None:
        """Tie the heartbeat to a thread (default: the calling one): its exit is a stall."""
        self._thread = thread if thread is not None else threading.current_thread()
        self.beat()

    def sample(self, name: str) -> HeartbeatSample:
        thread = self._thread
        return HeartbeatSample(
            name=name,
            last_progress=self.last_progress,
            idle=self._idle,
            thread_alive=None if thread is None else thread.is_alive(),
        )


@dataclass(frozen=True)
class HeartbeatSample:
    name: str
    last_progress: float
    idle: bool
    # None: no thread attached (liveness judged by progress alone).
    thread_alive: bool | None


@dataclass(frozen=True)
class Stall:
    name: str
    # "silent" (no progress) or "exited" (its thread is gone); a change of kind is news.
    kind: str
    reason: str

    def describe(self) -> str:
        return f"{self.name} ({self.reason})"


@dataclass(frozen=True)
class WatchdogVerdict:
    ping: bool
    stalled: tuple[Stall, ...]
    newly_stalled: tuple[Stall, ...]
    recovered: tuple[str, ...]


class WatchdogPolicy:
    """Decides from heartbeat samples whether the daemon deserves a watchdog ping."""

    def __init__(self, stall_after_s: float = DEFAULT_STALL_AFTER_S) -> None:
        if stall_after_s <= 0:
            raise ValueError("stall_after_s must be positive")
        self.stall_after_s = stall_after_s
        # name -> kind of the stalls reported so far
        self._stalled: dict[str, str] = {}

    def evaluate(self, samples: Iterable[HeartbeatSample], now: float) -> WatchdogVerdict:
        stalled = [stall for sample in samples if (stall := self._stall(sample, now)) is not None]
        kinds = {stall.name: stall.kind for stall in stalled}
        newly = tuple(stall for stall in stalled if self._stalled.get(stall.name) != stall.kind)
        recovered = tuple(sorted(set(self._stalled) - set(kinds)))
        self._stalled = kinds
        return WatchdogVerdict(
            ping=not stalled, stalled=tuple(stalled), newly_stalled=newly, recovered=recovered
        )

    def _stall(self, sample: HeartbeatSample, now: float) -> Stall | None:
        if sample.thread_alive is False:
            return Stall(sample.name, "exited", "its thread has exited")
        if sample.idle:
            return None
        silent_for = now - sample.last_progress
        if silent_for > self.stall_after_s:
            return Stall(sample.name, "silent", f"no progress for {silent_for:.1f} s")
        return None


async def run_watchdog(
    notifier: SystemdNotifier,
    heartbeats: Mapping[str, Heartbeat],
    clock: Clock = time.monotonic,
    *,
    policy: WatchdogPolicy | None = None,
    check_interval_s: float | None = None,
) -> None:
    """Ping systemd's watchdog while every heartbeat progresses; runs until cancelled.

    ``clock`` must be the clock the heartbeats were created with. Without a systemd
    watchdog (``notifier.watchdog_interval_s`` None) the task still watches and logs
    stalls every ``check_interval_s``.
    """
    policy = policy or WatchdogPolicy()
    interval = check_interval_s or notifier.watchdog_interval_s or DEFAULT_CHECK_INTERVAL_S
    status_before_stall: str | None = None
    stall_status: str | None = None
    while True:
        samples = [heartbeat.sample(name) for name, heartbeat in heartbeats.items()]
        verdict = policy.evaluate(samples, clock())
        for stall in verdict.newly_stalled:
            log.error("watchdog: %s is stalled; withholding the systemd watchdog ping", stall.describe())
        for name in verdict.recovered:
            log.warning("watchdog: %s is making progress again", name)
        if verdict.newly_stalled:
            if stall_status is None:
                status_before_stall = notifier.last_status
            stall_status = "stalled: " + ", ".join(stall.describe() for stall in verdict.stalled)
            notifier.status(stall_status)
        elif verdict.ping and stall_status is not None:
            # Put back what the daemon said, unless it has said something newer since.
            if notifier.last_status == stall_status and status_before_stall is not None:
                notifier.status(status_before_stall)
            stall_status = status_before_stall = None
        if verdict.ping:
            notifier.watchdog()
        await asyncio.sleep(interval)


def enable_crash_dumps(file: TextIO = sys.stderr, dump_signal: int | None = signal.SIGUSR1) -> None:
    """Print all threads' Python stacks on a fatal signal, and on ``dump_signal`` on demand.

    ``faulthandler.enable`` covers SIGABRT, which systemd sends on a watchdog timeout
    (``faulthandler.register(SIGABRT)`` is refused for that reason: enable() owns it); the
    process then still dies of SIGABRT, so systemd records the watchdog failure.
    ``dump_signal`` (default SIGUSR1, ``systemctl kill -s USR1 edgevoice``) dumps the
    stacks and carries on.
    """
    faulthandler.enable(file=file, all_threads=True)
    if dump_signal is not None:
        faulthandler.register(dump_signal, file=file, all_threads=True, chain=False)


__all__ = [
    "DEFAULT_STALL_AFTER_S",
    "Heartbeat",
    "HeartbeatSample",
    "Stall",
    "WatchdogPolicy",
    "WatchdogVerdict",
    "enable_crash_dumps",
    "run_watchdog",
]

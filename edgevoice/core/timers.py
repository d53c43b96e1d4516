"""Kitchen timers kept on the device (sans-IO): set, query, cancel, ring, stop.

A timer runs on the monotonic clock while the daemon runs; its state is plain data with
the wall-clock end, so it survives a restart (:meth:`TimerBook.to_data` /
:meth:`TimerBook.from_data`). Both clocks are passed in; nothing here sleeps or reads a
clock. The caller arms one deadline (:meth:`TimerBook.next_deadline`) and calls
:meth:`TimerBook.advance` when it passes; the results say what to do:

- :class:`RingStarted`: a timer ended; the ring begins (or the timer joins a ring going on);
- :class:`RingPulse`: play the ring sound once more (the ring is a repeated earcon);
- :class:`RingStopped`: the ring is over (a button press, or the maximum ring time), and
  the model should be told, once, which timers ended.

A press while ringing stops the ring and is not a question (:meth:`TimerBook.press`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

TIMER_DATA_VERSION = 1
MAX_TIMER_S = 24 * 3600.0
MAX_NAME_CHARS = 40
DEFAULT_NAME = "timer"


@dataclass(frozen=True)
class Timer:
    name: str
    duration_s: float
    ends_at: float  # monotonic seconds

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.ends_at - now)


@dataclass(frozen=True)
class RingStarted:
    names: tuple[str, ...]  # the timers that ended now


@dataclass(frozen=True)
class RingPulse:
    pass


@dataclass(frozen=True)
class RingStopped:
    names: tuple[str, ...]  # every timer that rang
    by_press: bool
    ended_at: float  # when the first of them ended (monotonic): how old the news is


TimerAction = RingStarted | RingPulse | RingStopped


class TimerError(ValueError):
    """A request the user can be told about: it names what is wrong in plain words."""


def normalise_name(name: str | None) -> str:
    """``"The Pasta timer "`` -> ``"pasta"``: how a name is compared and shown."""
    text = (name or "").strip().lower()
    text = re.sub(r"^(the|my|a)\s+", "", text)
    text = re.sub(r"\s+timer$", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    return text or DEFAULT_NAME


def describe_duration(seconds: float) -> str:
    """``545`` -> ``"9 minutes 5 seconds"`` (rounded up to the second)."""
    total = max(0, math.ceil(seconds - 1e-9))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    for value, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second")):
        if value:
            parts.append(f"{value} {unit}{'s' if value != 1 else ''}")
    return " ".join(parts) or "0 seconds"


@dataclass
class TimerBook:
    """The device's timers. Not thread-safe: the event loop owns it."""

    max_ring_s: float = 60.0
    ring_period_s: float = 1.0
    max_timers: int = 10
    _timers: dict[str, Timer] = field(default_factory=dict)
    _ringing: list[str] = field(default_factory=list)
    _ring_started: float | None = None
    _ring_first_end: float | None = None
    _next_pulse: float | None = None

    # -- requests -------------------------------------------------------------------------

    def set(self, name: str | None, seconds: float, now: float) -> Timer:
        """Start (or restart) the timer ``name``. Raises :class:`TimerError`."""
        if not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0:
            raise TimerError("a timer needs a duration greater than zero")
        if seconds > MAX_TIMER_S:
            raise TimerError("a timer can run for at most 24 hours")
        key = normalise_name(name)
        if len(key) > MAX_NAME_CHARS:
            raise TimerError(f"a timer name can have at most {MAX_NAME_CHARS} characters")
        if key not in self._timers and len(self._timers) >= self.max_timers:
            raise TimerError(f"at most {self.max_timers} timers can run at once")
        if key in self._ringing:
            self._ringing.remove(key)
        timer = Timer(key, float(seconds), now + seconds)
        self._timers[key] = timer
        return timer

    def cancel(self, name: str | None) -> list[Timer]:
        """Cancel the named timer, or (``None``/``"all"``) every timer. Raises
        :class:`TimerError` when there is nothing of that name."""
        if name is not None and normalise_name(name) == "all":
            name = None
        if name is None:
            cancelled = list(self._timers.values())
            if not cancelled:
                raise TimerError("no timer is running")
            self._timers.clear()
            return cancelled
        timer = self.find(name)
        del self._timers[timer.name]
        return [timer]

    def find(self, name: str | None) -> Timer:
        """The timer the user means: by name, or the only one. Raises :class:`TimerError`."""
        if not self._timers:
            raise TimerError("no timer is running")
        if name is None or not name.strip():
            if len(self._timers) == 1:
                return next(iter(self._timers.values()))
            raise TimerError(
                "several timers are running; say which: " + ", ".join(sorted(self._timers))
            )
        key = normalise_name(name)
        if key in self._timers:
            return self._timers[key]
        if len(self._timers) == 1 and key == DEFAULT_NAME:
            return next(iter(self._timers.values()))
        raise TimerError(
            f"there is no {key} timer; running: " + ", ".join(sorted(self._timers))
        )

    def running(self, now: float) -> list[tuple[Timer, float]]:
        """Every running timer with the seconds it has left, soonest first."""
        return sorted(
            ((timer, timer.remaining_s(now)) for timer in self._timers.values()),
            key=lambda item: item[0].ends_at,
        )

    # -- time and the button --------------------------------------------------------------

    @property
    def ringing(self) -> tuple[str, ...]:
        return tuple(self._ringing)

    def next_deadline(self) -> float | None:
        deadlines = [timer.ends_at for timer in self._timers.values()]
        if self._ring_started is not None:
            deadlines.append(self._ring_started + self.max_ring_s)
            if self._next_pulse is not None:
                deadlines.append(self._next_pulse)
        return min(deadlines) if deadlines else None

    def advance(self, now: float) -> list[TimerAction]:
        actions: list[TimerAction] = []
        ended = sorted(
            (timer for timer in self._timers.values() if timer.ends_at <= now),
            key=lambda timer: timer.ends_at,
        )
        if ended:
            for timer in ended:
                del self._timers[timer.name]
                self._ringing.append(timer.name)
            if self._ring_started is None:
                self._ring_started = now
                self._ring_first_end = ended[0].ends_at
                self._next_pulse = now
            actions.append(RingStarted(tuple(timer.name for timer in ended)))
        if self._ring_started is None:
            return actions
        if now >= self._ring_started + self.max_ring_s:
            actions.append(self._stop(by_press=False))
            return actions
        if self._next_pulse is not None and now >= self._next_pulse:
            actions.append(RingPulse())
            self._next_pulse += self.ring_period_s
            if self._next_pulse <= now:
                # Never a burst of pulses after a late wake-up: the next one a period from now.
                self._next_pulse = now + self.ring_period_s
        return actions

    def press(self, now: float) -> RingStopped | None:
        """The button went down. While ringing: the ring stops and the press is used up
        (it starts no question). Otherwise None: the press is the user's to talk."""
        if self._ring_started is None:
            return None
        return self._stop(by_press=True)

    def _stop(self, *, by_press: bool) -> RingStopped:
        stopped = RingStopped(tuple(self._ringing), by_press, self._ring_first_end or 0.0)
        self._ringing.clear()
        self._ring_started = None
        self._ring_first_end = None
        self._next_pulse = None
        return stopped

    # -- persistence as data --------------------------------------------------------------

    def to_data(self, now: float, wall_now: float) -> dict[str, Any]:
        """The running timers as JSON-ready data, ends on the wall clock (a ringing one is
        not kept: a restart during a ring ends it)."""
        return {
            "version": TIMER_DATA_VERSION,
            "timers": [
                {
                    "name": timer.name,
                    "duration_s": timer.duration_s,
                    "ends_wall": wall_now + (timer.ends_at - now),
                }
                for timer, _left in self.running(now)
            ],
        }

    def restore(self, data: Any, now: float, wall_now: float) -> list[str]:
        """Load timers saved by :meth:`to_data`. A timer that ended while the daemon was
        down ends now (it rings at the next :meth:`advance`) if that was within the maximum
        ring time; older ones are dropped. Returns a problem per entry that could not be
        used (bad data is skipped, never raised)."""
        problems: list[str] = []
        if not isinstance(data, dict) or data.get("version") != TIMER_DATA_VERSION:
            return ["the saved timers have an unknown format; starting with none"]
        entries = data.get("timers")
        if not isinstance(entries, list):
            return ["the saved timers have no list of timers; starting with none"]
        for entry in entries:
            try:
                name = normalise_name(str(entry["name"]))
                duration = float(entry["duration_s"])
                ends_wall = float(entry["ends_wall"])
            except (KeyError, TypeError, ValueError):
                problems.append(f"skipped a saved timer that cannot be read: {entry!r:.80}")
                continue
            if not (math.isfinite(duration) and math.isfinite(ends_wall)):
                problems.append(f"skipped the saved {name} timer: not a finite time")
                continue
            left = ends_wall - wall_now
            if left < -self.max_ring_s:
                problems.append(f"the {name} timer ended while the device was off")
                continue
            self._timers[name] = Timer(name, duration, now + max(0.0, left))
        return problems


__all__ = [
    "DEFAULT_NAME",
    "RingPulse",
    "RingStarted",
    "RingStopped",
    "Timer",
    "TimerAction",
    "TimerBook",
    "TimerError",
    "describe_duration",
    "normalise_name",
]

"""The benchmark's recorder behind the device's metrics seam (:mod:`edgevoice.metrics`).

The daemon reports to whatever :class:`~edgevoice.metrics.Metrics` it is given; the
benchmark gives it a :class:`Probe`, and the reference client uses the same one. No clock
reads or logging happen here: callers pass the figures (or the times of the events) in.

Series (milliseconds):

- ``capture_to_wire_ms``: capture period read from ALSA -> its websocket frame written;
- ``release_to_activity_end_ms``: button callback -> activityEnd written;
- ``reply_to_speaker_ms``: reply chunk received -> its first sample handed to ALSA
  ``write()``, counted from when the speaker could take it (not while it was busy with
  earlier audio or still prebuffering);
- ``barge_in_ms``: press -> the sound card's queue dropped and the fade-out played;
- ``reconnect_ms``: LinkDown -> the next LinkUp (the resumed session ready);
- ``goaway_gap_ms``: the core closing a connection after a GoAway -> the next LinkUp;
- ``first_sound_ms``: button released -> the first sample of the next reply leaves the
  sound card, minus the emulator's scripted thinking time (the device's share);
- ``playback_underrun_t``: when an answer had a gap (seconds, monotonic clock).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from typing import Any

from edgevoice.core.events import GoAway, LinkDown, LinkUp
from edgevoice.metrics import Metrics


class Probe(Metrics):
    """Collects named series of samples (milliseconds unless the name says otherwise).

    ``add`` may be called from any thread (a list append is atomic under the GIL); the
    link-timing methods are called on the event loop only.
    """

    enabled = True

    def __init__(self, thinking_ms: float = 0.0) -> None:
        self.thinking_ms = thinking_ms
        self._released_t: float | None = None
        # Packed doubles: 8 bytes a sample, so a long run's probe barely shows in the RSS figures.
        self.series: dict[str, array[float]] = defaultdict(lambda: array("d"))
        self._down_t: float | None = None
        self._switch_t: float | None = None
        self._goaway_seen = False
        self.resumed_links = 0
        self.fresh_links = 0

    def add(self, name: str, value: float) -> None:
        self.series[name].append(value)

    def released(self, t: float) -> None:
        self._released_t = t

    def reply_audible(self, t: float) -> None:
        """Only the first reply after each release counts (not follow-ups)."""
        released_t, self._released_t = self._released_t, None
        if released_t is not None:
            self.add("first_sound_ms", (t - released_t) * 1000 - self.thinking_ms)

    # -- link timing (the daemon calls these from its dispatch) -------------------------------

    def link_event(self, event: LinkUp | LinkDown | GoAway) -> None:
        if isinstance(event, LinkUp):
            self.link_up(event.t, event.resumed)
        elif isinstance(event, LinkDown):
            self.link_down(event.t)
        else:
            self.goaway()

    @property
    def goaway_pending(self) -> bool:
        """A GoAway came and the connection it announced the end of is still the current one."""
        return self._goaway_seen

    def goaway(self) -> None:
        """The server announced it will close this connection."""
        self._goaway_seen = True

    def link_closed(self, t: float) -> None:
        """The core closed the connection on purpose (a GoAway switch times from here)."""
        if self._goaway_seen:
            self._goaway_seen = False
            self._switch_t = t

    def link_down(self, t: float) -> None:
        """The connection was lost: the reconnect times from here."""
        self._goaway_seen = False
        self._switch_t = None
        if self._down_t is None:
            self._down_t = t

    def link_up(self, t: float, resumed: bool) -> None:
        if resumed:
            self.resumed_links += 1
        else:
            self.fresh_links += 1
        if self._down_t is not None:
            self.add("reconnect_ms", (t - self._down_t) * 1000)
        elif self._switch_t is not None:
            self.add("goaway_gap_ms", (t - self._switch_t) * 1000)
        self._down_t = None
        self._switch_t = None

    def snapshot(self) -> dict[str, Any]:
        """The series and counters as plain JSON-able data."""
        return {
            "series": {name: list(values) for name, values in self.series.items()},
            "resumed_links": self.resumed_links,
            "fresh_links": self.fresh_links,
        }


class NullProbe(Metrics):
    """The probe switched off: the device's own do-nothing metrics (the overhead baseline)."""

    goaway_pending = False

    def link_event(self, event: LinkUp | LinkDown | GoAway) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"series": {}, "resumed_links": 0, "fresh_links": 0}

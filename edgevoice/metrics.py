"""The device's measuring seam: adapters report what they measure here, and only here.

The daemon always holds a :class:`Metrics`; this base records nothing and costs one method
call (and ``enabled`` lets a caller skip even the clock read). A measuring tool (the
benchmark) passes its own subclass in; the device never imports the tool. No clock reads
happen here: callers pass the figures (or the times of the events) in, taken from the
monotonic clock at the edge they measure.

Series the device reports (milliseconds):

- ``capture_to_wire_ms``: capture period read from ALSA -> its websocket frame written;
- ``release_to_activity_end_ms``: button callback -> activityEnd written;
- ``reply_to_speaker_ms``: reply chunk received -> its first sample handed to ALSA
  ``write()``, counted from when the speaker could take it;
- ``barge_in_ms``: press -> the sound card's queue dropped and the fade-out played.
- ``playback_underrun_t`` (seconds, monotonic): when an answer had a gap (the jitter
  buffer ran dry, or the card did because the speaker thread was late).

Conversation notices: ``released`` (the button was let go: an utterance ended) and
``reply_audible`` (the first sample of a reply leaves the sound card) let a tool time the
device's share of the time to first sound.

Link notices (``link_up``, ``link_down``, ``goaway``, ``link_closed``) let a tool time
reconnects and GoAway switches.
"""

from __future__ import annotations


class Metrics:
    """Receives measurements from any thread; this base discards them."""

    enabled = False

    def add(self, series: str, value: float) -> None:
        """One sample of a named series."""

    def released(self, t: float) -> None:
        """The push-to-talk button was released at monotonic time ``t``."""

    def reply_audible(self, t: float) -> None:
        """The first sample of a reply leaves the sound card at ``t`` (the card's queue
        ahead of it accounted for)."""

    def link_up(self, t: float, resumed: bool) -> None:
        """A session is ready (resumed or fresh) at monotonic time ``t``."""

    def link_down(self, t: float) -> None:
        """The connection was lost at ``t``."""

    def goaway(self) -> None:
        """The server announced that it will close this connection."""

    def link_closed(self, t: float) -> None:
        """The device closed the connection on purpose at ``t`` (e.g. to switch after a GoAway)."""


NO_METRICS = Metrics()

"""The device's measuring seam: adapters report what happens at their edges here, and only here.

The daemon always holds a :class:`Metrics`; this base records nothing and costs one method
call (and ``enabled`` lets a caller skip even the clock read). A measuring tool (the
benchmark) passes its own subclass in, which pairs the reports into figures; the device
never imports the tool. No clock reads happen here: each adapter reads the monotonic clock
at its own edge and passes the time in, with the domain identity of what it handled (a
capture position, an utterance number, a reply chunk's number), never a time carried
through the core.

What the adapters report:

- capture (the daemon's hand-off from the microphone thread): ``audio_captured``, samples
  ``[position, end)`` read from ALSA at ``t``;
- the Live link: ``audio_sent``, a websocket frame holding capture samples
  ``[position, end)`` written at ``t``; ``activity_end_sent``, utterance ``n``'s
  activityEnd written at ``t``; ``reply_received``, reply audio chunk ``k`` (its own
  running number, which the core passes on with the audio) received at ``t``;
- the button: ``pressed`` and ``released`` at ``t`` (its callback's time);
- the speaker: ``reply_written``, chunks ``k...`` begin in the buffer handed to ALSA
  ``write()`` at ``t``, with when the speaker could take them; ``silenced``, a
  stop's fade-out played out at ``t``; ``reply_audible``, the first sample of a reply
  leaves the sound card at ``t``; and ``add("playback_underrun_t", t)``, an answer had a
  gap (the jitter buffer ran dry, or the card did because the speaker thread was late).

From these a tool computes (milliseconds): ``capture_to_wire_ms`` (a capture period read ->
its websocket frame written), ``release_to_activity_end_ms`` (button callback ->
activityEnd written), ``reply_to_speaker_ms`` (a reply chunk received -> its first sample
handed to ALSA, counted from when the speaker could take it),
``barge_in_ms`` (press -> the sound card's queue dropped and the fade-out played) and
``first_sound_ms`` (release -> the reply audible).

Link notices (``link_up``, ``link_down``, ``goaway``, ``link_closed``) let a tool time
reconnects and GoAway switches.
"""

from __future__ import annotations

from collections.abc import Sequence


class Metrics:
    """Receives reports from any thread; this base discards them."""

    enabled = False

    def add(self, series: str, value: float) -> None:
        """One sample of a named series."""

    # -- capture and the link --------------------------------------------------------------

    def audio_captured(self, position: int, end: int, t: float) -> None:
        """Capture samples ``[position, end)`` were read from ALSA at ``t``."""

    def audio_sent(self, position: int, end: int, t: float) -> None:
        """A websocket frame holding capture samples ``[position, end)`` was written at ``t``."""

    def activity_end_sent(self, utterance: int, t: float) -> None:
        """Utterance ``utterance``'s activityEnd was written at ``t``."""

    def reply_received(self, chunk: int, t: float) -> None:
        """Reply audio chunk number ``chunk`` (counted by the link) was received at ``t``."""

    # -- the button ----------------------------------------------------------------------------

    def pressed(self, t: float) -> None:
        """The push-to-talk button was pressed at monotonic time ``t``."""

    def released(self, t: float) -> None:
        """The push-to-talk button was released at monotonic time ``t``."""

    # -- the speaker -----------------------------------------------------------------------

    def reply_written(self, chunks: Sequence[int], t: float, ready_t: float, woken_by: int | None) -> None:
        """Reply chunks ``chunks`` (the link's numbers) begin in the buffer handed to ALSA
        ``write()`` at ``t``. The speaker could take them since ``ready_t`` (it was busy
        with earlier audio until then), or, if it sat idle or prebuffering, since chunk
        ``woken_by`` arrived (``ready_t``, when the reply ended, if None)."""

    def silenced(self, t: float) -> None:
        """Playback was stopped (barge-in, interrupted or stale reply): silent at ``t``, the
        fade-out included."""

    def reply_audible(self, t: float) -> None:
        """The first sample of a reply leaves the sound card at ``t`` (the card's queue
        ahead of it accounted for)."""

    # -- the link's life -------------------------------------------------------------------

    def link_up(self, t: float, resumed: bool) -> None:
        """A session is ready (resumed or fresh) at monotonic time ``t``."""

    def link_down(self, t: float) -> None:
        """The connection was lost at ``t``."""

    def goaway(self) -> None:
        """The server announced that it will close this connection."""

    def link_closed(self, t: float) -> None:
        """The device closed the connection on purpose at ``t`` (e.g. to switch after a GoAway)."""


NO_METRICS = Metrics()

"""The microphone while nobody speaks: periods gathered in the card and read together.

The card here is a clock-paced stand-in (a real PCM cannot be made to report which reads
waited): period k is ready at start + (k + 1) periods; a read before that waits for it.
"""

from __future__ import annotations

import threading
import time

from edgevoice.audio.capture import Microphone, contiguous_runs

RATE = 16000
PERIOD = 160  # 10 ms


class PacedCard:
    def __init__(self) -> None:
        self.start = time.monotonic()
        self.taken = 0
        self.waited_reads = 0
        self.closed = threading.Event()

    def read(self) -> tuple[int, bytes]:
        ready_t = self.start + (self.taken + 1) * PERIOD / RATE
        delay = ready_t - time.monotonic()
        if delay > 0:
            self.waited_reads += 1
            # Pacing a simulated sound card by the clock, the way a blocking read waits.
            self.closed.wait(delay)
        pcm = (self.taken % 30000 + 1).to_bytes(2, "little") * PERIOD
        self.taken += 1
        return PERIOD, pcm

    def cut_short(self) -> None:
        """A card that only gives whole periods."""

    def close(self) -> None:
        self.closed.set()


class Sink:
    def __init__(self) -> None:
        self.periods: list[tuple[int, bytes, float]] = []
        self.handovers = 0
        self.lock = threading.Lock()
        self.enough = threading.Event()
        self.wanted = 0

    def __call__(self, periods: list[tuple[int, bytes, float]]) -> None:
        with self.lock:
            self.handovers += 1
            self.periods.extend(periods)
            if len(self.periods) >= self.wanted:
                self.enough.set()

    def wait_for(self, count: int) -> None:
        with self.lock:
            self.wanted = count
            if len(self.periods) >= count:
                return
            self.enough.clear()
        assert self.enough.wait(10), f"only {len(self.periods)} periods of {count}"


def start(read_ahead: int, batch: int) -> tuple[Microphone, PacedCard, Sink]:
    card, sink = PacedCard(), Sink()
    mic = Microphone(
        lambda: card, rate=RATE, period_frames=PERIOD, on_frames=sink, idle_read_ahead=read_ahead
    )
    mic.batch = batch
    mic.start(card)
    return mic, card, sink


def contiguous(periods: list[tuple[int, bytes, float]]) -> bool:
    """From position 0, each hand-over's piece (one period or several) where the last ended."""
    end = 0
    for position, pcm, _t in periods:
        if position != end or len(pcm) % (2 * PERIOD):
            return False
        end += len(pcm) // 2
    return True


def test_while_idle_the_thread_waits_for_the_card_once_per_stretch_not_once_per_period():
    mic, card, sink = start(read_ahead=8, batch=3)
    try:
        sink.wait_for(60)
        waited, taken, handovers = card.waited_reads, card.taken, sink.handovers
    finally:
        mic.stop()
    assert contiguous(sink.periods)  # nothing lost, nothing twice, in order
    # Without read-ahead every read waits (one wake-up per period).
    assert waited <= taken / 4, (waited, taken)
    # What a stretch gathered goes to the loop in one hand-over, not one per batch of 3.
    assert handovers <= len(sink.periods) / 5, (handovers, len(sink.periods))


def test_without_read_ahead_every_period_is_a_wake_up():
    mic, card, sink = start(read_ahead=0, batch=5)
    try:
        sink.wait_for(20)
        waited, taken = card.waited_reads, card.taken
    finally:
        mic.stop()
    assert contiguous(sink.periods)
    assert waited >= taken - 2


def test_a_press_during_an_idle_stretch_gets_every_earlier_period_first_and_none_after():
    mic, card, sink = start(read_ahead=4, batch=5)
    pressed = threading.Event()
    seen: dict[str, int] = {}
    try:
        sink.wait_for(12)

        def post(position: int) -> None:
            with sink.lock:
                seen["position"] = position
                seen["delivered"] = len(sink.periods) * PERIOD
            pressed.set()

        mic.stamp_and_post(post)
        assert pressed.wait(5)
        before = card.waited_reads
        sink.wait_for(len(sink.periods) + 20)
        after_press = card.waited_reads - before
    finally:
        mic.stop()
    # Every period before the press position was delivered before it; none after it.
    assert seen["delivered"] <= seen["position"] <= seen["delivered"] + PERIOD
    assert contiguous(sink.periods)
    # After a press every period goes at once again: a wake-up per period, no sleeping.
    # (The first few reads take what the card gathered while the thread slept.)
    assert mic.batch == 1 and after_press >= 14


def test_contiguous_periods_are_joined_into_one_event_each_run():
    a, b, c = b"\x01\x00" * 3, b"\x02\x00" * 3, b"\x03\x00" * 3
    # A reopened device counts afresh: a gap starts a new run; t is the newest read.
    periods = [(0, a, 1.0), (3, b, 2.0), (100, c, 3.0), (103, a, 4.0)]
    assert contiguous_runs(periods) == [(0, a + b, 2.0), (100, c + a, 4.0)]
    assert contiguous_runs([(7, a, 1.5)]) == [(7, a, 1.5)]
    assert contiguous_runs([]) == []



def test_what_the_card_gathered_before_a_press_goes_to_the_loop_in_one_piece():
    # A long idle stretch (200 ms); the press comes 100 ms into it, so the card holds
    # about ten periods when the thread wakes.
    mic, card, sink = start(read_ahead=20, batch=5)
    # Each hand-over: the card's count of reads that waited, and its periods.
    handovers: list[tuple[int, int]] = []

    def noting(periods: list[tuple[int, bytes, float]]) -> None:
        handovers.append((card.waited_reads, sum(len(pcm) // 2 // PERIOD for _, pcm, _ in periods)))
        sink(periods)

    mic._on_frames = noting
    pressed = threading.Event()
    at_press: dict[str, int] = {}

    def press() -> None:
        with sink.lock:
            at_press["waited"], at_press["handovers"] = card.waited_reads, len(handovers)
        mic.stamp_and_post(lambda _position: pressed.set())

    try:
        sink.wait_for(25)
        # The scenario's press, 100 ms into the stretch that began with the hand-over
        # just made; a later one only finds more in the card.
        timer = threading.Timer(0.1, press)
        timer.start()
        assert pressed.wait(5)
        sink.wait_for(len(sink.periods) + 15)
    finally:
        mic.stop()
    assert contiguous(sink.periods)  # nothing lost, nothing twice, in order
    # What went to the loop after the press before the thread waited for the card again:
    # what it held (a backlog of several periods) in at most three hand-overs (the
    # edge's own, the read the edge ended, and the rest in one piece), not one a period.
    at_once = [n for waited, n in handovers[at_press["handovers"]:] if waited == at_press["waited"]]
    assert sum(at_once) >= 3, handovers
    assert len(at_once) <= 3, handovers


def test_a_press_late_in_an_idle_stretch_keeps_its_own_sample():
    # A 200 ms stretch; the press comes 150 ms into it, with about fifteen periods still
    # in the card. Stamped at the newest delivered sample, it would take those fifteen as
    # spoken after the press: 150 ms more pre-roll than configured, heard from before the
    # button went down.
    mic, card, sink = start(read_ahead=20, batch=5)
    pressed = threading.Event()
    at_post: dict[str, int] = {}
    true_position: dict[str, int] = {}

    def post(position: int) -> None:
        with sink.lock:
            at_post["position"] = position
            at_post["delivered"] = sum(len(pcm) // 2 for _p, pcm, _t in sink.periods)
        pressed.set()

    def press() -> None:
        true_position["press"] = int((time.monotonic() - card.start) * RATE)
        mic.stamp_and_post(post)

    try:
        sink.wait_for(25)  # a hand-over has just been made: a stretch begins
        timer = threading.Timer(0.15, press)
        timer.start()
        assert pressed.wait(5)
        sink.wait_for(len(sink.periods) + 10)
    finally:
        mic.stop()
    assert contiguous(sink.periods)
    # Its own sample, within a period or two (the clock's anchor, the timer's lateness)...
    assert abs(at_post["position"] - true_position["press"]) <= 2 * PERIOD, (at_post, true_position)
    # ...and still every period before it delivered first, none after it.
    assert at_post["delivered"] <= at_post["position"] <= at_post["delivered"] + PERIOD, at_post


class StallingCard(PacedCard):
    """A paced card that stops delivering (a USB glitch): each read then waits and gives
    nothing, as AlsaCapture's read does when its poll times out."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()

    def read(self) -> tuple[int, bytes]:
        if self.stalled.is_set():
            self.closed.wait(0.05)  # the wait a stalled card's poll makes before giving up
            return 0, b""
        return super().read()


def test_a_press_is_posted_even_when_the_card_stops_delivering():
    card, sink = StallingCard(), Sink()
    mic = Microphone(lambda: card, rate=RATE, period_frames=PERIOD, on_frames=sink, idle_read_ahead=8)
    mic.batch = 3
    mic.start(card)
    posted = threading.Event()
    at: dict[str, int] = {}

    def post(position: int) -> None:
        at["position"] = position
        posted.set()

    try:
        sink.wait_for(10)
        card.stalled.set()
        with sink.lock:
            delivered = sum(len(pcm) // 2 for _p, pcm, _t in sink.periods)
        # Stamped well past what was delivered: the card should hold that much, but never
        # gives it. The press still reaches the loop, at most a read past the last audio.
        mic.stamp_and_post(post, exact=lambda: delivered + 10 * PERIOD)
        assert posted.wait(5)
    finally:
        mic.stop()
    assert at["position"] <= sum(len(pcm) // 2 for _p, pcm, _t in sink.periods) + PERIOD

"""The adaptive jitter target on the bench's chunk patterns, in virtual time (no clock).

A small model of the speaker drives the buffer: a sound card holding the daemon's 20 ms
periods drains one frame per 1/24000 s of virtual time; the speaker pulls its next write
(:func:`frames_to_pull`: two periods at once while a reply plays with that much queued)
and blocks until the card has room for it, saying the card is starving only when it
holds less than :func:`starving_below` (what ``Speaker`` does). Reply chunks arrive on the
bench's scripted patterns.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.audio.jitter import AdaptiveTarget, JitterBuffer
from edgevoice.audio.playback import frames_to_pull, starving_below
from edgevoice.service.devices import PLAYBACK_PERIODS, PLAYBACK_WRITE_PERIODS
from edgevoice_testbed.bench.script import CHUNK_PATTERNS

RATE = 24000
PERIOD = 480  # 20 ms
CARD = PLAYBACK_PERIODS * PERIOD
WRITE = PLAYBACK_WRITE_PERIODS * PERIOD
STARVING_BELOW = starving_below(PERIOD)
FRAMES_PER_MS = RATE // 1000
REPLY_MS = 4600


def ramp(start: int, frames: int) -> bytes:
    return (np.arange(start, start + frames) % 32000 + 1).astype("<i2").tobytes()


def arrivals(pattern: list[list[float]], reply_ms: int = REPLY_MS) -> list[tuple[int, int]]:
    """(arrival ms, frames) of every chunk of a reply sent on ``pattern`` (repeated)."""
    out = []
    t = 0.0
    sent = 0
    index = 0
    while sent < reply_ms * FRAMES_PER_MS:
        chunk_ms, gap_ms = pattern[index % len(pattern)]
        frames = min(round(chunk_ms * FRAMES_PER_MS), reply_ms * FRAMES_PER_MS - sent)
        out.append((round(t), frames))
        sent += frames
        t += gap_ms
        index += 1
    return out


class CardModel:
    def __init__(self, jb: JitterBuffer) -> None:
        self.jb = jb
        self.held = 0
        self.out = bytearray()
        self.first_sound_ms: list[float] = []
        self.card_xruns = 0
        self.writes: list[int] = []
        # The write the speaker has pulled and is blocked in (the card has no room yet).
        self.pending: bytes | None = None

    def tick(self, now_ms: int) -> None:
        """One virtual millisecond: the speaker fills the card, then the card plays 1 ms.

        As the speaker thread does, it pulls its next write first and then blocks until
        the card has room for all of it: what it has pulled leads what has been heard by
        the card's depth and a write."""
        while True:
            if self.pending is not None:
                if self.held > CARD - len(self.pending) // 2:
                    break  # blocked in write()
                self.held += len(self.pending) // 2
                self.pending = None
            frames = frames_to_pull(self.jb, PERIOD, WRITE)
            holds = self.held if self.jb.playing else None
            pulled = self.jb.pull(frames, device_starving=False, device_holds=holds)
            if pulled.kind == "idle" and self.jb.playing and self.held < STARVING_BELOW:
                pulled = self.jb.pull(PERIOD, device_starving=True)
            if pulled.kind == "idle":
                break
            if pulled.starts_reply:
                self.first_sound_ms.append(now_ms + self.held / FRAMES_PER_MS)
            self.out += pulled.pcm
            self.writes.append(len(pulled.pcm) // 2)
            self.pending = pulled.pcm
        if self.held == 0 and self.jb.playing:
            self.card_xruns += 1
        self.held = max(0, self.held - FRAMES_PER_MS)


def play(jb: JitterBuffer, replies: list[list[tuple[int, int]]], tail_ms: int = 3000) -> CardModel:
    """Push each reply's chunks at their times (end_of_reply with the last), run the card."""
    card = CardModel(jb)
    events: dict[int, list[tuple[bytes | None]]] = {}  # (pcm,) or (None,): end of the reply
    position = 0
    for chunks in replies:
        for i, (t, frames) in enumerate(chunks):
            events.setdefault(t, []).append((ramp(position, frames),))
            position += frames
            if i == len(chunks) - 1:
                events[t].append((None,))
    end = max(events) + tail_ms
    for now in range(end):
        for (pcm,) in events.get(now, ()):
            if pcm is None:
                jb.end_of_reply()
            else:
                jb.push(pcm)
        card.tick(now)
    return card


def adaptive() -> JitterBuffer:
    return JitterBuffer(RATE, fade_ms=5, adaptive=AdaptiveTarget())


def audio_only(card: CardModel) -> bytes:
    samples = np.frombuffer(bytes(card.out), dtype="<i2")
    return samples[samples != 0].tobytes()


@pytest.mark.parametrize("name", ["small", "bursts"])
def test_small_chunks_and_bursts_play_without_an_underrun(name):
    jb = adaptive()
    card = play(jb, [arrivals(CHUNK_PATTERNS[name])])
    assert jb.counters.underruns == 0 and card.card_xruns == 0
    # Everything played, in order, once.
    assert audio_only(card) == ramp(0, REPLY_MS * FRAMES_PER_MS)
    # It started with the first chunk (it holds a whole period): no waiting at all.
    assert card.first_sound_ms == [0]


@pytest.mark.parametrize("late_ms", [1, 2, 3, 4])
def test_small_chunks_that_come_a_few_ms_late_still_play_without_a_gap(late_ms):
    # The first chunk on time, every later one late: the pattern's first chunks come
    # exactly when the card holds half a period, so this is the closest call it makes.
    chunks = arrivals(CHUNK_PATTERNS["small"])
    late = chunks[:1] + [(t + late_ms, frames) for t, frames in chunks[1:]]
    jb = adaptive()
    card = play(jb, [late])
    assert jb.counters.underruns == 0 and card.card_xruns == 0
    assert audio_only(card) == ramp(0, REPLY_MS * FRAMES_PER_MS)


def test_a_server_slower_than_real_time_for_two_seconds_gives_one_gap_then_none():
    jb = adaptive()
    card = play(jb, [arrivals(CHUNK_PATTERNS["slow"])])
    assert jb.counters.underruns == 1
    assert card.card_xruns == 0
    assert audio_only(card) == ramp(0, REPLY_MS * FRAMES_PER_MS)
    # The one gap is long (it outlasts the slow stretch) rather than a stutter per chunk.
    assert jb.counters.underrun_frames >= 1000 * FRAMES_PER_MS
    assert jb.counters.target_raises == 1


def test_the_fixed_100_ms_prebuffer_stutters_where_the_adaptive_target_does_not():
    # The old behaviour on the same "slow" server: a gap for nearly every late chunk.
    fixed = JitterBuffer(RATE, prebuffer_ms=100)
    play(fixed, [arrivals(CHUNK_PATTERNS["slow"])])
    assert fixed.counters.underruns > 5


def test_the_target_grows_only_after_an_underrun_and_shrinks_after_a_quiet_stretch():
    jb = JitterBuffer(RATE, adaptive=AdaptiveTarget(start_ms=0, step_ms=40, max_ms=400, shrink_after_ms=2000))
    assert jb.target_ms == 0
    # A reply that keeps up: no change.
    play(jb, [arrivals([[200, 100]], reply_ms=1000)])
    assert jb.target_ms == 0 and jb.counters.target_raises == 0
    # One late chunk: an underrun, the target grows by a step.
    play(jb, [[(0, 20 * FRAMES_PER_MS), (300, 400 * FRAMES_PER_MS)]])
    assert jb.counters.underruns == 1 and jb.target_ms == pytest.approx(40)
    # The next reply starts once the target is queued: 40 ms, not with a 20 ms chunk.
    card = play(jb, [[(0, 20 * FRAMES_PER_MS), (10, 20 * FRAMES_PER_MS), (20, 960 * FRAMES_PER_MS)]])
    assert card.first_sound_ms == [pytest.approx(10, abs=1)]
    # Two seconds of playing without an underrun take it a step back down.
    play(jb, [arrivals([[200, 100]], reply_ms=2200)])
    assert jb.target_ms == 0 and jb.counters.target_cuts == 1


def test_the_target_never_exceeds_its_maximum():
    jb = JitterBuffer(RATE, adaptive=AdaptiveTarget(max_ms=100))
    for _ in range(5):
        play(jb, [[(0, 300 * FRAMES_PER_MS), (600, 200 * FRAMES_PER_MS)]], tail_ms=500)
    assert jb.counters.underruns == 5 and jb.target_ms == pytest.approx(100)


def test_a_reply_that_ends_during_a_gap_plays_what_is_left_at_once():
    jb = adaptive()
    # A first chunk, a long silence, then a short last chunk and the end of the reply.
    card = play(jb, [[(0, 20 * FRAMES_PER_MS), (200, 10 * FRAMES_PER_MS)]])
    assert audio_only(card) == ramp(0, 30 * FRAMES_PER_MS)
    assert not jb.playing and jb.counters.underruns == 1


def test_barge_in_during_a_gap_drops_everything_and_the_next_reply_starts_clean():
    jb = adaptive()
    jb.push(ramp(0, PERIOD))
    assert jb.pull(PERIOD, device_starving=True).starts_reply
    assert jb.pull(PERIOD, device_starving=True).kind == "underrun"
    jb.push(ramp(PERIOD, 10))  # below the grown target: still in the gap
    assert jb.pull(PERIOD, device_starving=True).kind == "underrun"
    assert jb.interrupt() == 10
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    jb.push(ramp(0, 2 * PERIOD))
    first = jb.pull(PERIOD, device_starving=True)
    assert first.kind == "audio" and first.starts_reply and first.pcm == ramp(0, PERIOD)


def test_volume_and_fade_apply_in_adaptive_mode():
    jb = JitterBuffer(RATE, fade_ms=5, volume=0.5, adaptive=AdaptiveTarget())
    jb.push(ramp(1000, 3 * PERIOD))
    out = np.frombuffer(jb.pull(PERIOD, device_starving=True).pcm, dtype="<i2")
    assert np.array_equal(out, np.rint(np.frombuffer(ramp(1000, PERIOD), dtype="<i2") * 0.5))
    jb.interrupt()
    fade = jb.pull(PERIOD, device_starving=True)
    assert fade.audio_frames == 120 and np.frombuffer(fade.pcm, dtype="<i2")[119] == 0


def test_an_unpaced_sink_never_gets_invented_silence_in_adaptive_mode():
    jb = adaptive()
    jb.push(ramp(0, PERIOD + 100))
    assert jb.pull(PERIOD, device_starving=False).kind == "audio"
    assert jb.pull(PERIOD, device_starving=False).kind == "idle"
    assert jb.counters.underruns == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_ms": -1}, "step_ms"),
        ({"start_ms": 500, "max_ms": 400}, "start_ms"),
        ({"catch_up_ms": float("inf")}, "catch_up_ms"),
    ],
)
def test_bad_adaptive_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdaptiveTarget(**kwargs)


@settings(max_examples=60, deadline=None)
@given(
    jitter=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=20),
    chunk_ms=st.sampled_from([20, 30, 40]),
)
def test_small_late_chunks_give_at_most_one_underrun_then_none(jitter, chunk_ms):
    # A server 1.25x faster than real time whose chunks each come up to 15 ms late: the
    # buffer starts with the first chunk, so a late one early on may cost one gap; the
    # grown target absorbs every later one.
    base = arrivals([[chunk_ms, chunk_ms / 1.25]], reply_ms=2000)
    late = [(t + jitter[i % len(jitter)], frames) for i, (t, frames) in enumerate(base)]
    late = [(max(t, late[i - 1][0]) if i else t, frames) for i, (t, frames) in enumerate(late)]
    jb = adaptive()
    card = play(jb, [late])
    assert jb.counters.underruns <= 1 and card.card_xruns == 0
    assert audio_only(card) == ramp(0, 2000 * FRAMES_PER_MS)


def test_answers_without_a_gap_leave_no_record_behind():
    # The buffer keeps the arrivals of the last catch-up window only: a device that answers
    # for months without an underrun must not remember every chunk it ever received.
    jb = JitterBuffer(RATE, adaptive=AdaptiveTarget())
    for _ in range(50):
        play(jb, [arrivals([[200, 100]], reply_ms=1000)])
    assert jb.counters.underruns == 0
    window_chunks = AdaptiveTarget().catch_up_ms // 20 + 2
    assert len(jb._arrivals) <= window_chunks


def test_an_answer_that_keeps_ahead_is_written_two_periods_at_a_time_after_a_first_period_alone():
    jb = adaptive()
    card = play(jb, [arrivals([[40.0, 20.0]])])  # twice real time: the queue stays ahead
    assert jb.counters.underruns == 0 and card.card_xruns == 0
    assert audio_only(card) == ramp(0, REPLY_MS * FRAMES_PER_MS)
    # The first sound goes at once, alone; then the speaker wakes about half as often.
    assert card.writes[0] == PERIOD and card.first_sound_ms == [0]
    periods = REPLY_MS * FRAMES_PER_MS // PERIOD
    assert card.writes.count(WRITE) >= periods // 2 - 2, card.writes
    assert len(card.writes) <= periods // 2 + 3, card.writes

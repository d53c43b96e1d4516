"""Jitter buffer: prebuffering, bursts, underruns, reply ends, interrupt fades, volume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.audio.jitter import JitterBuffer

RATE = 24000
PERIOD = 240  # 10 ms device period


def ramp_pcm(start: int, frames: int) -> bytes:
    """Distinct, nonzero, increasing sample values: any loss, repeat or swap shows."""
    return (np.arange(start, start + frames) % 32000 + 1).astype("<i2").tobytes()


def tone_pcm(ms: float, amplitude: float = 0.9, hz: float = 1000.0, start: int = 0) -> bytes:
    n = round(RATE * ms / 1000)
    t = (np.arange(n) + start) / RATE
    return np.rint(amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def as_samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def test_waits_for_prebuffer_then_plays():
    jb = JitterBuffer(RATE, prebuffer_ms=100)
    jb.push(ramp_pcm(0, 2399))  # one frame short of 100 ms
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert not jb.playing
    jb.push(ramp_pcm(2399, 1))
    first = jb.pull(PERIOD, device_starving=True)
    assert first.kind == "audio" and first.pcm == ramp_pcm(0, PERIOD)
    assert jb.playing
    assert jb.buffered_ms == pytest.approx(90.0)


def test_short_reply_plays_on_end_of_reply_without_prebuffer():
    jb = JitterBuffer(RATE, prebuffer_ms=100)
    jb.push(ramp_pcm(0, 300))
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    jb.end_of_reply()
    first = jb.pull(PERIOD, device_starving=True)
    second = jb.pull(PERIOD, device_starving=True)
    assert first.pcm == ramp_pcm(0, PERIOD)
    # The reply ends mid-period: its last 60 frames, then silence; no underrun counted.
    assert second.kind == "audio" and second.audio_frames == 60
    assert second.pcm == ramp_pcm(PERIOD, 60) + bytes((PERIOD - 60) * 2)
    assert not jb.playing
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert jb.counters.underruns == 0 and jb.counters.played_frames == 300


def test_dry_queue_mid_reply_gives_counted_underrun_only_when_device_starves():
    jb = JitterBuffer(RATE, prebuffer_ms=10)
    jb.push(ramp_pcm(0, PERIOD + 100))
    assert jb.pull(PERIOD, device_starving=True).kind == "audio"

    # An unpaced sink: never invent silence, wait for data.
    assert jb.pull(PERIOD, device_starving=False).kind == "idle"
    assert jb.counters.underruns == 0

    partial = jb.pull(PERIOD, device_starving=True)
    assert partial.kind == "audio" and partial.audio_frames == 100
    assert partial.pcm == ramp_pcm(PERIOD, 100) + bytes((PERIOD - 100) * 2)
    silence = jb.pull(PERIOD, device_starving=True)
    assert silence.kind == "underrun" and silence.pcm == bytes(PERIOD * 2)
    # One dry spell, however many periods it lasts.
    assert jb.counters.underruns == 1
    assert jb.counters.underrun_frames == (PERIOD - 100) + PERIOD
    assert jb.playing

    jb.push(ramp_pcm(PERIOD + 100, PERIOD))
    assert jb.pull(PERIOD, device_starving=True).pcm == ramp_pcm(PERIOD + 100, PERIOD)
    jb.pull(PERIOD, device_starving=True)
    assert jb.counters.underruns == 2


def test_end_of_reply_after_the_queue_ran_dry_ends_the_reply():
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    jb.push(ramp_pcm(0, PERIOD))
    jb.pull(PERIOD, device_starving=True)
    assert jb.playing
    jb.end_of_reply()
    assert not jb.playing
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert jb.counters.underruns == 0


def test_audio_pushed_after_end_of_reply_belongs_to_the_next_reply():
    jb = JitterBuffer(RATE, prebuffer_ms=100)
    jb.push(ramp_pcm(0, 2400))
    jb.end_of_reply()
    jb.push(ramp_pcm(2400, 1000))  # next reply, below its prebuffer
    out = [jb.pull(PERIOD, device_starving=True) for _ in range(10)]
    assert b"".join(p.pcm for p in out) == ramp_pcm(0, 2400)
    # The first reply is over; the second waits for its own prebuffer.
    assert not jb.playing
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    jb.push(ramp_pcm(3400, 1400))
    assert jb.pull(PERIOD, device_starving=True).pcm == ramp_pcm(2400, PERIOD)


def test_empty_reply_is_a_no_op():
    jb = JitterBuffer(RATE)
    jb.end_of_reply()
    jb.end_of_reply()
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    jb.push(ramp_pcm(0, 100))
    jb.end_of_reply()
    assert jb.pull(PERIOD, device_starving=True).audio_frames == 100


def simulate_bursts(burst_chunks: int, seconds: float = 3.0) -> JitterBuffer:
    """Every 300 ms a burst of ``burst_chunks`` x 200 ms of reply audio arrives; the device
    takes a 10 ms period every 10 ms of virtual time."""
    jb = JitterBuffer(RATE, prebuffer_ms=100)
    chunk = RATE * 200 // 1000
    pushed = 0
    for tick in range(int(seconds * 100)):
        now_ms = tick * 10
        if now_ms % 300 == 0:
            for _ in range(burst_chunks):
                jb.push(ramp_pcm(pushed, chunk))
                pushed += chunk
        jb.pull(PERIOD, device_starving=True)
    return jb


def test_bursty_input_that_keeps_up_on_average_never_underruns():
    # 400 ms of audio every 300 ms: faster than real time on average, but in lumps.
    jb = simulate_bursts(burst_chunks=2)
    assert jb.counters.underruns == 0
    assert jb.counters.played_frames == 300 * PERIOD


def test_bursty_input_that_falls_behind_underruns():
    # 200 ms every 300 ms cannot keep up: the counters must say so.
    jb = simulate_bursts(burst_chunks=1)
    assert jb.counters.underruns >= 9
    assert jb.counters.underrun_frames > 0


def test_interrupt_fades_out_from_where_playback_was_without_a_click():
    jb = JitterBuffer(RATE, prebuffer_ms=50, fade_ms=5)
    jb.push(tone_pcm(500))
    played = b"".join(jb.pull(PERIOD, device_starving=True).pcm for _ in range(3))

    dropped = jb.interrupt()
    assert not jb.playing
    fade_frames = RATE * 5 // 1000
    assert dropped == RATE // 2 - 3 * PERIOD - fade_frames

    fade = jb.pull(PERIOD, device_starving=True)
    assert fade.kind == "audio" and fade.audio_frames == fade_frames
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"

    # What would have played next, and what did.
    expected_next = as_samples(tone_pcm(500))[3 * PERIOD : 3 * PERIOD + fade_frames]
    faded = as_samples(fade.pcm)[:fade_frames]
    assert np.all(np.abs(faded) <= np.abs(expected_next))
    assert faded[-1] == 0 and not np.any(as_samples(fade.pcm)[fade_frames:])

    # No step larger than the tone's own slope plus what the ramp's slope allows.
    amplitude = 0.9 * 32767
    tone_step = 2 * math.pi * 1000 * amplitude / RATE
    ramp_step = amplitude * math.pi / (2 * fade_frames)
    joined = np.concatenate([as_samples(played)[-1:], faded, [0]])
    assert np.max(np.abs(np.diff(joined))) <= tone_step + ramp_step + 2
    # The first faded sample continues the waveform: about the step it would have made.
    natural_step = expected_next[0] - as_samples(played)[-1]
    assert abs((faded[0] - as_samples(played)[-1]) - natural_step) <= 0.01 * amplitude + 2

    assert jb.counters.interrupts == 1
    assert jb.counters.played_frames == 3 * PERIOD + fade_frames
    assert jb.counters.dropped_frames == dropped


def test_interrupt_with_less_queued_than_the_fade_fades_what_is_there():
    jb = JitterBuffer(RATE, prebuffer_ms=0, fade_ms=5)
    jb.push(tone_pcm(10) + tone_pcm(2, start=240))  # 10 ms period + 48 frames
    jb.pull(PERIOD, device_starving=True)
    assert jb.interrupt() == 0
    fade = jb.pull(PERIOD, device_starving=True)
    assert fade.audio_frames == 48
    assert jb.counters.played_frames == PERIOD + 48 and jb.counters.dropped_frames == 0


def test_interrupt_during_an_underrun_has_nothing_to_fade():
    jb = JitterBuffer(RATE, prebuffer_ms=0, fade_ms=5)
    jb.push(tone_pcm(10))
    jb.pull(PERIOD, device_starving=True)
    assert jb.pull(PERIOD, device_starving=True).kind == "underrun"
    assert jb.interrupt() == 0
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert jb.counters.played_frames == PERIOD


def test_hard_cut_without_fade_drops_everything():
    jb = JitterBuffer(RATE, prebuffer_ms=50, fade_ms=0)
    jb.push(tone_pcm(500))
    jb.pull(PERIOD, device_starving=True)
    assert jb.interrupt() == RATE // 2 - PERIOD
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"


def test_interrupt_without_fade_drops_everything_at_once():
    jb = JitterBuffer(RATE, prebuffer_ms=50, fade_ms=5)
    jb.push(tone_pcm(500))
    jb.pull(PERIOD, device_starving=True)
    assert jb.interrupt(fade=False) == RATE // 2 - PERIOD
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert jb.counters.dropped_frames == RATE // 2 - PERIOD


def test_interrupt_before_playback_started_drops_without_fade():
    jb = JitterBuffer(RATE, prebuffer_ms=100)
    jb.push(ramp_pcm(0, 1000))
    assert jb.interrupt() == 1000
    assert jb.pull(PERIOD, device_starving=True).kind == "idle"
    assert jb.buffered_ms == 0


def test_new_reply_after_interrupt_plays_after_the_fade():
    jb = JitterBuffer(RATE, prebuffer_ms=10, fade_ms=5)
    jb.push(tone_pcm(100))
    jb.pull(PERIOD, device_starving=True)
    jb.interrupt()
    jb.push(ramp_pcm(0, PERIOD * 2))
    assert jb.pull(PERIOD, device_starving=True).audio_frames == 120  # the fade first
    assert jb.pull(PERIOD, device_starving=True).pcm == ramp_pcm(0, PERIOD)


def test_volume_one_is_bit_exact_and_other_volumes_scale_with_clipping():
    loud = tone_pcm(50, amplitude=1.0)
    unity = JitterBuffer(RATE, prebuffer_ms=0)
    unity.push(loud)
    assert b"".join(unity.pull(PERIOD, device_starving=True).pcm for _ in range(5)) == loud

    half = JitterBuffer(RATE, prebuffer_ms=0, volume=0.5)
    half.push(loud)
    out = as_samples(half.pull(PERIOD, device_starving=True).pcm)
    assert np.max(np.abs(out - np.rint(as_samples(loud)[:PERIOD] * 0.5))) == 0

    double = JitterBuffer(RATE, prebuffer_ms=0)
    double.volume = 2.0
    double.push(loud)
    out = as_samples(double.pull(PERIOD, device_starving=True).pcm)
    assert out.max() == 32767 and out.min() == -32768  # clipped, not wrapped
    expected = np.clip(as_samples(loud)[:PERIOD] * 2, -32768, 32767)
    assert np.array_equal(out, expected)


def test_odd_byte_pushes_are_reassembled():
    jb = JitterBuffer(RATE, prebuffer_ms=0)
    pcm = ramp_pcm(0, PERIOD)
    jb.push(pcm[:101])
    jb.push(pcm[101:])
    assert jb.pull(PERIOD, device_starving=True).pcm == pcm


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"prebuffer_ms": -1}, "prebuffer_ms"),
        ({"fade_ms": float("nan")}, "fade_ms"),
        ({"volume": 5.0}, "volume"),
        ({"volume": -0.1}, "volume"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        JitterBuffer(**kwargs)


def test_bad_pull_size_is_a_clear_error():
    with pytest.raises(ValueError, match="frames"):
        JitterBuffer().pull(0, device_starving=True)


# -- property tests ----------------------------------------------------------------------

def operations(max_push: int) -> st.SearchStrategy[list[tuple]]:
    return st.lists(
        st.one_of(
            st.tuples(st.just("push"), st.integers(1, max_push)),
            st.tuples(st.just("pull"), st.integers(1, 1000), st.booleans()),
            st.tuples(st.just("end")),
            st.tuples(st.just("interrupt")),
            st.tuples(st.just("volume"), st.sampled_from([0.0, 0.5, 1.0, 2.0])),
        ),
        max_size=60,
    )


def run_operations(jb: JitterBuffer, ops: list[tuple]) -> tuple[int, list[np.ndarray]]:
    pushed = 0
    heard: list[np.ndarray] = []
    for op in ops:
        if op[0] == "push":
            jb.push(ramp_pcm(pushed, op[1]))
            pushed += op[1]
        elif op[0] == "pull":
            result = jb.pull(op[1], device_starving=op[2])
            # Never longer than requested; exactly one period unless idle.
            if result.kind == "idle":
                assert result.pcm == b"" and result.audio_frames == 0
            else:
                assert len(result.pcm) == op[1] * 2
                assert 0 <= result.audio_frames <= op[1]
                assert (result.kind == "underrun") == (result.audio_frames == 0)
                tail = as_samples(result.pcm)[result.audio_frames :]
                assert not np.any(tail)
            heard.append(as_samples(result.pcm)[: result.audio_frames])
        elif op[0] == "end":
            jb.end_of_reply()
        elif op[0] == "interrupt":
            jb.interrupt()
        elif op[0] == "volume":
            jb.volume = op[1]
    return pushed, heard


@settings(max_examples=300, deadline=None)
@given(ops=operations(max_push=500), prebuffer_ms=st.sampled_from([0, 5, 100]))
def test_no_audio_duplicated_reordered_or_lost(ops, prebuffer_ms):
    # Volume fixed at 1 and no fade, so every sample heard is a pushed sample, unaltered.
    # At most 60 x 500 frames are pushed, so the ramp values 1, 2, 3, ... never wrap.
    ops = [op for op in ops if op[0] != "volume"]
    jb = JitterBuffer(RATE, prebuffer_ms=prebuffer_ms, fade_ms=0)
    pushed, heard = run_operations(jb, ops)
    sequence = np.concatenate([np.zeros(0, dtype=np.int64), *heard])
    # Heard audio is a strictly increasing subsequence of the pushed values: nothing
    # repeated, nothing out of order, nothing invented.
    assert np.all(np.diff(sequence) > 0)
    assert np.all((sequence >= 1) & (sequence <= pushed))
    queued = round(jb.buffered_ms * RATE / 1000)
    c = jb.counters
    assert c.played_frames == len(sequence)
    # Everything pushed was played, dropped by an interrupt, or is still queued.
    assert c.played_frames + c.dropped_frames + queued == pushed


@settings(max_examples=300, deadline=None)
@given(
    ops=operations(max_push=3000),
    prebuffer_ms=st.sampled_from([0, 5, 100]),
    fade_ms=st.sampled_from([1, 5]),
)
def test_accounting_holds_with_fades_and_volume(ops, prebuffer_ms, fade_ms):
    jb = JitterBuffer(RATE, prebuffer_ms=prebuffer_ms, fade_ms=fade_ms)
    pushed, heard = run_operations(jb, ops)
    queued = round(jb.buffered_ms * RATE / 1000)
    c = jb.counters
    assert c.played_frames == sum(len(h) for h in heard)
    assert c.played_frames + c.dropped_frames + queued == pushed
    assert c.interrupts == sum(1 for op in ops if op[0] == "interrupt")

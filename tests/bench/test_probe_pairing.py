"""The probe pairs the adapters' reports (by capture position, utterance number and reply
chunk number) into the benchmark's figures, counting only what each figure defines."""

from __future__ import annotations

import pytest

from edgevoice_testbed.bench.probe import Probe

PERIOD = 320  # 20 ms at 16 kHz


def figures(probe: Probe, name: str) -> list[float]:
    return list(probe.series.get(name, []))


def test_each_read_after_the_press_is_timed_to_the_first_frame_that_carries_it() -> None:
    probe = Probe()
    for n in range(10):
        probe.audio_captured(n * PERIOD, (n + 1) * PERIOD, n * 0.02)
    probe.pressed(0.185)  # after the period read at 0.18
    probe.audio_captured(10 * PERIOD, 11 * PERIOD, 0.2)
    # Pre-roll (read before the press: not counted) and the first read after it.
    probe.audio_sent(5 * PERIOD, 11 * PERIOD, 0.2005)
    probe.audio_captured(11 * PERIOD, 12 * PERIOD, 0.22)
    probe.audio_sent(11 * PERIOD, 12 * PERIOD, 0.2211)
    probe.audio_captured(12 * PERIOD, 13 * PERIOD, 0.24)
    probe.audio_sent(12 * PERIOD, 12 * PERIOD + 100, 0.2412)  # the release fell inside the read
    probe.audio_sent(12 * PERIOD + 100, 13 * PERIOD, 0.26)  # its rest, later: counted once
    assert figures(probe, "capture_to_wire_ms") == [
        pytest.approx(0.5), pytest.approx(1.1), pytest.approx(1.2)
    ]


def test_reads_joined_in_one_frame_each_count_from_their_own_read() -> None:
    probe = Probe()
    probe.pressed(0.0)
    # The card's backlog at a press: three reads in a millisecond, sent in one frame.
    for n, t in enumerate((0.0101, 0.0104, 0.0107)):
        probe.audio_captured(n * PERIOD, (n + 1) * PERIOD, t)
    probe.audio_sent(0, 3 * PERIOD, 0.0117)
    probe.audio_captured(3 * PERIOD, 4 * PERIOD, 0.03)
    probe.audio_sent(3 * PERIOD, 4 * PERIOD, 0.0306)
    probe.audio_sent(3 * PERIOD, 4 * PERIOD, 2.0)  # sent again after a reconnect: not counted
    assert figures(probe, "capture_to_wire_ms") == [
        pytest.approx(1.6), pytest.approx(1.3), pytest.approx(1.0), pytest.approx(0.6)
    ]


def test_periods_read_before_a_press_are_not_paired_with_its_pre_roll() -> None:
    probe = Probe()
    probe.audio_captured(0, PERIOD, 0.02)
    probe.pressed(0.03)
    probe.audio_sent(100, PERIOD, 0.031)  # pre-roll from just after a previous utterance's end
    assert figures(probe, "capture_to_wire_ms") == []


def test_a_resent_utterance_does_not_count_as_a_release_again() -> None:
    probe = Probe()
    probe.released(1.0)
    probe.activity_end_sent(1, 1.012)
    probe.activity_end_sent(1, 4.0)  # sent again after a reconnect
    probe.released(5.0)
    probe.activity_end_sent(2, 5.01)
    assert figures(probe, "release_to_activity_end_ms") == [pytest.approx(12.0), pytest.approx(10.0)]


def test_barge_in_is_the_first_silence_between_a_press_and_its_release() -> None:
    probe = Probe()
    probe.pressed(1.0)
    probe.silenced(1.007)
    probe.silenced(1.3)  # a later stop while still held: not this press's barge-in
    probe.released(2.0)
    probe.silenced(2.5)
    assert figures(probe, "barge_in_ms") == [pytest.approx(7.0)]


def test_a_reply_chunk_counts_from_when_the_speaker_could_take_it() -> None:
    probe = Probe()
    probe.reply_received(1, 1.0)
    probe.reply_received(2, 1.1)
    # Prebuffering until chunk 2 arrived: both count from then.
    probe.reply_written([1, 2], 1.1002, ready_t=0.5, woken_by=2)
    probe.reply_received(3, 1.2)  # stale: the core dropped it
    probe.reply_received(4, 1.3)  # dropped by a stop before it was written
    probe.reply_received(5, 1.4)
    probe.reply_written([5], 1.4103, ready_t=1.41, woken_by=None)  # busy with earlier audio until 1.41
    probe.reply_received(6, 1.5)
    probe.reply_written([6], 1.5001, ready_t=1.45, woken_by=None)
    assert figures(probe, "reply_to_speaker_ms") == [
        pytest.approx(0.2),
        pytest.approx(0.2),
        pytest.approx(0.3),
        pytest.approx(0.1),
    ]

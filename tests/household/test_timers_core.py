"""The timer book as data: set, query, cancel, ring, stop, restore (no clock, no sleep)."""

from __future__ import annotations

import pytest

from edgevoice.core.timers import (
    RingPulse,
    RingStarted,
    RingStopped,
    TimerBook,
    TimerError,
    describe_duration,
    normalise_name,
)


def test_names_are_compared_the_way_people_say_them() -> None:
    assert normalise_name("The Pasta timer ") == "pasta"
    assert normalise_name("my  egg Timer") == "egg"
    assert normalise_name("") == normalise_name(None) == "timer"


def test_two_timers_run_at_once_and_each_reports_what_is_left() -> None:
    book = TimerBook()
    book.set("pasta", 540, now=100.0)
    book.set("eggs", 300, now=110.0)
    running = book.running(now=200.0)
    assert [(t.name, left) for t, left in running] == [("eggs", 210.0), ("pasta", 440.0)]
    assert book.find("the pasta timer").remaining_s(200.0) == 440.0
    with pytest.raises(TimerError, match="several timers are running; say which: eggs, pasta"):
        book.find(None)
    with pytest.raises(TimerError, match="there is no rice timer; running: eggs, pasta"):
        book.find("rice")
    assert book.next_deadline() == 410.0


def test_bad_durations_and_too_many_timers_are_refused_in_words() -> None:
    book = TimerBook(max_timers=2)
    for bad in (0, -5, float("nan"), float("inf"), 90000):
        with pytest.raises(TimerError):
            book.set("x", bad, now=0.0)
    book.set("a", 10, now=0.0)
    book.set("b", 10, now=0.0)
    with pytest.raises(TimerError, match="at most 2 timers"):
        book.set("c", 10, now=0.0)
    book.set("a", 20, now=0.0)  # restarting one is not a new one
    assert book.find("a").ends_at == 20.0


def test_cancel_one_or_all() -> None:
    book = TimerBook()
    with pytest.raises(TimerError, match="no timer is running"):
        book.cancel(None)
    book.set("pasta", 60, now=0.0)
    book.set("eggs", 60, now=0.0)
    assert [t.name for t in book.cancel("pasta")] == ["pasta"]
    assert [t.name for t in book.cancel("all")] == ["eggs"]
    assert book.next_deadline() is None


def test_a_timer_rings_at_its_end_in_pulses_until_the_press_and_the_press_is_used_up() -> None:
    book = TimerBook(max_ring_s=30.0, ring_period_s=1.0)
    book.set("pasta", 9.0, now=0.0)
    assert book.advance(8.99) == []
    assert book.press(8.99) is None  # not ringing: the press is the user's
    assert book.next_deadline() == 9.0
    assert book.advance(9.0) == [RingStarted(("pasta",)), RingPulse()]
    assert book.ringing == ("pasta",)
    assert book.next_deadline() == 10.0
    assert book.advance(9.5) == []
    assert book.advance(10.0) == [RingPulse()]
    stopped = book.press(10.4)
    assert stopped == RingStopped(("pasta",), by_press=True, ended_at=9.0)
    assert book.ringing == () and book.next_deadline() is None
    assert book.press(10.5) is None


def test_the_ring_stops_by_itself_after_the_maximum_ring_time() -> None:
    book = TimerBook(max_ring_s=5.0, ring_period_s=1.0)
    book.set("eggs", 1.0, now=0.0)
    pulses = 0
    t = 0.0
    stopped = []
    while t < 20:
        for action in book.advance(t):
            pulses += isinstance(action, RingPulse)
            if isinstance(action, RingStopped):
                stopped.append((t, action))
        deadline = book.next_deadline()
        if deadline is None:
            break
        t = deadline
    assert stopped == [(6.0, RingStopped(("eggs",), by_press=False, ended_at=1.0))]
    assert pulses == 5


def test_a_late_wakeup_gives_one_pulse_not_a_burst() -> None:
    book = TimerBook(ring_period_s=1.0)
    book.set("tea", 1.0, now=0.0)
    book.advance(1.0)
    assert book.advance(4.7) == [RingPulse()]
    assert book.next_deadline() == pytest.approx(5.7)


def test_a_second_timer_ending_during_a_ring_joins_it() -> None:
    book = TimerBook(ring_period_s=1.0)
    book.set("pasta", 5, now=0.0)
    book.set("sauce", 5.5, now=0.0)
    book.advance(5.0)
    assert book.advance(5.5) == [RingStarted(("sauce",))]
    assert book.press(6.0) == RingStopped(("pasta", "sauce"), by_press=True, ended_at=5.0)


def test_timers_survive_a_restart_as_data_on_the_wall_clock() -> None:
    book = TimerBook(max_ring_s=60.0)
    book.set("pasta", 540, now=1000.0)
    book.set("eggs", 30, now=1000.0)
    data = book.to_data(now=1010.0, wall_now=5_000_010.0)
    # The daemon is down for 100 s; its new monotonic clock starts elsewhere.
    later = TimerBook(max_ring_s=60.0)
    problems = later.restore(data, now=7.0, wall_now=5_000_110.0)
    assert problems == ["the eggs timer ended while the device was off"]
    assert later.find("pasta").remaining_s(7.0) == pytest.approx(430.0)
    # eggs ended 80 s ago: beyond the 60 s ring, dropped; within it, it would ring now.
    with pytest.raises(TimerError):
        later.find("eggs")
    again = TimerBook(max_ring_s=120.0)
    again.restore(data, now=7.0, wall_now=5_000_110.0)
    assert again.advance(7.0)[0] == RingStarted(("eggs",))


def test_bad_saved_data_is_skipped_with_a_reason() -> None:
    book = TimerBook()
    assert book.restore("garbage", 0.0, 0.0)
    problems = book.restore(
        {"version": 1, "timers": [{"name": "ok", "duration_s": 5, "ends_wall": 10}, {"name": "x"}, 7]},
        now=0.0,
        wall_now=0.0,
    )
    assert len(problems) == 2
    assert book.find("ok").remaining_s(0.0) == 10.0


def test_durations_read_aloud() -> None:
    assert describe_duration(545) == "9 minutes 5 seconds"
    assert describe_duration(3600) == "1 hour"
    assert describe_duration(0.2) == "1 second"

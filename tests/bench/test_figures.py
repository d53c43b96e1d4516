"""The plain parts of the benchmark: percentiles, resource figures, the script, the probe."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgevoice.core.events import GoAway, LinkDown, LinkUp
from edgevoice_testbed.bench import script as bench_script
from edgevoice_testbed.bench import stats
from edgevoice_testbed.bench.probe import NullProbe, Probe
from edgevoice_testbed.bench.report import table

SPEECH = {bench_script.ASK_TOOL: 1.6, bench_script.ASK_TALK: 1.1}
REPLIES = {bench_script.REPLY_TOOL: 0.7, bench_script.FOLLOW_UP_TOOL: 0.9, bench_script.REPLY_TALK: 4.6}


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.floats(0, 100))
def test_percentile_agrees_with_numpy(values, q):
    assert stats.percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-6)


def test_a_figure_has_p50_p99_max_and_a_single_value_fills_all_three():
    assert stats.summarize([]) is None
    figure = stats.summarize([float(v) for v in range(1, 101)])
    assert figure == {"p50": 50.5, "p99": 99.01, "max": 100.0}
    assert stats.single(2.5) == {"p50": 2.5, "p99": 2.5, "max": 2.5}
    assert stats.single(None) is None


def samples(points: list[tuple[float, float, float]]) -> list[stats.ResourceSample]:
    return [stats.ResourceSample(t, cpu, rss, rss) for t, cpu, rss in points]


def test_cpu_percent_is_cpu_time_over_wall_time_inside_the_window():
    series = samples([(0.0, 0.0, 50), (10.0, 5.0, 50), (20.0, 5.3, 50), (30.0, 5.6, 50), (40.0, 9.0, 50)])
    # Only the samples from 10 s to 30 s count: 0.6 s of CPU in 20 s.
    assert stats.cpu_percent(series, 10.0, 30.0) == pytest.approx(3.0)
    assert stats.cpu_percent(series, 10.0, 11.0) is None


def test_rss_growth_is_the_slope_after_the_warm_up_per_ten_minutes():
    # 1 MB per minute after a big start-up jump that the warm-up leaves out.
    points = [(t, 0.0, 80.0 + t / 60.0) for t in range(0, 241, 5)]
    points[0] = (0.0, 0.0, 20.0)
    series = samples(points)
    assert stats.rss_growth_mb(series, 0.0, 240.0) == pytest.approx(10.0)
    assert stats.rss_change_mb(series, 0.0, 240.0) == pytest.approx(3.0)
    assert stats.rss_steady_mb(series, 0.0, 240.0) == pytest.approx(80.0 + 180 / 60.0)


def test_growth_is_judged_only_over_a_long_enough_window():
    assert stats.growth_window_s(0.0, 40.0) == pytest.approx(30.0)  # at least 10 s of warm-up
    assert stats.growth_window_s(0.0, 262.0) == pytest.approx(196.5)  # a quarter of the run
    assert stats.growth_window_s(0.0, 40.0) < stats.GROWTH_MIN_WINDOW_S < stats.growth_window_s(0.0, 262.0)


def test_floors_follow_the_period_the_fade_and_the_import_time():
    floors = stats.floors(20, 5.0, 1.4)
    assert floors["release_to_activity_end_ms"].limit == 25
    assert floors["barge_in_ms"].limit == 25
    assert floors["startup_s"].limit == pytest.approx(2.1)
    assert stats.verdict({"p50": 1, "p99": 3.0, "max": 9}, floors["capture_to_wire_ms"]) is True
    assert stats.verdict({"p50": 1, "p99": 3.1, "max": 9}, floors["capture_to_wire_ms"]) is False
    assert stats.ratio({"p50": 1, "p99": 6.0, "max": 9}, {"p50": 1, "p99": 2.0, "max": 2}) == 3.0
    assert stats.ratio({"p50": 1, "p99": 6.0, "max": 9}, {"p50": 0, "p99": 0.0, "max": 0}) is None


@pytest.mark.parametrize("plan", [bench_script.QUICK_PLAN, bench_script.FULL_PLAN, "A", "BA", "DG"])
def test_a_script_keeps_presses_apart_and_faults_in_the_silence_after_an_answer(plan):
    script = bench_script.build_script(plan, speech_s=SPEECH, reply_s=REPLIES)
    assert len(script.exchanges) == 2 * len(plan)
    assert script.barge_ins == plan.count("B")
    previous_release = 0.0
    for exchange in script.exchanges:
        assert previous_release < exchange.press_s < exchange.speech_s < exchange.release_s
        previous_release = exchange.release_s
    for fault in script.faults:
        # Faults land in silence: after a release, before the next press.
        before = [e for e in script.exchanges if e.release_s < fault.at_s]
        after = [e for e in script.exchanges if e.press_s > fault.at_s]
        assert before and before[-1].kind == "talk"
        assert not after or after[0].kind == "tool"
        assert not after or after[0].press_s - fault.at_s >= bench_script.FAULT_ROOM_S
    assert script.duration_s > script.exchanges[-1].release_s + REPLIES[bench_script.REPLY_TALK]


def test_a_barge_in_comes_while_the_talk_answer_is_still_being_sent():
    script = bench_script.build_script("BA", speech_s=SPEECH, reply_s=REPLIES)
    talk, barge = script.exchanges[1], script.exchanges[2]
    assert barge.barge_in
    sending_ends = (
        talk.release_s
        + bench_script.REPLY_DELAY_MS / 1000
        + REPLIES[bench_script.REPLY_TALK] / bench_script.PACE
    )
    assert talk.release_s + 0.5 < barge.press_s < sending_ends - 0.5


def test_the_scenario_alternates_tool_and_talk_turns_so_a_new_session_stays_in_step():
    script = bench_script.build_script("DG", speech_s=SPEECH, reply_s=REPLIES)
    turns = script.scenario["turns"]
    assert [bool(t.get("tool_calls")) for t in turns[:4]] == [True, False, True, False]
    # Faults come only after an even number of exchanges: turn 1 follows, fresh or resumed.
    for fault in script.faults:
        answered = [e for e in script.exchanges if e.release_s < fault.at_s]
        assert len(answered) % 2 == 0


@pytest.mark.parametrize("plan", ["", "AB", "AZ"])
def test_a_bad_plan_is_refused(plan):
    with pytest.raises(ValueError, match="bad plan"):
        bench_script.build_script(plan, speech_s=SPEECH, reply_s=REPLIES)


def test_the_probe_times_a_reconnect_from_the_loss_and_a_switch_from_the_close():
    probe = Probe()
    probe.link_event(LinkUp(1, False, 1.0))
    probe.link_event(LinkDown(1, 1006, "lost", 10.0))
    probe.link_event(LinkUp(2, True, 10.25))
    probe.link_event(GoAway(2, 5.0, 20.0))
    assert probe.goaway_pending
    probe.link_closed(20.5)
    probe.link_event(LinkUp(3, True, 20.6))
    # A close without a GoAway (the reply timeout, a settings change) is not a switch.
    probe.link_closed(30.0)
    probe.link_event(LinkUp(4, False, 30.2))
    assert list(probe.series["reconnect_ms"]) == [pytest.approx(250.0)]
    assert list(probe.series["goaway_gap_ms"]) == [pytest.approx(100.0)]
    assert (probe.resumed_links, probe.fresh_links) == (2, 2)


def test_a_goaway_followed_by_a_drop_counts_as_a_reconnect():
    probe = Probe()
    probe.goaway()
    probe.link_down(5.0)
    probe.link_up(5.1, resumed=True)
    assert "goaway_gap_ms" not in probe.series
    assert list(probe.series["reconnect_ms"]) == [pytest.approx(100.0)]


def test_the_null_probe_records_nothing():
    probe = NullProbe()
    probe.add("capture_to_wire_ms", 1.0)
    probe.link_event(LinkDown(1, 1006, "lost", 1.0))
    probe.link_event(LinkUp(2, True, 2.0))
    assert probe.snapshot()["series"] == {}


def test_the_table_names_every_figure_and_says_pass_or_fail():
    figure = {"p50": 1.0, "p99": 2.0, "max": 4.0}
    clients = {name: dict.fromkeys(stats.FIGURES, figure) for name in stats.CLIENTS}
    clients["reference"]["barge_in_ms"] = None
    floors = stats.floors(20, 5.0, 1.0)
    document = {
        "summary": {**clients, "period_ms": 20, "prebuffer_ms": 100},
        "evaluation": {
            name: {
                "rule": floors[name].rule if name in floors else None,
                "limit": None,
                "pass": name != "cpu_percent",
                "ratio_reference_to_edgevoice": 1.0,
            }
            for name in stats.FIGURES
        },
        "probe_overhead": None,
        "machine": {"cpu_model": "test CPU", "cores": 2, "python": "3.11"},
        "mode": "quick",
        "clients_ran": "side by side",
        "period_ms": 20,
        "prebuffer_ms": 100,
    }
    text = table(document)
    lines = text.splitlines()
    assert len([line for line in lines if line.endswith(("pass", "FAIL"))]) == len(stats.FIGURES)
    assert "CPU (% of one core)" in text and "FAIL" in text
    assert "1.00 / 2.00 / 4.00" in text and "n/a" in text

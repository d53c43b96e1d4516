"""What the speaker's probe points measure, on a real libasound file-plugin PCM.

The speaker runs on a clock the test sets, so the figures are exact: reply-to-speaker
must not count the time a chunk waited for the prebuffer to fill, and barge-in counts
until the fade-out has played. The link's report of each chunk's arrival and the button's
press are made here by hand; the speaker reports the rest, and the probe pairs them.
"""

from __future__ import annotations

import threading

import pytest

from edgevoice.audio.alsa import open_pcm
from edgevoice.audio.jitter import JitterBuffer
from edgevoice.audio.playback import Speaker
from edgevoice_testbed.bench.probe import Probe
from edgevoice_testbed.sim.devices import SimulatedPlayback
from tests.support.alsa import simulated_alsa_env

RATE = 24000
PERIOD = 480  # 20 ms
WAIT_S = 5.0


class SetClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def speaker(tmp_path, monkeypatch):
    monkeypatch.setenv("ALSA_CONFIG_PATH", simulated_alsa_env(tmp_path)["ALSA_CONFIG_PATH"])

    def open_playback() -> SimulatedPlayback:
        pcm, _format = open_pcm(
            "playback", "edgevoice_speaker", rate=RATE, channels=1, period_frames=PERIOD, periods=2
        )
        return SimulatedPlayback(pcm, rate=RATE, channels=1, buffer_frames=2 * PERIOD, paced=False)

    beats = threading.Condition()
    count = [0]

    def heartbeat() -> None:  # after every write and every idle wait of the playback thread
        with beats:
            count[0] += 1
            beats.notify_all()

    def wait_until(predicate) -> None:
        with beats:
            assert beats.wait_for(predicate, WAIT_S), "the playback thread did not get there"

    clock = SetClock()
    probe = Probe()
    device = Speaker(
        open_playback,
        rate=RATE,
        period_frames=PERIOD,
        buffer_frames=2 * PERIOD,
        jitter=JitterBuffer(RATE, prebuffer_ms=100, fade_ms=5, volume=1.0),
        paced=False,
        fade_ms=5.0,
        heartbeat=heartbeat,
        metrics=probe,
        clock=clock,
    )
    device.start()
    yield device, clock, probe, count, wait_until
    device.stop()


def test_prebuffering_is_not_counted_as_reply_latency(speaker):
    device, clock, probe, count, wait_until = speaker
    probe.reply_received(1, 0.0)
    device.play(bytes(2 * RATE * 40 // 1000), 1)  # 40 ms: below the 100 ms prebuffer
    seen = count[0]
    wait_until(lambda: count[0] > seen)  # the thread looked, found too little, and waited
    clock.now = 0.15
    probe.reply_received(2, 0.15)
    device.play(bytes(2 * RATE * 80 // 1000), 2)  # now 120 ms: playback starts
    wait_until(lambda: len(probe.series["reply_to_speaker_ms"]) == 2)
    # Both chunks reached ALSA the moment the second made playback possible.
    assert list(probe.series["reply_to_speaker_ms"]) == [pytest.approx(0.0), pytest.approx(0.0)]


def test_barge_in_lasts_until_the_fade_out_has_played(speaker):
    device, clock, probe, _count, wait_until = speaker
    probe.reply_received(1, 0.0)
    device.play(bytes(2 * RATE * 200 // 1000), 1)
    wait_until(lambda: len(probe.series["reply_to_speaker_ms"]) == 1)
    probe.pressed(0.99)
    clock.now = 1.0
    device.interrupt()
    wait_until(lambda: len(probe.series["barge_in_ms"]) == 1)
    assert list(probe.series["barge_in_ms"]) == [pytest.approx(10.0 + 5.0)]


def test_a_stop_the_user_did_not_press_for_is_no_barge_in(speaker):
    device, clock, probe, count, wait_until = speaker
    probe.reply_received(1, 0.0)
    device.play(bytes(2 * RATE * 200 // 1000), 1)
    wait_until(lambda: len(probe.series["reply_to_speaker_ms"]) == 1)
    probe.pressed(0.5)
    probe.released(0.7)  # a question asked while nothing played: no barge-in
    clock.now = 1.0
    device.interrupt()  # e.g. the server interrupted the answer
    seen = count[0]
    wait_until(lambda: count[0] > seen + 1)  # the cut, then the thread idles
    assert "barge_in_ms" not in probe.series

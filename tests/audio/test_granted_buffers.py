"""A card grants the buffer it can, not the one asked for; the audio threads go by it.

The cards here are the simulator's fussy ALSA plugin under the real libasound and
pyalsaaudio, with the ring buffer bounded as a driver bounds it. Each scenario runs in a
fresh process: libasound reads ALSA_CONFIG_PATH when the first PCM opens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.audio.capture import READ_AHEAD_ROOM_PERIODS, idle_read_ahead_for
from tests.support.alsa import simulated_alsa_env

CAPTURE_PERIOD_BYTES = 320 * 2  # 20 ms at 16 kHz
PLAYBACK_PERIOD_BYTES = 480 * 2  # 20 ms at 24 kHz


@pytest.mark.parametrize(
    ("wanted", "buffer_periods", "expected"),
    [
        (12, 16, 12),  # the card gave what was asked
        (12, 64, 12),  # a bigger buffer: no reason to sleep longer
        (12, 10, 10 - READ_AHEAD_ROOM_PERIODS),  # a smaller one: a shorter stretch
        (12, 8, 4),  # the shortest stretch worth its room
        (12, 7, 0),  # too small: off
        (12, 6, 0),
        (0, 16, 0),  # off stays off
    ],
)
def test_the_idle_read_ahead_fits_the_buffer_the_card_granted(wanted, buffer_periods, expected):
    assert idle_read_ahead_for(wanted, buffer_periods * 320, 320) == expected


def test_a_device_that_does_not_say_keeps_the_read_ahead_asked_for():
    assert idle_read_ahead_for(12, None, 320) == 12


def run(tmp_path: Path, code: str, mic: bytes = b"", **card: object) -> dict:
    env = simulated_alsa_env(tmp_path, mic, paced=True, **card)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


IDLE_MICROPHONE = """
import json, threading
from edgevoice.audio.capture import Microphone
from edgevoice.audio.devices import open_capture
from edgevoice.service.devices import CAPTURE_PERIODS, CAPTURE_READ_AHEAD

device, opened = open_capture("edgevoice_mic", rate=16000, period_ms=20, periods=CAPTURE_PERIODS)
periods, enough = [], threading.Event()
def sink(pieces):
    periods.extend(pieces)
    if sum(len(pcm) for _p, pcm, _t in periods) >= 60 * 640:
        enough.set()
mic = Microphone(lambda: device, rate=16000, period_frames=320, on_frames=sink,
                 idle_read_ahead=CAPTURE_READ_AHEAD)
mic.batch = 5  # nobody speaks
mic.start(device)
arrived = enough.wait(20)
mic.stop()
end, gaps = 0, 0
for position, pcm, _t in periods:
    gaps += position != end
    end = position + len(pcm) // 2
print(json.dumps({"arrived": arrived, "overruns": mic.overruns, "gaps": gaps,
                  "granted": opened.buffer_frames, "read_ahead": mic.read_ahead_now,
                  "asked": CAPTURE_READ_AHEAD}))
"""


def test_an_idle_microphone_on_a_card_with_a_small_buffer_never_overruns(tmp_path):
    # The card holds 6 periods (120 ms) where 32 were asked for: letting 28 gather while
    # idle would overrun it at every stretch, and the pre-roll would lose audio. On a card
    # that small the microphone reads every period as it comes.
    result = run(
        tmp_path, IDLE_MICROPHONE, mic=bytes(2 * 16000 * 5),
        capture_buffer_bytes=(64, 6 * CAPTURE_PERIOD_BYTES),
    )
    assert result["granted"] == 6 * 320
    assert result["arrived"], result
    assert result["read_ahead"] == 0 < result["asked"]
    assert (result["overruns"], result["gaps"]) == (0, 0), result


REPLY_THEN_IDLE = """
import json, threading
from edgevoice.audio.devices import open_playback
from edgevoice.audio.jitter import JitterBuffer
from edgevoice.audio.playback import Speaker
from edgevoice.service.devices import PLAYBACK_PERIODS

device, opened = open_playback("edgevoice_speaker", rate=24000, period_ms=20, periods=PLAYBACK_PERIODS)
at_idle, idle = {}, threading.Event()
def on_idle():
    # The speaker says the answer has been heard: the card must have played it all.
    at_idle["avail"] = device.avail()
    idle.set()
speaker = Speaker(lambda: device, rate=24000, period_frames=480,
                  buffer_frames=480 * PLAYBACK_PERIODS, jitter=JitterBuffer(24000, 0, 5),
                  on_idle=on_idle)
speaker.start(device)
speaker.play(b"\\x10\\x00" * (24000 // 2), chunk=1)  # half a second of answer
speaker.end_of_reply()
heard = idle.wait(20)
speaker.stop()
print(json.dumps({"heard": heard, "avail": at_idle.get("avail"), "granted": opened.buffer_frames,
                  "counted_on": speaker.buffer_frames}))
"""


def test_the_end_of_an_answer_waits_for_a_card_with_a_bigger_buffer_to_play_it_all(tmp_path):
    # The card holds 16 periods (320 ms) where 4 were asked for. Counting on 4, the speaker
    # took "free space above 4 periods" for "played" and called the answer over while the
    # card still had up to 240 ms of it to play.
    result = run(tmp_path, REPLY_THEN_IDLE, playback_buffer_bytes=(16 * PLAYBACK_PERIOD_BYTES, 1 << 22))
    assert result["granted"] == 16 * 480
    assert result["heard"], result
    assert result["counted_on"] == result["granted"]
    # Played out: the card is dry (-EPIPE) or its whole buffer is free.
    assert result["avail"] < 0 or result["avail"] >= result["granted"], result

"""Fussy simulated cards through the real libasound and pyalsaaudio.

Each scenario runs in a fresh Python process: libasound reads ALSA_CONFIG_PATH when the
process opens its first PCM, so the configuration must be in place before that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgevoice_testbed.sim.fussy import (
    FussyPluginError,
    asoundrc_for,
    from_device_format,
    fussy_plugin,
    to_device_format,
)

PRELUDE = """
import json, os, time
import alsaaudio
C, P = alsaaudio.PCM_CAPTURE, alsaaudio.PCM_PLAYBACK
def open_pcm(kind, device, rate, channels, periodsize, periods=4):
    return alsaaudio.PCM(kind, device=device, rate=rate, channels=channels,
                         format=alsaaudio.PCM_FORMAT_S16_LE, periodsize=periodsize,
                         periods=periods)
def error(fn):
    try:
        fn()
    except alsaaudio.ALSAAudioError as e:
        return str(e)
    return None
result = {}
"""


@pytest.fixture(scope="session")
def plugin_cache(tmp_path_factory) -> Path:
    """One build of the plugin for the session, outside the user's ~/.cache."""
    return tmp_path_factory.mktemp("alsa-plugin")


@pytest.fixture
def card(tmp_path, plugin_cache):
    """Writes an asoundrc into tmp_path and returns a runner for child-process scenarios."""

    class Card:
        mic = tmp_path / "mic in.raw"  # a space: paths must be quoted properly
        speaker = tmp_path / 'speaker "out".raw'
        unplug = tmp_path / "unplugged"
        conf = tmp_path / "asoundrc"

        def configure(self, **options) -> str:
            text = asoundrc_for(self.mic, self.speaker, plugin_cache_dir=plugin_cache, **options)
            self.conf.write_text(text)
            return text

        def run(self, body: str, timeout: float = 30) -> dict:
            env = {
                **os.environ,
                "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.conf}",
            }
            code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env, capture_output=True, text=True, timeout=timeout, check=False,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout.strip().splitlines()[-1])

    return Card()


def ramp(frames: int, channels: int) -> bytes:
    return (np.arange(frames * channels) % 30000).astype("<i2").tobytes()


def test_capture_card_that_only_does_48k_stereo(card):
    card.mic.write_bytes(ramp(48000, 2))
    card.configure(capture_rate=48000, capture_channels=2)
    result = card.run(f"""
        pcm = open_pcm(C, "edgevoice_mic", 16000, 1, 320)
        info = pcm.info()
        result["rate"], result["channels"] = info["rate"], info["channels"]
        result["formats"] = sorted(pcm.getformats())
        result["rates"], result["channel_list"] = pcm.getrates(), pcm.getchannels()
        length, data = pcm.read()
        result["length"], result["bytes"] = length, len(data)
        result["data_ok"] = data == open({str(card.mic)!r}, "rb").read()[:len(data)]
        pcm.close()
        # Reopen at the card's format with a 20 ms period, as the adapter should.
        pcm = open_pcm(C, "edgevoice_mic", info["rate"], info["channels"], 960)
        result["period"] = pcm.info()["period_size"]
        result["second"] = len(pcm.read()[1])
    """)
    assert (result["rate"], result["channels"]) == (48000, 2)
    assert result["rates"] == 48000 and result["channel_list"] == [2]
    assert result["formats"] == ["S16_LE"]
    # pyalsaaudio kept the period size in frames, now at 48 kHz: 320 frames = 6.7 ms.
    assert result["length"] == 320 and result["bytes"] == 320 * 4
    assert result["data_ok"]
    assert result["period"] == 960 and result["second"] == 960 * 4


def test_playback_card_that_only_does_44k1_stereo(card):
    card.configure(playback_rate=44100, playback_channels=2)
    result = card.run("""
        pcm = open_pcm(P, "edgevoice_speaker", 24000, 1, 480)
        info = pcm.info()
        result["rate"], result["channels"] = info["rate"], info["channels"]
        result["mono_write"] = error(lambda: pcm.write(b"\\0" * 6))  # 1.5 stereo frames
        result["written"] = pcm.write(bytes(range(256)) * 15)  # 3840 bytes = 960 frames
        pcm.close()
    """)
    assert (result["rate"], result["channels"]) == (44100, 2)
    assert result["mono_write"] == "Data size must be a multiple of framesize"
    assert result["written"] == 960
    assert card.speaker.read_bytes() == bytes(range(256)) * 15


def test_without_fussy_options_the_card_takes_what_is_asked(card):
    text = card.configure()
    assert "edgevoice_fussy" not in text and 'slave.pcm "null"' in text
    missing = card.run("""
        result["error"] = error(lambda: open_pcm(C, "edgevoice_mic", 16000, 1, 320))
    """)
    # The file plugin opens its input at PCM open: a missing file is ENOENT there.
    assert missing["error"] == "No such file or directory [edgevoice_mic]"
    card.mic.write_bytes(ramp(1600, 1))
    result = card.run("""
        pcm = open_pcm(C, "edgevoice_mic", 16000, 1, 320)
        info = pcm.info()
        result["format"] = [info["rate"], info["channels"]]
    """)
    assert result["format"] == [16000, 1]


def test_exclusive_card_refuses_a_second_open(card):
    card.mic.write_bytes(ramp(1600, 1))
    card.configure(exclusive=True)
    result = card.run("""
        first = open_pcm(P, "edgevoice_speaker", 24000, 1, 480)
        result["second"] = error(lambda: open_pcm(P, "edgevoice_speaker", 24000, 1, 480))
        result["capture_too"] = error(lambda: open_pcm(C, "edgevoice_mic", 16000, 1, 320))
        first.close()
        result["after_close"] = error(lambda: open_pcm(P, "edgevoice_speaker", 24000, 1, 480))
    """)
    assert result["second"] == "Device or resource busy [edgevoice_speaker]"
    assert result["capture_too"] is None  # capture and playback are separate devices
    assert result["after_close"] is None


def test_unplugged_card_fails_with_enodev_until_it_is_back(card):
    card.mic.write_bytes(ramp(16000, 1))
    card.configure(unplug_file=card.unplug)
    result = card.run(f"""
        mic = open_pcm(C, "edgevoice_mic", 16000, 1, 320)
        speaker = open_pcm(P, "edgevoice_speaker", 24000, 1, 480)
        result["before"] = mic.read()[0]
        open({str(card.unplug)!r}, "w").close()
        result["read"] = error(mic.read)
        result["write"] = error(lambda: speaker.write(bytes(960)))
        result["state"] = mic.state() == alsaaudio.PCM_STATE_DISCONNECTED
        result["drop"] = error(mic.drop)
        result["reopen"] = error(lambda: open_pcm(C, "edgevoice_mic", 16000, 1, 320))
        mic.close()
        speaker.close()
        os.unlink({str(card.unplug)!r})
        result["replugged"] = open_pcm(C, "edgevoice_mic", 16000, 1, 320).read()[0]
    """)
    assert result["before"] == 320
    assert result["read"] == "No such device [edgevoice_mic]"
    assert result["write"] == "No such device [edgevoice_speaker]"
    assert result["state"]
    assert result["drop"] == "No such device [edgevoice_mic]"
    assert result["reopen"] == "No such device [edgevoice_mic]"
    assert result["replugged"] == 320


def test_paced_capture_overruns_when_the_reader_is_late(card):
    card.mic.write_bytes(ramp(48000 * 2, 2))
    card.configure(capture_rate=48000, capture_channels=2, paced=True)
    result = card.run("""
        # 20 ms periods, 32 per buffer: a loaded test machine must stall the steady reads
        # for over 640 ms before they overrun.
        pcm = open_pcm(C, "edgevoice_mic", 48000, 2, 960, periods=32)
        result["buffer"] = pcm.info()["buffer_size"]
        start = time.monotonic()
        result["steady"] = [pcm.read()[0] for _ in range(10)]
        result["elapsed"] = time.monotonic() - start
        time.sleep(1.0)  # the stimulus: a reader that stalls longer than the buffer
        length, data = pcm.read()
        result["late"] = [length, len(data)]
        result["recovered"] = pcm.read()[0]
    """)
    assert result["buffer"] == 32 * 960
    assert result["steady"] == [960] * 10
    # Paced by the clock: ten 20 ms periods cannot be captured in less than 200 ms.
    assert result["elapsed"] >= 0.19
    assert result["late"] == [-32, 0]  # -EPIPE, and the data of that period is gone
    assert result["recovered"] == 960


def test_paced_playback_underruns_when_the_writer_is_late(card):
    card.configure(paced=True)
    result = card.run("""
        pcm = open_pcm(P, "edgevoice_speaker", 24000, 1, 480, periods=16)  # 320 ms buffer
        period = bytes(960)
        # One call each, so the stream starts with all of it queued: a busy test machine
        # cannot starve the card between two calls.
        result["steady"] = pcm.write(period * 8)
        time.sleep(0.6)  # the stimulus: a writer that stalls past the 160 ms queued
        result["late"] = pcm.write(b"\\x01\\x00" * 480)
        result["recovered"] = pcm.write(period * 2)
        pcm.close()
    """)
    assert result["steady"] == 8 * 480
    assert result["late"] == -32  # -EPIPE: underrun; pyalsaaudio re-prepared the stream
    assert result["recovered"] == 2 * 480
    # The rejected period was not played: write it again after -EPIPE.
    assert b"\x01\x00" * 480 not in card.speaker.read_bytes()
    assert len(card.speaker.read_bytes()) == 10 * 960


def test_blocked_read_is_woken_with_ebadfd_by_drop_or_unplug(card):
    """As on a kernel device: a read blocked in the card gets EBADFD when another thread
    drops the stream or the card disappears; later calls on a vanished card get ENODEV."""
    card.mic.write_bytes(ramp(48000, 2))
    card.configure(capture_rate=48000, capture_channels=2, paced=True, unplug_file=card.unplug)
    result = card.run(f"""
        import threading
        def blocked_read(pcm, act):
            outcome = {{}}
            def reader():
                outcome["error"] = error(pcm.read)
            thread = threading.Thread(target=reader)
            thread.start()
            # One-second periods: once the stream runs, the read is waiting in the card.
            deadline = time.monotonic() + 10
            while pcm.state() != alsaaudio.PCM_STATE_RUNNING and time.monotonic() < deadline:
                time.sleep(0.005)
            act()
            thread.join(10)
            return [outcome.get("error"), thread.is_alive()]
        pcm = open_pcm(C, "edgevoice_mic", 48000, 2, 48000, periods=2)
        result["drop"] = blocked_read(pcm, pcm.drop)
        result["unplug"] = blocked_read(pcm, lambda: open({str(card.unplug)!r}, "w").close())
        result["after_unplug"] = error(pcm.read)
    """)
    assert result["drop"] == ["File descriptor in bad state [edgevoice_mic]", False]
    assert result["unplug"] == ["File descriptor in bad state [edgevoice_mic]", False]
    assert result["after_unplug"] == "No such device [edgevoice_mic]"


def test_device_format_helpers_round_trip_a_tone():
    t = np.arange(16000) / 16000
    tone = np.rint(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    device = to_device_format(tone, 16000, 48000, 2)
    assert len(device) == 48000 * 4
    back = np.frombuffer(from_device_format(device, 48000, 2, 16000), "<i2").astype(float)
    original = np.frombuffer(tone, "<i2").astype(float)
    assert len(back) == len(original)
    assert np.max(np.abs(back[100:-100] - original[100:-100])) <= 3


def test_bad_options_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="capture_rate must be a positive integer"):
        asoundrc_for(tmp_path / "m", tmp_path / "s", capture_rate=0)
    with pytest.raises(ValueError, match="cannot be written into an ALSA configuration"):
        asoundrc_for(tmp_path / "m\nx", tmp_path / "s")


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(FussyPluginError, match="needs a C compiler"):
        fussy_plugin(tmp_path / "cache")


def test_plugin_is_built_once_and_cached(tmp_path):
    first = fussy_plugin(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert fussy_plugin(tmp_path) == first and first.stat().st_mtime_ns == mtime
    assert isinstance(first, Path) and first.name == "libasound_module_pcm_edgevoice_fussy.so"

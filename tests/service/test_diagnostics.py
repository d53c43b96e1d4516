"""`edgevoice devices` and `edgevoice selftest` on simulated hardware: libasound's file
plugin (real libasound, real pyalsaaudio) and gpiozero mock pins."""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
import threading
from pathlib import Path

import alsaaudio
import numpy as np
import pytest

from edgevoice.service import diagnostics
from edgevoice.service.diagnostics import (
    CheckResult,
    describe_open_error,
    judge_level,
    measure_level,
    tone,
)
from tests.support.alsa import simulated_alsa_env

ROOT = Path(__file__).resolve().parents[2]


def sine(seconds: float, peak_dbfs: float, rate: int = 16000, freq: float = 300.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 32767 * 10 ** (peak_dbfs / 20)).astype("<i2").tobytes()


def clipped(seconds: float, rate: int = 16000) -> bytes:
    square = np.where(np.sin(2 * np.pi * 200 * np.arange(int(rate * seconds)) / rate) >= 0, 1, -1)
    return (square * 32767).astype("<i2").tobytes()


def write_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "edgevoice.toml"
    config.write_text(
        '[audio]\ncapture_device = "edgevoice_mic"\nplayback_device = "edgevoice_speaker"\n' + extra
    )
    return config


def edgevoice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgevoice", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


# -- decisions -----------------------------------------------------------------------------


def test_level_of_a_sine():
    report = measure_level(sine(1.0, -20.0))
    assert report.frames == 16000
    assert report.peak_dbfs == pytest.approx(-20.0, abs=0.05)
    assert report.rms_dbfs == pytest.approx(-23.0, abs=0.1)  # a sine's RMS is 3 dB under peak
    assert report.clipped_fraction == 0
    assert judge_level(report, "mic").passed


def test_level_judgements():
    silence = judge_level(measure_level(bytes(32000)), "mic")
    assert not silence.passed
    assert "digital silence" in silence.detail
    assert "alsamixer" in silence.hint
    assert measure_level(bytes(32000)).rms_dbfs == -math.inf

    quiet = judge_level(measure_level(sine(1.0, -60.0)), "mic")
    assert not quiet.passed
    assert "too quiet" in quiet.detail

    loud = judge_level(measure_level(clipped(1.0)), "mic")
    assert not loud.passed
    assert "clipped" in loud.detail
    assert "lower the capture gain" in loud.hint

    nothing = judge_level(measure_level(b""), "mic")
    assert not nothing.passed


def test_stereo_frames_are_counted_per_frame():
    stereo = np.repeat(np.frombuffer(sine(0.5, -6.0), dtype="<i2"), 2).tobytes()
    assert measure_level(stereo, channels=2).frames == 8000


def test_tone_is_faded_and_at_minus_12_dbfs():
    data = np.frombuffer(tone(24000, 2, 0.5), dtype="<i2")
    assert data.size == 24000  # 12000 frames, 2 channels
    assert np.array_equal(data[0::2], data[1::2])
    assert abs(int(data[0])) <= 1 and abs(int(data[-1])) <= 1
    assert 20 * math.log10(np.abs(data).max() / 32768) == pytest.approx(-12.0, abs=0.1)


@pytest.mark.parametrize(
    ("message", "what", "hint_part"),
    [
        ("Device or resource busy [hw:CARD=Device,DEV=0]", "device is busy", "fuser -v /dev/snd/*"),
        ("No such file or directory [plughw:CARD=Foo]", "no such device", "edgevoice devices"),
        ("No such device [hw:CARD=Foo,DEV=0]", "no such device", "audio.capture_device"),
        ("Permission denied [hw:0,0]", "permission denied", "audio group"),
    ],
)
def test_open_errors_become_hints(message, what, hint_part):
    # The exception pyalsaaudio raises, with the text it uses.
    got_what, hint = describe_open_error(alsaaudio.ALSAAudioError(message), "capture_device")
    assert got_what == what
    assert hint_part in hint


def test_check_result_lines():
    assert CheckResult("button", True, "ok").line() == "PASS button: ok"
    assert CheckResult("mic", False, "bad", "fix it").line() == "FAIL mic: bad (hint: fix it)"
    assert CheckResult("button", True, "no", skipped=True).line() == "SKIP button: no"


# -- devices -------------------------------------------------------------------------------


def test_devices_lists_and_probes(tmp_path):
    env = simulated_alsa_env(tmp_path, mic_pcm=sine(0.1, -20))
    result = edgevoice(env, "devices", "--probe", "edgevoice_mic", "--probe", "no_such_pcm")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Capture devices:" in lines and "Playback devices:" in lines
    assert "  edgevoice_speaker" in lines  # listed, not probed
    probed = [line for line in lines if line.startswith("  edgevoice_mic: ")]
    assert len(probed) == 2  # once as capture, once as playback
    assert probed[0] == (
        "  edgevoice_mic: S16_LE at 8000, 16000, 22050, 24000, 32000, 44100, 48000 Hz; channels 1, 2, 4, 6, 8"
    )
    missing = [line for line in lines if line.startswith("  no_such_pcm: ")]
    assert missing[0].startswith("  no_such_pcm: no such device (run edgevoice devices")
    assert "Traceback" not in result.stderr


# -- selftest ------------------------------------------------------------------------------


def test_selftest_reports_a_silent_microphone_and_plays_the_tone(tmp_path):
    env = simulated_alsa_env(tmp_path, mic_pcm=bytes(16000 * 2 * 3))
    config = write_config(tmp_path)
    result = edgevoice(env, "selftest", "--config", str(config), "--no-button")
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS speaker: played a 440 Hz tone for 0.6 s on 'edgevoice_speaker'")
    fail = next(line for line in lines if line.startswith("FAIL microphone"))
    assert "digital silence" in fail and "(hint: " in fail
    assert "SKIP button: not checked (--no-button)" in lines
    assert lines[-1] == "Failed: microphone."
    # The speaker file holds the tone: 0.6 s at 24 kHz mono, S16_LE.
    played = np.frombuffer((tmp_path / "speaker.raw").read_bytes(), dtype="<i2")
    assert played.size == 14400
    assert 20 * math.log10(np.abs(played).max() / 32768) == pytest.approx(-12.0, abs=0.1)


def test_selftest_flags_clipping(tmp_path):
    env = simulated_alsa_env(tmp_path, mic_pcm=clipped(3.0))
    result = edgevoice(env, "selftest", "--config", str(write_config(tmp_path)), "--no-button")
    assert result.returncode == 1
    assert any(
        line.startswith("FAIL microphone") and "clipped" in line for line in result.stdout.splitlines()
    )


def test_selftest_missing_devices_are_reported_not_raised(tmp_path):
    env = simulated_alsa_env(tmp_path)
    config = tmp_path / "edgevoice.toml"
    config.write_text('[audio]\ncapture_device = "nope_mic"\nplayback_device = "nope_speaker"\n')
    result = edgevoice(env, "selftest", "--config", str(config), "--no-button")
    assert result.returncode == 1
    assert (
        "FAIL speaker: cannot open 'nope_speaker': no such device (hint: run edgevoice devices "
        "and set audio.playback_device to one of the devices it lists)"
    ) in result.stdout
    assert "FAIL microphone: cannot open 'nope_mic': no such device" in result.stdout
    assert "Traceback" not in result.stderr


def test_selftest_bad_config_exits_78(tmp_path):
    env = simulated_alsa_env(tmp_path)
    config = tmp_path / "edgevoice.toml"
    config.write_text("[audio]\nperiod_ms = 1\n")
    result = edgevoice(env, "selftest", "--config", str(config))
    assert result.returncode == 78
    assert "audio.period_ms" in result.stderr


class PromptWatcher(io.StringIO):
    """Output stream that notices the button prompt (so a test can press the button)."""

    def __init__(self) -> None:
        super().__init__()
        self.prompted = threading.Event()

    def write(self, text: str) -> int:
        if "Press and release the button" in text:
            self.prompted.set()
        return super().write(text)


@pytest.fixture
def mock_pins(monkeypatch):
    from gpiozero import Device

    saved = Device.pin_factory
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    Device.pin_factory = None  # chosen again from the environment: mock pins
    yield
    if Device.pin_factory is not None and Device.pin_factory is not saved:
        Device.pin_factory.close()
    Device.pin_factory = saved


def test_selftest_all_pass_with_the_button_pressed(tmp_path, monkeypatch, mock_pins):
    from gpiozero import Device

    env = simulated_alsa_env(tmp_path, mic_pcm=sine(3.0, -12))
    monkeypatch.setenv("ALSA_CONFIG_PATH", env["ALSA_CONFIG_PATH"])
    config = write_config(tmp_path, "[button]\npin = 22\n")
    out = PromptWatcher()

    def finger() -> None:
        assert out.prompted.wait(30)
        pin = Device.pin_factory.pin(22)
        pin.drive_low()  # pressed: pulled-up button shorted to ground
        pin.drive_high()

    presser = threading.Thread(target=finger)
    presser.start()
    args = argparse.Namespace(config=str(config), button_timeout=30.0, no_button=False)
    status = diagnostics.run_selftest(args, out=out)
    presser.join(timeout=30)
    text = out.getvalue()
    assert status == 0, text
    assert "PASS button: press and release seen on BCM 22" in text
    assert "PASS microphone: 32000 frames from 'edgevoice_mic': RMS -15.0 dBFS" in text
    assert text.rstrip().endswith("All checks passed.")


def test_selftest_button_timeout_names_the_wiring(tmp_path, monkeypatch, mock_pins):
    env = simulated_alsa_env(tmp_path, mic_pcm=sine(3.0, -12))
    monkeypatch.setenv("ALSA_CONFIG_PATH", env["ALSA_CONFIG_PATH"])
    out = io.StringIO()
    args = argparse.Namespace(config=str(write_config(tmp_path)), button_timeout=0.2, no_button=False)
    assert diagnostics.run_selftest(args, out=out) == 1
    assert (
        "FAIL button: no press on BCM 17 within 0.2 s (hint: check the wiring "
        "(button between BCM 17 and GND) and button.pin)"
    ) in out.getvalue()


def test_selftest_button_pin_in_use(tmp_path, monkeypatch, mock_pins):
    from gpiozero import Button

    env = simulated_alsa_env(tmp_path, mic_pcm=sine(3.0, -12))
    monkeypatch.setenv("ALSA_CONFIG_PATH", env["ALSA_CONFIG_PATH"])
    holder = Button(17)  # the running daemon, say
    try:
        out = io.StringIO()
        args = argparse.Namespace(config=str(write_config(tmp_path)), button_timeout=5, no_button=False)
        assert diagnostics.run_selftest(args, out=out) == 1
        assert "FAIL button: BCM 17 is in use (hint: stop the service first" in out.getvalue()
    finally:
        holder.close()

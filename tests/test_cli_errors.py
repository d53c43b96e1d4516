"""Bad input at the command line: one clear sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.sections import ConfigError, read_credential_file
from edgevoice.service.instance_lock import InstanceLock
from edgevoice_testbed.sim.wav import write_wav
from tests.support.alsa import simulated_alsa_env

ROOT = Path(__file__).resolve().parents[1]


def edgevoice(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = dict(env if env is not None else os.environ)
    environment["PYTHONPATH"] = str(ROOT)
    if env is None:
        environment.pop("GEMINI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "edgevoice", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd or ROOT,
        timeout=120,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("edgevoice:")]
    assert lines, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = edgevoice("check-config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 78
    assert_one_clear_line(result, "nope.toml does not exist")


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    result = edgevoice("check-config", "--config", str(tmp_path))
    assert result.returncode == 78
    assert_one_clear_line(result, "is a directory")


def test_config_that_is_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[audio\nperiod_ms = 20\n")
    result = edgevoice("check-config", "--config", str(path))
    assert result.returncode == 78
    assert_one_clear_line(result, "is not valid TOML")


def test_wrong_type_and_unknown_key_name_key_value_and_line(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text('[audio]\nperiod_ms = "twenty"\n\n[button]\npin = 17\ncolour = "red"\n')
    result = edgevoice("check-config", "--config", str(path))
    assert result.returncode == 78
    assert f"audio.period_ms = 'twenty' ({path}, line 2)" in result.stderr
    assert f"unknown key button.colour ({path}, line 6)" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_environment_variable_is_named(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text("[button]\npin = 17\n")
    env = dict(os.environ, EDGEVOICE_BUTTON__PIN="99")
    result = edgevoice("check-config", "--config", str(path), env=env)
    assert result.returncode == 78
    assert "button.pin = '99' (environment variable EDGEVOICE_BUTTON__PIN)" in result.stderr


def test_check_config_redacts_the_api_key(tmp_path: Path) -> None:
    path = tmp_path / "edgevoice.toml"
    path.write_text("[button]\npin = 22\n")
    secret = "AIzaSyTEST-not-a-real-key-0123456789"
    result = edgevoice("check-config", "--config", str(path), env=dict(os.environ, GEMINI_API_KEY=secret))
    assert result.returncode == 0
    assert "pin = 22" in result.stdout
    assert "set (redacted)" in result.stdout
    assert secret not in result.stdout + result.stderr


def test_example_config_is_valid_and_complete() -> None:
    result = edgevoice("check-config", "--config", str(ROOT / "config" / "edgevoice.toml"))
    assert result.returncode == 0, result.stderr
    # Every key of every section the daemon reads is in the example, so users see them all.
    for line in result.stdout.splitlines():
        if " = " in line and not line.startswith("#"):
            assert "# default" not in line or line.split(" = ")[0] in {"enabled"}, line


def test_credential_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    key = credentials / "gemini-api-key"
    key.write_text("secret-value\n")
    key.chmod(0o644)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(credentials))
    env.pop("GEMINI_API_KEY", None)
    config = tmp_path / "edgevoice.toml"
    config.write_text("")
    result = edgevoice("check-config", "--config", str(config), env=env)
    assert result.returncode == 78
    assert_one_clear_line(result, "readable by other users", "chmod 600")
    assert "secret-value" not in result.stderr
    key.chmod(0o600)
    assert edgevoice("check-config", "--config", str(config), env=env).returncode == 0


def test_credential_as_systemd_257_hands_it_over_is_accepted(tmp_path: Path) -> None:
    # systemd 257 (Debian 13) places LoadCredential= files with mode 0440 in a directory
    # only the service can enter: systemd protects them, the group is the service's own.
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o550)
    key = credentials / "gemini-api-key"
    key.write_text("secret-value\n")
    key.chmod(0o440)
    credentials.chmod(0o550)
    env = dict(os.environ, CREDENTIALS_DIRECTORY=str(credentials))
    env.pop("GEMINI_API_KEY", None)
    config = tmp_path / "edgevoice.toml"
    config.write_text("")
    result = edgevoice("check-config", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    assert "secret-value" not in result.stdout + result.stderr

    # The same mode on a careless file elsewhere is still refused...
    loose = tmp_path / "loose-key"
    loose.write_text("other-secret\n")
    loose.chmod(0o440)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_credential_file(loose, {"CREDENTIALS_DIRECTORY": str(credentials)})
    # ...and so is a world-readable file even in the credentials directory, or a
    # group-readable one in a "credentials directory" that others may enter.
    credentials.chmod(0o750)
    key.chmod(0o444)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_credential_file(key, {"CREDENTIALS_DIRECTORY": str(credentials)})
    open_directory = tmp_path / "open"
    open_directory.mkdir(mode=0o755)
    open_directory.chmod(0o755)
    exposed = open_directory / "gemini-api-key"
    exposed.write_text("third-secret\n")
    exposed.chmod(0o440)
    with pytest.raises(ConfigError, match="readable by other users"):
        read_credential_file(exposed, {"CREDENTIALS_DIRECTORY": str(open_directory)})


def test_live_without_an_api_key(tmp_path: Path) -> None:
    env = simulated_alsa_env(tmp_path)
    env.pop("GEMINI_API_KEY", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    result = edgevoice("simulate", "--live", "--out", str(tmp_path / "o.wav"), env=env)
    assert_one_clear_line(result, "--live needs a Gemini API key")


def test_mic_file_that_is_not_audio(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.wav"
    bogus.write_text("these are my shopping notes, not audio")
    result = edgevoice("simulate", "--mic", str(bogus), "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, "is not a PCM WAV file")


def test_missing_mic_file(tmp_path: Path) -> None:
    result = edgevoice("simulate", "--mic", str(tmp_path / "none.wav"), "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, "does not exist")


@pytest.mark.parametrize("spec", ["2:1", "abc", "1"])
def test_bad_press_schedule(tmp_path: Path, spec: str) -> None:
    result = edgevoice("simulate", "--press", spec, "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, "--press")


def test_capture_device_that_does_not_exist(tmp_path: Path) -> None:
    env = simulated_alsa_env(tmp_path)
    env["GEMINI_API_KEY"] = "test-key"
    config = tmp_path / "edgevoice.toml"
    config.write_text(
        '[audio]\ncapture_device = "no_such_microphone"\nplayback_device = "edgevoice_speaker"\n'
        f'[paths]\nstate_dir = "{tmp_path / "state"}"\n'
    )
    result = edgevoice("run", "--config", str(config), env=env)
    assert_one_clear_line(result, "the capture device 'no_such_microphone' does not exist")


@pytest.mark.parametrize(
    ("press", "names"),
    [
        ("nan:1", "the times must be finite numbers of seconds"),
        ("1:inf", "the times must be finite numbers of seconds"),
        ("1e8:100000001", "a press may end at most 600 s after it"),
        ("-1:2", "the press starts before the recording does"),
    ],
)
def test_press_times_that_cannot_be_are_named(tmp_path: Path, press: str, names: str) -> None:
    # "=" so that a leading minus is the value, not an option.
    result = edgevoice("simulate", f"--press={press}", "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, f"--press {press.replace('1e8', '100000000')}", names)


@pytest.mark.parametrize(
    ("option", "value", "names"),
    [
        ("--capture-device-rate", "-16000", "must be between 8000 and 192000 Hz"),
        ("--playback-device-rate", "0", "must be between 8000 and 192000 Hz"),
        ("--capture-device-channels", "0", "must be between 1 and 8 channels"),
    ],
)
def test_impossible_sound_card_is_named(tmp_path: Path, option: str, value: str, names: str) -> None:
    result = edgevoice("simulate", f"{option}={value}", "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, f"{option} {value}", names)


def test_mic_file_without_frames(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    write_wav(empty, b"", 16000)
    result = edgevoice("simulate", "--mic", str(empty), "--out", str(tmp_path / "o.wav"))
    assert_one_clear_line(result, "holds no audio (0 frames)")


def test_home_state_of_the_wrong_types_is_repaired_with_a_warning(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "home-state.json").write_text(
        json.dumps({"version": 1, "entities": {"light.kitchen": {"state": "on", "brightness": "bright"}}})
    )
    result = edgevoice("simulate", "--state-dir", str(state), "--out", str(tmp_path / "o.wav"))
    assert result.returncode == 0, result.stderr
    assert "ignoring stored brightness='bright' of light.kitchen" in result.stderr
    assert "bright%" not in result.stdout
    assert "Kitchen light is on at 100% brightness" in result.stdout


def test_a_second_daemon_on_the_same_state_directory_refuses_to_start(tmp_path: Path) -> None:
    env = simulated_alsa_env(tmp_path)
    env["GEMINI_API_KEY"] = "test-key"
    state = tmp_path / "state"
    config = tmp_path / "edgevoice.toml"
    config.write_text(
        '[audio]\ncapture_device = "edgevoice_mic"\nplayback_device = "edgevoice_speaker"\n'
        f'[paths]\nstate_dir = "{state}"\n'
    )
    # The first daemon: this test process holds the state directory the way a daemon does.
    with InstanceLock(state):
        result = edgevoice("run", "--config", str(config), env=env)
    assert_one_clear_line(result, f"another edgevoice daemon (pid {os.getpid()})", str(state))
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--timeout", "nan"], "--timeout nan: must be a number of seconds greater than 0"),
        (["--timeout=-1"], "--timeout -1: must be a number of seconds greater than 0"),
        (["--out", "{tmp}"], "is a directory; give the name of a WAV file"),
        (["--out", "{tmp}/no/such/dir/o.wav"], "/no/such/dir does not exist"),
        (["--state-dir", "{tmp}/a-file", "--out", "{tmp}/o.wav"], "a-file is a file, not a directory"),
    ],
)
def test_unusable_simulate_options_are_named(tmp_path: Path, args: list[str], names: str) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    result = edgevoice("simulate", *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert_one_clear_line(result, names)


@pytest.mark.parametrize("value", ["nan", "-5", "0"])
def test_selftest_button_timeout_must_be_a_duration(value: str) -> None:
    result = edgevoice("selftest", f"--button-timeout={value}")
    assert_one_clear_line(result, f"--button-timeout {value}: must be a number of seconds greater than 0")

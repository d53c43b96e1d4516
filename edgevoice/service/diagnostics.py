"""``edgevoice devices`` and ``edgevoice selftest``: is the hardware there and working?

``devices`` lists the sound cards and ALSA PCMs and, for the hardware devices
(``hw:...``, plus any named with ``--probe``), the rates and channel counts each accepts
in S16_LE. ``selftest`` plays a tone, records two seconds and measures the level, and waits
for a press and release of the push-to-talk button; each check prints one PASS/FAIL line,
with a hint when it fails. Busy or missing devices are reported, never a traceback.

Devices are first opened non-blocking: ALSA's blocking open of a busy hardware device
waits until the other program lets go, which would hang the command instead of saying
"busy".

numpy (about 11 MB resident) is imported only by the selftest's level and tone helpers:
the ``edgevoice`` command imports this module to register its subcommands, ``run`` included.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import alsaaudio

from edgevoice.config import DEFAULT_CONFIG_PATH, Settings, load_settings, resolve_config_path
from edgevoice.errors import UserError

PROBE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
PROBE_CHANNELS = (1, 2, 4, 6, 8)
FULL_SCALE = 32768.0
# Asked to speak, a working microphone peaks far above this; a dead or muted one does not.
QUIET_PEAK_DBFS = -50.0
# More than this share of samples at full scale is clipping, not an odd loud transient.
CLIPPED_FRACTION_LIMIT = 0.001
BUSY_HINT = (
    "another program holds the device (the edgevoice service? systemctl stop edgevoice): fuser -v /dev/snd/*"
)
MISSING_HINT = "run edgevoice devices and set audio.{key} to one of the devices it lists"


# -- decisions (no I/O) --------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    hint: str | None = None
    skipped: bool = False

    def line(self) -> str:
        verdict = "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"
        text = f"{verdict} {self.name}: {self.detail}"
        if self.hint and not self.passed:
            text += f" (hint: {self.hint})"
        return text


@dataclass(frozen=True)
class LevelReport:
    rms_dbfs: float
    peak_dbfs: float
    clipped_fraction: float
    frames: int


def dbfs(value: float) -> float:
    return -math.inf if value <= 0 else 20 * math.log10(value / FULL_SCALE)


def measure_level(pcm: bytes, channels: int = 1) -> LevelReport:
    """Level of interleaved S16_LE audio, all channels together."""
    import numpy as np  # selftest only: see the module's docstring
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return LevelReport(-math.inf, -math.inf, 0.0, 0)
    rms = float(np.sqrt(np.mean(samples * samples)))
    peak = float(np.max(np.abs(samples)))
    clipped = float(np.mean((samples >= 32767) | (samples <= -32768)))
    return LevelReport(dbfs(rms), dbfs(peak), clipped, samples.size // channels)


def judge_level(report: LevelReport, device: str) -> CheckResult:
    summary = (
        f"{report.frames} frames from {device!r}: RMS {report.rms_dbfs:.1f} dBFS, "
        f"peak {report.peak_dbfs:.1f} dBFS"
    )
    if report.frames == 0:
        return CheckResult("microphone", False, f"no audio from {device!r}", "run edgevoice devices")
    if report.peak_dbfs == -math.inf:
        return CheckResult(
            "microphone",
            False,
            f"{summary}: digital silence",
            "the microphone is muted, unplugged or the wrong device: check alsamixer -c CARD "
            "(F4: capture) and audio.capture_device",
        )
    if report.peak_dbfs < QUIET_PEAK_DBFS:
        return CheckResult(
            "microphone",
            False,
            f"{summary}: too quiet",
            "speak while it records, or raise the capture gain in alsamixer",
        )
    if report.clipped_fraction > CLIPPED_FRACTION_LIMIT:
        return CheckResult(
            "microphone",
            False,
            f"{summary}, {report.clipped_fraction:.1%} of samples clipped",
            "lower the capture gain in alsamixer, or speak further from the microphone",
        )
    return CheckResult("microphone", True, f"{summary}, no clipping")


def alsa_error_code(exc: BaseException) -> int | None:
    """pyalsaaudio reports errors as text like "Device or resource busy [hw:1,0]"."""
    text = str(exc)
    for code in (errno.EBUSY, errno.ENOENT, errno.ENODEV, errno.EACCES, errno.EINVAL, errno.EIO):
        if os.strerror(code) in text:
            return code
    return None


def describe_open_error(exc: BaseException, config_key: str) -> tuple[str, str]:
    """(what happened, hint) for a failed open."""
    code = alsa_error_code(exc)
    if code == errno.EBUSY:
        return "device is busy", BUSY_HINT
    if code in (errno.ENOENT, errno.ENODEV):
        return "no such device", MISSING_HINT.format(key=config_key)
    if code == errno.EACCES:
        return "permission denied", "add the user to the audio group: sudo adduser $USER audio"
    return str(exc), "run edgevoice devices"


def tone(rate: int, channels: int, seconds: float, frequency: float = 440.0) -> bytes:
    """A sine at -12 dBFS with 10 ms fades (no clicks), interleaved S16_LE."""
    import numpy as np  # selftest only: see the module's docstring
    frames = int(rate * seconds)
    t = np.arange(frames) / rate
    wave = np.sin(2 * np.pi * frequency * t) * (10 ** (-12 / 20))
    fade = min(frames // 2, int(rate * 0.01))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        wave[:fade] *= ramp
        wave[-fade:] *= ramp[::-1]
    samples = np.round(wave * 32767).astype("<i2")
    return np.repeat(samples, channels).tobytes()


def rate_list(rates: Sequence[int]) -> str:
    return ", ".join(str(rate) for rate in rates) if rates else "none"


# -- ALSA (I/O) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    device: str
    rates: tuple[int, ...] = ()
    channels: tuple[int, ...] = ()
    error: str | None = None
    hint: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.error} ({self.hint})" if self.hint else self.error
        if not self.rates:
            return "accepts none of the probed formats in S16_LE (try its plughw: twin)"
        channels = ", ".join(str(c) for c in self.channels)
        return f"S16_LE at {rate_list(self.rates)} Hz; channels {channels}"


def _open(kind: str, device: str, *, rate: int, channels: int, period: int, blocking: bool) -> alsaaudio.PCM:
    return alsaaudio.PCM(
        alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK,
        alsaaudio.PCM_NORMAL if blocking else alsaaudio.PCM_NONBLOCK,
        device=device,
        rate=rate,
        channels=channels,
        format=alsaaudio.PCM_FORMAT_S16_LE,
        periodsize=period,
    )


def _accepts(kind: str, device: str, rate: int, channels: int) -> bool:
    try:
        pcm = _open(kind, device, rate=rate, channels=channels, period=rate // 50, blocking=False)
    except alsaaudio.ALSAAudioError:
        return False
    try:
        info = pcm.info()
        return (
            int(info.get("rate", 0)) == rate
            and int(info.get("channels", 0)) == channels
            and info.get("format_name") == "S16_LE"
        )
    finally:
        pcm.close()


def probe_device(kind: str, device: str) -> ProbeResult:
    """Which rates and channel counts ``device`` accepts in S16_LE (non-blocking opens)."""
    try:
        _open(kind, device, rate=48000, channels=2, period=960, blocking=False).close()
    except alsaaudio.ALSAAudioError as exc:
        what, hint = describe_open_error(exc, f"{kind}_device")
        if alsa_error_code(exc) not in (errno.EINVAL, None):
            return ProbeResult(device, error=what, hint=hint)
    channels_for_rates = next(
        (c for c in PROBE_CHANNELS if any(_accepts(kind, device, r, c) for r in (48000, 16000))),
        1,
    )
    rates = tuple(r for r in PROBE_RATES if _accepts(kind, device, r, channels_for_rates))
    rate_for_channels = 48000 if 48000 in rates else (rates[0] if rates else 48000)
    channels = tuple(c for c in PROBE_CHANNELS if _accepts(kind, device, rate_for_channels, c))
    return ProbeResult(device, rates=rates, channels=channels)


def _cards() -> list[tuple[int, str, str]]:
    cards = []
    for index in alsaaudio.card_indexes():
        try:
            short, long = alsaaudio.card_name(index)
        except alsaaudio.ALSAAudioError:
            short, long = "?", "?"
        cards.append((index, short, long))
    return cards


def run_devices(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    cards = _cards()
    print("Sound cards:", file=out)
    if not cards:
        print("  none found (is the card plugged in? is the driver loaded? see aplay -l)", file=out)
    for index, short, long in cards:
        print(f"  {index}: {short} ({long})", file=out)
    probes = set(args.probe or ())
    for kind, pcm_type in (("capture", alsaaudio.PCM_CAPTURE), ("playback", alsaaudio.PCM_PLAYBACK)):
        print(f"{kind.capitalize()} devices:", file=out)
        names = list(alsaaudio.pcms(pcm_type))
        names += [name for name in sorted(probes) if name not in names]
        for name in names:
            if name.startswith("hw:") or name in probes:
                print(f"  {name}: {probe_device(kind, name).describe()}", file=out)
            else:
                print(f"  {name}", file=out)
    print(
        "Use a name above for audio.capture_device / audio.playback_device, e.g. "
        '"plughw:CARD=Device,DEV=0" (plughw converts rate and channels).',
        file=out,
    )
    return 0


# -- selftest checks -----------------------------------------------------------------------


def _device_format(settings: Settings, kind: str) -> tuple[str, int, int]:
    audio = settings.audio
    if kind == "capture":
        rate = audio.capture_device_rate or audio.capture_rate
        return audio.capture_device, rate, audio.capture_device_channels or 1
    rate = audio.playback_device_rate or audio.playback_rate
    return audio.playback_device, rate, audio.playback_device_channels or 1


def _open_checked(
    name: str, kind: str, device: str, rate: int, channels: int, period: int
) -> tuple[alsaaudio.PCM | None, CheckResult | None]:
    """Open for real after a non-blocking probe (so "busy" is reported, not waited on)."""
    key = f"{kind}_device"
    try:
        _open(kind, device, rate=rate, channels=channels, period=period, blocking=False).close()
        pcm = _open(kind, device, rate=rate, channels=channels, period=period, blocking=True)
    except alsaaudio.ALSAAudioError as exc:
        what, hint = describe_open_error(exc, key)
        return None, CheckResult(name, False, f"cannot open {device!r}: {what}", hint)
    info = pcm.info()
    if int(info.get("rate", 0)) != rate or int(info.get("channels", 0)) != channels:
        pcm.close()
        return None, CheckResult(
            name,
            False,
            f"{device!r} does not accept {rate} Hz, {channels} channel(s) "
            f"(it offered {info.get('rate')} Hz, {info.get('channels')} channel(s))",
            f"set audio.{kind}_device_rate / audio.{kind}_device_channels to what "
            f"edgevoice devices --probe {device} lists, or use a plughw: device",
        )
    return pcm, None


def _run_with_deadline(work: Callable[[], object], seconds: float) -> tuple[bool, object]:
    """Run blocking ALSA I/O in a thread; a stalled device must not hang the selftest."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = work()
        except Exception as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="selftest-io", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return False, None
    if "error" in box:
        return True, box["error"]
    return True, box.get("result")


def check_playback(settings: Settings, seconds: float = 0.6) -> CheckResult:
    device, rate, channels = _device_format(settings, "playback")
    period = max(1, rate * settings.audio.period_ms // 1000)
    pcm, failure = _open_checked("speaker", "playback", device, rate, channels, period)
    if failure:
        return failure
    data = tone(rate, channels, seconds)
    step = period * channels * 2

    def play() -> int:
        written = 0
        for start in range(0, len(data), step):
            written += max(0, pcm.write(data[start : start + step]))
        pcm.drain()
        return written

    finished, result = _run_with_deadline(play, seconds + 5)
    if not finished:
        return CheckResult("speaker", False, f"{device!r} stopped accepting audio", BUSY_HINT)
    pcm.close()
    if isinstance(result, Exception):
        return CheckResult("speaker", False, f"playing on {device!r} failed: {result}", BUSY_HINT)
    return CheckResult(
        "speaker",
        True,
        f"played a 440 Hz tone for {seconds:g} s on {device!r} at {rate} Hz, "
        f"{channels} channel(s) (did you hear it?)",
    )


def check_microphone(settings: Settings, out: TextIO, seconds: float = 2.0) -> CheckResult:
    device, rate, channels = _device_format(settings, "capture")
    period = max(1, rate * settings.audio.period_ms // 1000)
    pcm, failure = _open_checked("microphone", "capture", device, rate, channels, period)
    if failure:
        return failure
    wanted = int(rate * seconds)
    print(f"Recording {seconds:g} s from {device!r}: speak now.", file=out, flush=True)

    def record() -> bytes:
        chunks, frames = [], 0
        while frames < wanted:
            length, data = pcm.read()
            if length > 0:
                chunks.append(data)
                frames += length
        return b"".join(chunks)[: wanted * channels * 2]

    finished, result = _run_with_deadline(record, seconds + 5)
    if not finished:
        return CheckResult(
            "microphone", False, f"{device!r} delivered no audio for {seconds + 5:g} s", BUSY_HINT
        )
    pcm.close()
    if isinstance(result, Exception):
        return CheckResult("microphone", False, f"reading {device!r} failed: {result}", BUSY_HINT)
    assert isinstance(result, bytes)
    return judge_level(measure_level(result, channels), device)


def check_button(settings: Settings, timeout_s: float, out: TextIO) -> CheckResult:
    from gpiozero import Button
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError

    pin = settings.button.pin
    bounce = (settings.button.bounce_time_ms or 0) / 1000 or None
    try:
        button = Button(pin, pull_up=settings.button.pull_up, bounce_time=bounce)
    except BadPinFactory:
        return CheckResult(
            "button",
            False,
            "gpiozero found no way to reach the GPIO pins",
            "on a Raspberry Pi install python3-lgpio (scripts/install.sh does)",
        )
    except GPIOPinInUse:
        return CheckResult(
            "button", False, f"BCM {pin} is in use", "stop the service first: systemctl stop edgevoice"
        )
    except (GPIOZeroError, OSError, ValueError) as exc:
        return CheckResult(
            "button",
            False,
            f"BCM {pin} cannot be used: {exc}",
            "add the user to the gpio group, or stop the service (systemctl stop edgevoice)",
        )
    pressed, released = threading.Event(), threading.Event()
    try:
        # Edges, not levels: a quick press and release must not slip between two waits.
        button.when_pressed = pressed.set
        button.when_released = lambda: released.set() if pressed.is_set() else None
        print(
            f"Press and release the button on BCM {pin} (within {timeout_s:g} s).",
            file=out,
            flush=True,
        )
        if not pressed.wait(timeout_s):
            return CheckResult(
                "button",
                False,
                f"no press on BCM {pin} within {timeout_s:g} s",
                f"check the wiring (button between BCM {pin} and GND) and button.pin",
            )
        if not released.wait(timeout_s):
            return CheckResult(
                "button",
                False,
                f"BCM {pin} pressed but not released within {timeout_s:g} s",
                "a button wired to 3.3 V needs button.pull_up = false",
            )
        return CheckResult("button", True, f"press and release seen on BCM {pin}")
    finally:
        button.close()


def run_selftest(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not args.no_button and not (math.isfinite(args.button_timeout) and args.button_timeout > 0):
        raise UserError(
            f"--button-timeout {args.button_timeout:g}: must be a number of seconds greater than 0"
        )
    path = resolve_config_path(args.config, os.environ)
    settings = load_settings(path, require_file=path != DEFAULT_CONFIG_PATH).settings
    results = [check_playback(settings)]
    print(results[-1].line(), file=out, flush=True)
    results.append(check_microphone(settings, out))
    print(results[-1].line(), file=out, flush=True)
    if args.no_button:
        results.append(CheckResult("button", True, "not checked (--no-button)", skipped=True))
    else:
        results.append(check_button(settings, args.button_timeout, out))
    print(results[-1].line(), file=out, flush=True)
    failed = [r.name for r in results if not r.passed]
    print("All checks passed." if not failed else f"Failed: {', '.join(failed)}.", file=out)
    return 0 if not failed else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    devices = subparsers.add_parser(
        "devices", help="list sound cards and ALSA devices, with the formats each accepts"
    )
    devices.add_argument(
        "--probe",
        action="append",
        metavar="DEVICE",
        help="also probe this device's rates and channels (hw: devices are always probed)",
    )
    devices.set_defaults(handler=run_devices)

    selftest = subparsers.add_parser(
        "selftest", help="play a tone, record and measure the microphone, test the button"
    )
    selftest.add_argument(
        "--config",
        metavar="FILE",
        help="configuration file (default: $EDGEVOICE_CONFIG or /etc/edgevoice/edgevoice.toml)",
    )
    selftest.add_argument(
        "--button-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the button press, and again for the release (default 10)",
    )
    selftest.add_argument("--no-button", action="store_true", help="skip the button check")
    selftest.set_defaults(handler=run_selftest)


__all__ = [
    "CheckResult",
    "LevelReport",
    "ProbeResult",
    "check_button",
    "check_microphone",
    "check_playback",
    "judge_level",
    "measure_level",
    "probe_device",
    "register",
    "run_devices",
    "run_selftest",
    "tone",
]

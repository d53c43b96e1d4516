"""Simulated sound cards that are fussy the way real ones are, for the real libasound.

The simulator drives the real libasound and pyalsaaudio through libasound's ``file``
plugin: the microphone PCM reads a raw file, the speaker PCM writes one. Underneath the
file plugin sits the "card". With no fussy options that card is libasound's ``null`` PCM,
which accepts any rate and channel count and never blocks.

A real card often accepts one rate and channel count only, paces reads and writes by its
clock, overruns or underruns when the program is late, refuses a second open, and vanishes
when unplugged. libasound 1.2.8's built-in plugins cannot make a file PCM do that: ``null``
takes no options; ``share`` fixes rate and channels but aborts over ``null`` (an assertion
on capture, heap corruption on playback close); ``dmix``/``dsnoop``/``dshare`` insist on a
kernel ``hw`` slave; ``multi`` fixes the channel count only; ``plug``/``rate``/``route``
convert instead of refusing. So the card is a small ALSA I/O plugin, ``data/fussy_pcm.c``,
compiled on first use with the system C compiler against libasound. libasound negotiates
with it exactly as with a kernel device: pyalsaaudio asking for 16 kHz mono on a 48 kHz
stereo card gets 48 kHz stereo back from ``PCM.info()``; a late reader gets
``read() == (-32, b"")`` (EPIPE overrun); an unplugged card raises
``ALSAAudioError("No such device [...]")``; a busy one raises ``ALSAAudioError("Device or
resource busy [...]")`` at open.

Note on the file plugin: every open of the speaker PCM truncates its file, and every open
of the microphone PCM reads its file from the start again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path
from typing import Final

from edgevoice.audio.convert import CaptureConverter, PlaybackConverter

MIC_PCM: Final = "edgevoice_mic"
SPEAKER_PCM: Final = "edgevoice_speaker"
PLUGIN_TYPE: Final = "edgevoice_fussy"
PLUGIN_FILE: Final = f"libasound_module_pcm_{PLUGIN_TYPE}.so"
# -DPIC: alsa-lib's plugin symbol macros only emit the dlsym'able entry point with it.
_CFLAGS: Final = ("-shared", "-fPIC", "-DPIC", "-O2", "-Wall")
_BUILD_TIMEOUT_S: Final = 120


class FussyPluginError(RuntimeError):
    """The simulated card's ALSA plugin could not be built."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgevoice" / "alsa-plugin"


def fussy_plugin(cache_dir: Path | None = None) -> Path:
    """Path of the compiled ``edgevoice_fussy`` plugin, building it if needed.

    Builds are cached by a hash of the source and flags, and installed atomically, so
    parallel callers are safe. Needs a C compiler (``$CC``, default ``cc``) and the ALSA
    headers (Debian: ``gcc libasound2-dev``).
    """
    source = resources.files("edgevoice_testbed.sim").joinpath("data/fussy_pcm.c").read_bytes()
    compiler = os.environ.get("CC", "cc")
    digest = hashlib.sha256(source + " ".join((compiler, *_CFLAGS)).encode()).hexdigest()[:16]
    target = (cache_dir or _default_cache_dir()) / digest / PLUGIN_FILE
    if target.is_file():
        return target
    if shutil.which(compiler) is None:
        raise FussyPluginError(
            f"the simulated sound card needs a C compiler to build its ALSA plugin, and "
            f"{compiler!r} was not found (Debian: apt-get install gcc libasound2-dev)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source_path = Path(work) / "fussy_pcm.c"
        source_path.write_bytes(source)
        built = Path(work) / PLUGIN_FILE
        try:
            result = subprocess.run(
                [compiler, *_CFLAGS, "-o", str(built), str(source_path), "-lasound"],
                capture_output=True, text=True, timeout=_BUILD_TIMEOUT_S, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise FussyPluginError(
                f"building the simulated card's ALSA plugin failed: {error}"
            ) from error
        if result.returncode != 0:
            raise FussyPluginError(
                "building the simulated card's ALSA plugin failed (are the ALSA headers "
                f"installed? Debian: libasound2-dev):\n{result.stderr.strip()}"
            )
        built.replace(target)
    return target


def _quote(value: str | os.PathLike[str]) -> str:
    """An alsa-lib configuration string literal."""
    text = os.fspath(value)
    if any(ch in text for ch in "\n\r\0"):
        raise ValueError(f"path {text!r} cannot be written into an ALSA configuration")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


def asoundrc_for(
    mic_raw: Path,
    speaker_raw: Path,
    *,
    capture_rate: int | None = None,
    capture_channels: int | None = None,
    playback_rate: int | None = None,
    playback_channels: int | None = None,
    paced: bool = False,
    exclusive: bool = False,
    unplug_file: Path | None = None,
    capture_buffer_bytes: tuple[int, int] | None = None,
    playback_buffer_bytes: tuple[int, int] | None = None,
    capture_period_bytes: tuple[int, int] | None = None,
    playback_period_bytes: tuple[int, int] | None = None,
    plugin_cache_dir: Path | None = None,
) -> str:
    """asoundrc text defining ``edgevoice_mic`` (reads ``mic_raw``, S16_LE in the card's
    rate/channels) and ``edgevoice_speaker`` (writes ``speaker_raw``).

    ``capture_*``/``playback_*``: the only rate/channel count the card accepts (None: any).
    ``paced``: the card runs on the real-time clock (blocking I/O, real overruns and
    underruns) instead of returning at once. ``exclusive``: a second open of the same PCM
    fails with EBUSY (lock files next to ``speaker_raw``). ``unplug_file``: once this file
    exists the card is gone (ENODEV). ``capture_buffer_bytes``/``playback_buffer_bytes``:
    (least, most) bytes the card's ring buffer may have, as a driver's own limits (the
    program then gets another buffer than it asked for). Any of these builds and uses the fussy plugin;
    without them the card is libasound's ``null`` PCM and no compiler is needed.

    Point libasound at the result with ``ALSA_CONFIG_PATH=/usr/share/alsa/alsa.conf:FILE``
    before the first PCM is opened in the process.
    """
    for name, value in (
        ("capture_rate", capture_rate), ("capture_channels", capture_channels),
        ("playback_rate", playback_rate), ("playback_channels", playback_channels),
    ):
        _positive(name, value)
    mic_raw, speaker_raw = Path(mic_raw).absolute(), Path(speaker_raw).absolute()
    sizes = {
        "capture_buffer_bytes": capture_buffer_bytes, "playback_buffer_bytes": playback_buffer_bytes,
        "capture_period_bytes": capture_period_bytes, "playback_period_bytes": playback_period_bytes,
    }
    for name, bounds in sizes.items():
        if bounds is not None:
            for value in bounds:
                _positive(name, value)
            if bounds[0] > bounds[1]:
                raise ValueError(f"{name}: the least ({bounds[0]}) is above the most ({bounds[1]})")
    constrained = (capture_rate, capture_channels, playback_rate, playback_channels, *sizes.values())
    fussy = (
        any(v is not None for v in constrained) or paced or exclusive or unplug_file is not None
    )

    def card(rate: int | None, channels: int | None, direction: str) -> str:
        if not fussy:
            return '"null"'
        options = [f"type {PLUGIN_TYPE}"]
        if rate is not None:
            options.append(f"rate {rate}")
        if channels is not None:
            options.append(f"channels {channels}")
        for kind in ("buffer", "period"):
            bounds = sizes[f"{direction}_{kind}_bytes"]
            if bounds is not None:
                options.append(f"{kind}_bytes_min {bounds[0]} {kind}_bytes_max {bounds[1]}")
        if paced:
            options.append("paced true")
        if exclusive:
            lock = speaker_raw.parent / f"{speaker_raw.name}.{direction}.lock"
            options.append(f"lock_file {_quote(lock)}")
        if unplug_file is not None:
            options.append(f"unplug_file {_quote(Path(unplug_file).absolute())}")
        return "{ " + " ".join(options) + " }"

    lines = ["# Generated by edgevoice_testbed.sim.fussy"]
    if fussy:
        lines.append(f"pcm_type.{PLUGIN_TYPE} {{ lib {_quote(fussy_plugin(plugin_cache_dir))} }}")
    lines += [
        f"pcm.{MIC_PCM} {{",
        "  type file",
        f"  slave.pcm {card(capture_rate, capture_channels, 'capture')}",
        '  file "/dev/null"',
        f"  infile {_quote(mic_raw)}",
        '  format "raw"',
        "}",
        f"pcm.{SPEAKER_PCM} {{",
        "  type file",
        f"  slave.pcm {card(playback_rate, playback_channels, 'playback')}",
        f"  file {_quote(speaker_raw)}",
        '  format "raw"',
        "}",
        "",
    ]
    return "\n".join(lines)


def to_device_format(pcm: bytes, source_rate: int, rate: int, channels: int) -> bytes:
    """Mono S16_LE at ``source_rate`` (e.g. a 16 kHz utterance) -> the card's format, for
    writing a fussy microphone's input file."""
    converter = PlaybackConverter(source_rate, device_rate=rate, device_channels=channels)
    return converter.process(pcm) + converter.flush()


def from_device_format(pcm: bytes, rate: int, channels: int, target_rate: int) -> bytes:
    """The card's format -> mono S16_LE at ``target_rate`` (channels mixed), for checking
    what a fussy speaker was given."""
    converter = CaptureConverter(rate, channels, "mix", target_rate=target_rate)
    return converter.process(pcm) + converter.flush()

"""Opening ALSA PCMs with pyalsaaudio, and the small interface the audio threads use.

The capture and playback threads talk to a :class:`CaptureDevice` / :class:`PlaybackDevice`
(the gpiozero pin-factory idea): the production implementation is a pyalsaaudio ``PCM``
as it is; the simulator wraps the same real ``PCM`` (libasound's file plugin) to pace it
like a sound card. Errors become :class:`AudioDeviceError` with one sentence a user can act
on.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Protocol

import alsaaudio

SAMPLE_BYTES = 2  # S16_LE


class AudioDeviceError(Exception):
    """An ALSA device could not be opened or used; the message names it and says why."""

    def __init__(self, message: str, *, errno_code: int | None = None):
        super().__init__(message)
        self.errno_code = errno_code


class CaptureDevice(Protocol):
    def read(self) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


class PlaybackDevice(Protocol):
    def write(self, data: bytes) -> int: ...

    def avail(self) -> int: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OpenedFormat:
    rate: int
    channels: int
    period_frames: int
    buffer_frames: int


def open_pcm(
    kind: str,
    device: str,
    *,
    rate: int,
    channels: int,
    period_frames: int,
    periods: int = 4,
) -> tuple[alsaaudio.PCM, OpenedFormat]:
    """Open a blocking S16_LE PCM. ``kind`` is "capture" or "playback"."""
    pcm_type = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        pcm = alsaaudio.PCM(
            pcm_type,
            alsaaudio.PCM_NORMAL,
            device=device,
            rate=rate,
            channels=channels,
            format=alsaaudio.PCM_FORMAT_S16_LE,
            periodsize=period_frames,
            periods=periods,
        )
    except alsaaudio.ALSAAudioError as exc:
        raise AudioDeviceError(describe_alsa_error(kind, device, exc), errno_code=alsa_errno(exc)) from None
    info = pcm.info()
    return pcm, OpenedFormat(
        rate=int(info.get("rate", rate)),
        channels=int(info.get("channels", channels)),
        period_frames=int(info.get("period_size", period_frames)),
        buffer_frames=int(info.get("buffer_size", period_frames * periods)),
    )


def alsa_errno(exc: BaseException) -> int | None:
    text = str(exc)
    for code in (errno.ENOENT, errno.EBUSY, errno.ENODEV, errno.EPIPE, errno.EBADFD, errno.EACCES, errno.EIO):
        if os.strerror(code) in text:
            return code
    return None


def describe_alsa_error(kind: str, device: str, exc: BaseException) -> str:
    code = alsa_errno(exc)
    what = f"the {kind} device {device!r}"
    if code == errno.ENOENT:
        return f"{what} does not exist (see `edgevoice devices` for the devices ALSA knows)"
    if code == errno.EBUSY:
        return f"{what} is busy: another program is using it (find it with `fuser -v /dev/snd/*`)"
    if code == errno.ENODEV:
        return f"{what} has disappeared (unplugged?)"
    if code == errno.EACCES:
        return f"{what} cannot be opened: permission denied (is the user in the audio group?)"
    return f"{what} failed: {exc}"

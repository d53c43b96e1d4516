"""Opening ALSA PCMs with pyalsaaudio, and the small interface the audio threads use.

The capture and playback threads talk to a :class:`CaptureDevice` / :class:`PlaybackDevice`
(the gpiozero pin-factory idea): the production implementations are a pyalsaaudio ``PCM``
(playback as it is, capture in :class:`AlsaCapture`); the simulator wraps the same real
``PCM`` (libasound's file plugin) to pace it like a sound card. Errors become
:class:`AudioDeviceError` with one sentence a user can act on.
"""

from __future__ import annotations

import errno
import os
import select
import threading
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
    """A microphone. One that knows its card's buffer also has ``buffer_frames`` (see
    :func:`granted_buffer_frames`)."""

    def read(self) -> tuple[int, bytes]:
        """A period of audio, waiting for it: ``(frames, pcm)``; ``(0, b"")`` for nothing
        this time, a negative ``frames`` for an ALSA error code (``-EPIPE``: an overrun)."""
        ...

    def cut_short(self) -> None:
        """From another thread: end the read in progress (or the next) with the samples
        captured so far, fewer than a period. A device that cannot may ignore it."""
        ...

    def close(self) -> None: ...


class PlaybackDevice(Protocol):
    """A speaker. One that knows its card's buffer also has ``buffer_frames`` (see
    :func:`granted_buffer_frames`)."""

    def write(self, data: bytes) -> int: ...

    def avail(self) -> int: ...

    def drop(self) -> None: ...

    def close(self) -> None: ...


def granted_buffer_frames(device: object) -> int | None:
    """The frames the card's ring buffer holds, as the card granted it, in the pipeline's
    frames (16 kHz in, 24 kHz out); None where the device does not say.

    A card has its own limits, and libasound gives the nearest buffer it allows, not the
    one asked for: an idle microphone that lets more gather than the card holds overruns,
    and a speaker that counts on a buffer of another size misjudges what is still to play.
    """
    frames = getattr(device, "buffer_frames", None)
    return frames if isinstance(frames, int) and frames > 0 else None


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
    blocking: bool = True,
) -> tuple[alsaaudio.PCM, OpenedFormat]:
    """Open an S16_LE PCM. ``kind`` is "capture" or "playback"."""
    pcm_type = alsaaudio.PCM_CAPTURE if kind == "capture" else alsaaudio.PCM_PLAYBACK
    try:
        pcm = alsaaudio.PCM(
            pcm_type,
            alsaaudio.PCM_NORMAL if blocking else alsaaudio.PCM_NONBLOCK,
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


class AlsaCapture:
    """A capture PCM opened non-blocking, read by waiting in ``poll()`` on its descriptors
    and on an eventfd that :meth:`cut_short` writes.

    A blocking ``read()`` always waits for a whole period, so the button's release would
    wait up to a period (20 ms) for the samples before it. Here a cut ends the wait at
    once and the read takes what the card holds (a non-blocking ``snd_pcm_readi`` gives
    what is available, up to the period). Reads then end off the card's period boundaries;
    a card whose wake-ups come only at its boundaries would hold each later period back
    until the next one, so the read after the cut's next whole period takes the rest
    without waiting, which puts them back on the boundaries.
    """

    def __init__(self, pcm: alsaaudio.PCM, period_frames: int, buffer_frames: int | None = None) -> None:
        self._pcm = pcm
        self._period_frames = period_frames
        self.buffer_frames = buffer_frames
        self._alsa_fds: list[tuple[int, int]] = pcm.polldescriptors()
        self._cut_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()
        for fd, mask in self._alsa_fds:
            self._poll.register(fd, mask)
        self._poll.register(self._cut_fd, select.POLLIN)
        self._closing = threading.Lock()
        # A wait that ends without the card or a cut (a card that stopped delivering)
        # returns nothing, so that the capture thread can see stop() and beat its heartbeat.
        self._poll_timeout_ms = 250
        self._cut = False
        # A capture stream starts with its first read: none may wait before it.
        self._started = False
        # After a cut: the next whole period ends off the card's boundary, and the read
        # after it takes the rest without waiting.
        self._rest_after_next = False
        self._take_rest = False

    def read(self) -> tuple[int, bytes]:
        if not self._started or self._take_rest:
            self._take_rest = False
            length, data = self._take()
            if length != 0:
                return length, data
        while True:
            if not self._cut and not self._wait():
                return 0, b""
            length, data = self._take()
            if self._cut:
                if length < self._period_frames:
                    self._cut = False  # caught up with the cut
                    self._rest_after_next = length > 0
            elif self._rest_after_next and length > 0:
                self._rest_after_next = False
                self._take_rest = True
            if length != 0:
                return length, data

    def cut_short(self) -> None:
        # Under the lock: once close() has freed the eventfd its number may be another file's.
        with self._closing:
            if self._cut_fd >= 0:
                os.eventfd_write(self._cut_fd, 1)

    def close(self) -> None:
        with self._closing:
            self._poll.unregister(self._cut_fd)
            os.close(self._cut_fd)
            self._cut_fd = -1
        self._pcm.close()

    def _wait(self) -> bool:
        """Until the card holds a period or a cut comes; False if neither came."""
        while True:
            fired = dict(self._poll.poll(self._poll_timeout_ms))
            if not fired:
                return False
            if fired.pop(self._cut_fd, 0):
                os.eventfd_read(self._cut_fd)
                self._cut = True
                return True
            if fired:
                card = [(fd, fired.get(fd, 0)) for fd, _mask in self._alsa_fds]
                if self._pcm.polldescriptors_revents(card):
                    return True

    def _take(self) -> tuple[int, bytes]:
        self._started = True
        length, data = self._pcm.read()
        if length < 0:  # an overrun: pyalsaaudio prepared the stream again, from a boundary
            self._started = False
            self._rest_after_next = self._take_rest = False
        return length, data


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

"""Sound cards as the pipeline wants them: 16 kHz mono in, 24 kHz mono out.

Many USB and I2S cards run only at 44.1 or 48 kHz, often stereo. The card is asked for the
pipeline's format; when it answers with its own (pyalsaaudio reports what libasound
negotiated), it is reopened at that format with a period of the same duration and a
streaming resampler converts (:mod:`edgevoice.audio.convert`). The audio threads never
know: they read 16 kHz mono and write 24 kHz mono.

ALSA's transient errors are absorbed here: a playback underrun (``write() == -EPIPE``,
the data not written) is counted and the period written again.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgevoice.audio.alsa import (
    SAMPLE_BYTES,
    AlsaCapture,
    CaptureDevice,
    OpenedFormat,
    PlaybackDevice,
    open_pcm,
)

if TYPE_CHECKING:  # imported when a card needs converting: numpy and soxr cost about 15 MB
    import alsaaudio

    from edgevoice.audio.convert import CaptureConverter, PlaybackConverter

log = logging.getLogger(__name__)

MAX_READS_FOR_OUTPUT = 8


class ConvertingCapture:
    """A capture PCM at the card's format, read as 16 kHz mono. ``buffer_frames``: the
    card's buffer in 16 kHz frames."""

    def __init__(
        self, pcm: CaptureDevice, converter: CaptureConverter, buffer_frames: int | None = None
    ) -> None:
        self._pcm = pcm
        self._converter = converter
        self.buffer_frames = buffer_frames

    def read(self) -> tuple[int, bytes]:
        # The resampler holds a few milliseconds back, so one period in can give nothing
        # out; read on until it gives something, like a card at the pipeline's rate would.
        for _ in range(MAX_READS_FOR_OUTPUT):
            length, data = self._pcm.read()
            if length <= 0:
                return length, b""
            out = self._converter.process(data)
            if out:
                return len(out) // SAMPLE_BYTES, out
        return 0, b""

    def cut_short(self) -> None:
        self._pcm.cut_short()

    def close(self) -> None:
        self._pcm.close()


class ConvertingPlayback:
    """A playback PCM at the card's format, written as 24 kHz mono. ``avail`` and the
    buffer size are given in source (24 kHz) frames, so the speaker's cut-and-fade works
    the same on any card."""

    def __init__(
        self,
        pcm: PlaybackDevice,
        converter: PlaybackConverter | None,
        device_rate: int,
        source_rate: int,
        device_buffer_frames: int | None = None,
    ) -> None:
        self._pcm = pcm
        self._converter = converter
        self._ratio = source_rate / device_rate
        self.buffer_frames = None if device_buffer_frames is None else int(device_buffer_frames * self._ratio)
        self.underruns = 0

    def write(self, data: bytes) -> int:
        out = self._converter.process(data) if self._converter is not None else data
        if not out:
            return len(data) // SAMPLE_BYTES
        written = self._pcm.write(out)
        if written == -errno.EPIPE:
            # The card ran dry; pyalsaaudio re-prepared it but did not write this period.
            self.underruns += 1
            written = self._pcm.write(out)
        return len(data) // SAMPLE_BYTES if written >= 0 else written

    def avail(self) -> int:
        avail = self._pcm.avail()
        # Negative: an error code (-EPIPE once the card has run dry), passed on as is.
        return avail if avail < 0 else int(avail * self._ratio)

    def drop(self) -> None:
        self._pcm.drop()
        if self._converter is not None:
            self._converter.reset()

    def drop_card(self) -> None:
        """Stop the card only; safe from another thread while write() is blocked (it
        returns with EBADFD), unlike the converter reset."""
        self._pcm.drop()

    def close(self) -> None:
        try:
            # close() on a playback PCM drains, which can block for the whole buffer.
            self._pcm.drop()
        finally:
            self._pcm.close()


def open_capture(
    device: str,
    *,
    rate: int,
    period_ms: int,
    device_rate: int | None = None,
    device_channels: int | None = None,
    channel: str | int = "mix",
    periods: int = 4,
) -> tuple[CaptureDevice, OpenedFormat]:
    """Open ``device`` for capture, delivering mono at ``rate`` whatever the card runs at."""
    pcm, opened = _open_negotiated(
        "capture", device, rate, 1, period_ms, device_rate, device_channels, periods=periods, blocking=False
    )
    capture = AlsaCapture(pcm, opened.period_frames, opened.buffer_frames)
    if opened.rate == rate and opened.channels == 1:
        return capture, opened
    log.info("the microphone runs at %d Hz, %d channel(s): converting", opened.rate, opened.channels)
    from edgevoice.audio.convert import CaptureConverter

    converter = CaptureConverter(opened.rate, opened.channels, channel, target_rate=rate)
    return ConvertingCapture(capture, converter, opened.buffer_frames * rate // opened.rate), opened


def open_playback(
    device: str,
    *,
    rate: int,
    period_ms: int,
    periods: int = 2,
    device_rate: int | None = None,
    device_channels: int | None = None,
    wrap: Callable[[PlaybackDevice, OpenedFormat], PlaybackDevice] | None = None,
) -> tuple[ConvertingPlayback, OpenedFormat]:
    """Open ``device`` for playback of mono at ``rate`` whatever the card runs at.
    ``wrap`` puts something between the card and the converter (the simulator's clock)."""
    pcm, opened = _open_negotiated(
        "playback", device, rate, 1, period_ms, device_rate, device_channels, periods=periods
    )
    if wrap is not None:
        pcm = wrap(pcm, opened)
    converter = None
    if opened.rate != rate or opened.channels != 1:
        log.info("the speaker runs at %d Hz, %d channel(s): converting", opened.rate, opened.channels)
        from edgevoice.audio.convert import PlaybackConverter

        converter = PlaybackConverter(rate, device_rate=opened.rate, device_channels=opened.channels)
    return ConvertingPlayback(pcm, converter, opened.rate, rate, opened.buffer_frames), opened


def _open_negotiated(
    kind: str,
    device: str,
    rate: int,
    channels: int,
    period_ms: int,
    device_rate: int | None,
    device_channels: int | None,
    *,
    periods: int = 4,
    blocking: bool = True,
) -> tuple[alsaaudio.PCM, OpenedFormat]:
    want_rate = device_rate or rate
    want_channels = device_channels or channels
    pcm, opened = open_pcm(
        kind,
        device,
        rate=want_rate,
        channels=want_channels,
        period_frames=want_rate * period_ms // 1000,
        periods=periods,
        blocking=blocking,
    )
    if (opened.rate, opened.channels) == (want_rate, want_channels):
        return pcm, opened
    # The card chose its own format; the period was sized for ours: open it again with a
    # period of the same duration at the card's rate.
    pcm.close()
    return open_pcm(
        kind,
        device,
        rate=opened.rate,
        channels=opened.channels,
        period_frames=opened.rate * period_ms // 1000,
        periods=periods,
        blocking=blocking,
    )

"""The microphone read without blocking in libasound: a button edge cuts the read short.

A blocking ``read()`` waits for a whole period, so the release's last samples would wait
up to 20 ms. ``AlsaCapture`` waits in ``poll()`` on the PCM's descriptors and an eventfd;
a cut ends the wait and takes what the card holds.

A card that fills in real time cannot be had without hardware (libasound's ``null``
device never blocks), so the cut and the return to the card's period boundaries are shown
on a stand-in that answers as pyalsaaudio's non-blocking PCM does on a card whose wake-ups
come at its period boundaries: ``read()`` gives what is there up to a period, ``(0, b"")``
when nothing is; its poll descriptor is readable once a whole period is there. The real
PCM (the file plugin, in a subprocess) shows the reads are sample for sample.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from edgevoice.audio.alsa import AlsaCapture
from edgevoice.audio.capture import FrameSink, Microphone
from tests.support.alsa import simulated_alsa_env

PERIOD = 320
WAIT_S = 5.0


class BoundaryCard:
    """A capture card holding ``captured`` frames, of which ``taken`` were read; frame i
    is the sample ``i``. Its poll descriptor is readable while a whole period waits."""

    def __init__(self) -> None:
        self.captured = 0
        self.taken = 0
        self._lock = threading.Lock()
        self._readable, self._signal = os.pipe()
        self._signalled = False
        self.closed = False

    def capture(self, frames: int) -> None:
        with self._lock:
            self.captured += frames
            self._update()

    def read(self) -> tuple[int, bytes]:
        with self._lock:
            count = min(self.captured - self.taken, PERIOD)
            data = b"".join((i % 32768).to_bytes(2, "little") for i in range(self.taken, self.taken + count))
            self.taken += count
            self._update()
            return count, data

    def polldescriptors(self) -> list[tuple[int, int]]:
        return [(self._readable, select.POLLIN)]

    def polldescriptors_revents(self, descriptors: list[tuple[int, int]]) -> int:
        revents = 0
        for _fd, fired in descriptors:
            revents |= fired
        return revents

    def close(self) -> None:
        self.closed = True
        os.close(self._readable)
        os.close(self._signal)

    def _update(self) -> None:
        ready = self.captured - self.taken >= PERIOD
        if ready and not self._signalled:
            os.write(self._signal, b"x")
        elif not ready and self._signalled:
            os.read(self._readable, 1)
        self._signalled = ready


def samples(data: bytes) -> list[int]:
    return [int.from_bytes(data[i : i + 2], "little") for i in range(0, len(data), 2)]


def test_a_cut_ends_the_wait_with_what_the_card_holds_and_the_reads_come_back_to_its_boundaries() -> None:
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    with ThreadPoolExecutor(1) as reader:
        card.capture(100)
        first: Future[tuple[int, bytes]] = reader.submit(capture.read)
        # The first read starts the stream and takes what is there (a capture stream
        # starts with its first read); the next waits for a whole period.
        assert first.result(WAIT_S) == (100, bytes(samples_bytes(0, 100)))
        waiting = reader.submit(capture.read)
        card.capture(150)
        assert not waiting.done()
        capture.cut_short()
        length, data = waiting.result(WAIT_S)
        assert (length, samples(data)) == (150, list(range(100, 250)))
        # The card's next wake-up is at its boundary (frame 320), where 70 frames are
        # there: it waits for 320 after the cut, at frame 570.
        card.capture(390)  # to 640: two boundaries
        assert reader.submit(capture.read).result(WAIT_S)[0] == PERIOD  # 250..570
        # The rest comes without waiting, back on the card's boundary at 640.
        length, data = reader.submit(capture.read).result(WAIT_S)
        assert (length, samples(data)[0], samples(data)[-1]) == (70, 570, 639)
        later = reader.submit(capture.read)
        card.capture(PERIOD)
        length, data = later.result(WAIT_S)
        assert (length, samples(data)[0]) == (PERIOD, 640)
    capture.close()
    assert card.closed


def samples_bytes(start: int, end: int) -> bytes:
    return b"".join(i.to_bytes(2, "little") for i in range(start, end))


def test_a_cut_while_whole_periods_wait_reads_them_all_then_the_part() -> None:
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    card.capture(PERIOD)
    assert capture.read()[0] == PERIOD  # the first read starts the stream
    card.capture(2 * PERIOD + 40)
    capture.cut_short()
    lengths = [capture.read()[0] for _ in range(3)]
    assert lengths == [PERIOD, PERIOD, 40]
    assert card.taken == card.captured
    capture.close()


def test_an_edge_cuts_the_microphones_read_and_the_samples_before_it_reach_the_loop() -> None:
    """Without the cut the card would hold the period back (it never completes here): the
    samples up to the release reach the sink only because the edge cut the read."""
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    delivered: list[tuple[int, bytes, float]] = []
    first_period, the_rest = threading.Event(), threading.Event()

    def sink(periods: list[tuple[int, bytes, float]]) -> None:
        delivered.extend(periods)
        frames = sum(len(pcm) for _position, pcm, _t in delivered) // 2
        (the_rest if frames >= PERIOD + 200 else first_period).set()

    microphone = Microphone(lambda: capture, rate=16000, period_frames=PERIOD, on_frames=sink, paced=False)
    microphone.start()
    try:
        card.capture(PERIOD)
        assert first_period.wait(WAIT_S)
        card.capture(200)  # the release comes 200 frames into the next period
        positions: list[int] = []
        microphone.stamp_and_post(positions.append, exact=lambda: PERIOD + 200)
        assert the_rest.wait(WAIT_S), delivered
    finally:
        microphone.stop()
    assert positions == [PERIOD + 200]
    assert [(position, len(pcm) // 2) for position, pcm, _t in delivered] == [(0, PERIOD), (PERIOD, 200)]


def streaming_microphone(
    capture: AlsaCapture,
    on_frames: FrameSink,
    heartbeat: Callable[[], None] | None = None,
) -> Microphone:
    """A started microphone reading two periods at once, as while an utterance streams;
    its heartbeat beats once a read's samples are taken in."""
    microphone = Microphone(
        lambda: capture,
        rate=16000,
        period_frames=PERIOD,
        on_frames=on_frames,
        heartbeat=heartbeat,
        paced=False,
    )
    microphone.read_periods = 2
    microphone.start()
    return microphone


def test_while_streaming_two_periods_make_one_read_and_a_cut_ends_it_with_what_is_there() -> None:
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    delivered: list[tuple[int, bytes, float]] = []
    handed_over: list[int] = []
    frames_in = threading.Condition()

    def sink(periods: list[tuple[int, bytes, float]]) -> None:
        with frames_in:
            handed_over.append(len(periods))
            delivered.extend(periods)
            frames_in.notify_all()

    def wait_for_frames(count: int) -> None:
        with frames_in:
            assert frames_in.wait_for(
                lambda: sum(len(pcm) for _p, pcm, _t in delivered) // 2 >= count, WAIT_S
            ), delivered

    microphone = streaming_microphone(capture, sink)
    try:
        for _ in range(4):
            card.capture(PERIOD)
        wait_for_frames(4 * PERIOD)
        card.capture(PERIOD + 200)  # the release comes 200 frames into the second period
        microphone.stamp_and_post(lambda _position: None, exact=lambda: 5 * PERIOD + 200)
        wait_for_frames(5 * PERIOD + 200)
    finally:
        microphone.stop()
    # One hand-over and one piece per two periods. The edge ends the read in progress at
    # once: its whole period goes, then the part the cut took.
    assert [(position, len(pcm) // 2) for position, pcm, _t in delivered] == [
        (0, 2 * PERIOD),
        (2 * PERIOD, 2 * PERIOD),
        (4 * PERIOD, PERIOD),
        (5 * PERIOD, 200),
    ]
    assert handed_over == [1, 1, 1, 1]
    assert b"".join(pcm for _p, pcm, _t in delivered) == samples_bytes(0, 5 * PERIOD + 200)



def test_an_edge_hands_over_the_periods_of_an_unfinished_read_before_it_is_posted() -> None:
    """The release comes on the boundary between the two periods of a read: the card holds
    nothing of the second yet, so the cut read takes nothing; the first period must still
    reach the loop before the edge does, not a period later."""
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    delivered: list[tuple[int, bytes, float]] = []
    # The thread beats its heartbeat once a read's samples are taken in.
    first_read = threading.Event()
    microphone = streaming_microphone(capture, delivered.extend, heartbeat=first_read.set)
    try:
        card.capture(PERIOD)
        assert first_read.wait(WAIT_S)
        seen_at_the_edge: list[list[tuple[int, int]]] = []
        microphone.stamp_and_post(
            lambda _position: seen_at_the_edge.append([(p, len(pcm) // 2) for p, pcm, _t in delivered]),
            exact=lambda: PERIOD,
        )
    finally:
        microphone.stop()
    assert seen_at_the_edge == [[(0, PERIOD)]]


def test_the_read_an_edge_cuts_goes_over_at_once_even_when_the_card_already_holds_the_whole_period() -> None:
    """A slow edge: by the time the cut reaches the card it holds the whole period, so the
    cut read takes a whole period. That read still ends its piece (no wait for a second)."""
    card = BoundaryCard()
    capture = AlsaCapture(card, PERIOD)  # type: ignore[arg-type]
    delivered: list[tuple[int, bytes, float]] = []
    frames_in = threading.Condition()

    def sink(periods: list[tuple[int, bytes, float]]) -> None:
        with frames_in:
            delivered.extend(periods)
            frames_in.notify_all()

    first_read = threading.Event()
    microphone = streaming_microphone(capture, sink, heartbeat=first_read.set)
    try:
        card.capture(PERIOD)
        assert first_read.wait(WAIT_S)
        # The whole next period is captured while the edge is being stamped.
        microphone.stamp_and_post(lambda _position: card.capture(PERIOD), exact=lambda: PERIOD + 300)
        with frames_in:
            arrived = frames_in.wait_for(
                lambda: sum(len(pcm) for _p, pcm, _t in delivered) >= 2 * PERIOD, WAIT_S
            )
    finally:
        microphone.stop()
    assert arrived, delivered
    assert [(position, len(pcm) // 2) for position, pcm, _t in delivered] == [(0, PERIOD), (PERIOD, PERIOD)]


SAMPLE_FOR_SAMPLE = """
import sys
from edgevoice.audio.alsa import AlsaCapture, open_pcm

pcm, opened = open_pcm("capture", "edgevoice_mic", rate=16000, channels=1, period_frames=320, blocking=False)
capture = AlsaCapture(pcm, opened.period_frames)
out = bytearray()
for n in range(10):
    if n == 4:
        capture.cut_short()  # a card that already holds more gives a whole period
    length, data = capture.read()
    assert length == 320, length
    out += data
capture.close()
sys.stdout.buffer.write(bytes(out))
"""


def test_the_real_pcm_read_without_blocking_gives_the_microphone_sample_for_sample(tmp_path: Path) -> None:
    mic = samples_bytes(0, 3200)
    env = simulated_alsa_env(tmp_path, mic)
    result = subprocess.run(
        [sys.executable, "-c", SAMPLE_FOR_SAMPLE], env=env, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == mic

"""The simulated card answers a cut as a real one read without blocking does: with the
samples due by its clock, and the rest of its period in the next read, none lost."""

from __future__ import annotations

from edgevoice_testbed.sim.devices import ButtonSchedule, SimulatedCapture

RATE = 16000
PERIOD = 320


class NumberedPcm:
    """The file plugin's PCM as the simulator reads it: whole periods, frame i = sample i."""

    def __init__(self) -> None:
        self.next = 0

    def read(self) -> tuple[int, bytes]:
        data = b"".join(i.to_bytes(2, "little") for i in range(self.next, self.next + PERIOD))
        self.next += PERIOD
        return PERIOD, data


class Clock:
    """Frame 0 at the first reading (the card starts with its first read), then where the
    test puts it."""

    def __init__(self) -> None:
        self.started = False
        self.frame = 0

    def __call__(self) -> float:
        if not self.started:
            self.started = True
            return 100.0
        return 100.0 + self.frame / RATE


def test_a_cut_gives_the_samples_due_by_the_clock_and_the_next_reads_go_on_from_there() -> None:
    clock = Clock()
    capture = SimulatedCapture(
        NumberedPcm(),
        rate=RATE,
        period_frames=PERIOD,
        schedule=ButtonSchedule([], RATE),
        drive_button=lambda _pressed: None,
        realtime=True,
        ready_for_press=lambda _timeout: True,
        clock=clock,
    )
    clock.frame = PERIOD + 100
    reads = [capture.read()]  # a whole period was due: no cut needed
    capture.cut_short()
    reads.append(capture.read())  # the 100 frames due, not the period
    clock.frame = 2 * PERIOD + 100
    reads.append(capture.read())  # the rest of that period and 100 of the next
    assert [length for length, _data in reads] == [PERIOD, 100, PERIOD]
    pcm = b"".join(data for _length, data in reads)
    assert pcm == b"".join(i.to_bytes(2, "little") for i in range(2 * PERIOD + 100))
    assert capture.position == 2 * PERIOD + 100

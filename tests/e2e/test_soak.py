"""Issue 4: a long conversation under a storm of random faults loses nothing and leaks nothing."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from pathlib import Path

import numpy as np

from edgevoice.emulator import Emulator
from edgevoice.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav, scenario

FAULTS = ["drop", "close:1011", "close:1000", "close:1001", "goaway:0.3", "refuse:0.2", "stall"]
WANTED = 200


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


EMULATOR = str(Path(__file__).resolve().parents[2] / "edgevoice" / "emulator")


def daemon_side_mb() -> float:
    """Memory held outside the emulator (which records every utterance and reply it saw,
    and shares this process): the daemon's side of the run."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, EMULATOR + "/*", all_frames=True)]
    )
    return sum(stat.size for stat in snapshot.statistics("filename")) / 2**20


async def test_200_random_faults_lose_no_utterance_and_leak_nothing(tmp_path: Path) -> None:
    utterances = 200
    mic = noise_wav(tmp_path / "mic.wav", utterances * 0.6 + 1.0, seed=3)
    presses = [(0.2 + i * 0.6, 0.2 + i * 0.6 + 0.4) for i in range(utterances)]
    emulator = Emulator(
        scenario=scenario(default={"input_transcript": "question", "reply": "Okay, noted."}),
        record_audio_frames=False,
    )
    await emulator.start()
    rng = random.Random(2026)
    fds_before = open_fds()
    tasks_before = len(asyncio.all_tasks())
    memory_samples: list[float] = []
    fired: list[str] = []

    def hits() -> int:
        # Faults that struck an open connection (a refusal with none open is not counted).
        return sum(1 for record in emulator.fired_faults if record.connection_id is not None)

    async def storm() -> None:
        # Faults land at random moments of open connections: mid-utterance, mid-answer,
        # idle, right after a resume.
        while hits() < WANTED:
            await asyncio.sleep(rng.uniform(0.005, 0.03))
            latest = emulator.connections[-1] if emulator.connections else None
            if latest is None or not latest.accepted or latest.closed_t is not None:
                continue
            kind = rng.choice(FAULTS)
            if kind == "stall" and rng.random() < 0.7:
                kind = "drop"  # a stall costs a reply timeout: keep them rare
            emulator.inject_fault(kind)
            fired.append(kind)
            if len(fired) % 40 == 0:
                memory_samples.append(daemon_side_mb())

    tracemalloc.start(40)
    storm_task = asyncio.create_task(storm())
    try:
        result = await simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=presses,
                out=tmp_path / "out.wav",
                earcons=False,
                emulator=emulator,
                timeout_s=240,
                overrides={
                    "audio": {"preroll_ms": 0},
                    "live": {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1, "reply_timeout_s": 1.0},
                },
            )
        )
        await asyncio.wait_for(storm_task, 120)
    finally:
        storm_task.cancel()
        tracemalloc.stop()
        await emulator.aclose()

    assert hits() >= WANTED
    assert not emulator.errors
    # No lost utterance: every one reached the server whole (possibly several times).
    complete = {u.audio for u in emulator.utterances if u.complete}
    for start, end in presses:
        assert mic[round(start * RATE) : round(end * RATE)].tobytes() in complete
    # Every utterance got its answer and nothing is left in flight.
    daemon = result.daemon
    assert daemon.conversation.pending_utterances == 0 and daemon.conversation.idle
    assert len([line for line in result.transcript if line.startswith("assistant:")]) >= utterances
    # No leaked tasks or file descriptors once the daemon and the emulator are gone.
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() <= fds_before
    # Memory flat: the daemon's side holds no more after 200 faults than after 80.
    assert len(memory_samples) >= 5
    assert max(memory_samples[-2:]) - min(memory_samples[1:3]) < 2.0, memory_samples
    np.testing.assert_array_less(0, len(fired))

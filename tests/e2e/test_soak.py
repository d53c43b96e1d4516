"""A long conversation under a storm of random faults loses nothing and leaks nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import tracemalloc
from pathlib import Path

from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import RATE, noise_wav
from tests.support.emulator_process import EmulatorProcess

FAULTS = ["drop", "close:1011", "close:1000", "close:1001", "goaway:0.3", "refuse:0.2", "stall"]
WANTED = 200


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def python_heap_mb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / 2**20


async def test_200_random_faults_lose_no_utterance_and_leak_nothing(tmp_path: Path) -> None:
    utterances = 300
    mic = noise_wav(tmp_path / "mic.wav", utterances * 0.6 + 1.0, seed=3)
    presses = [(0.2 + i * 0.6, 0.2 + i * 0.6 + 0.4) for i in range(utterances)]
    # The emulator records everything it hears: it lives in its own process, so this
    # process's memory is the daemon's.
    emulator = await asyncio.to_thread(
        EmulatorProcess,
        {"voice": "tone", "pace": "fast", "default": {"input_transcript": "q", "reply": "Okay, noted."}},
    )
    rng = random.Random(2026)
    fds_before = open_fds()
    tasks_before = len(asyncio.all_tasks())
    heap_samples: list[float] = []
    hits = 0

    async def storm() -> None:
        # Faults land at random moments of open connections: mid-utterance, mid-answer,
        # idle, right after a resume.
        nonlocal hits
        injected = 0
        while hits < WANTED:
            await asyncio.sleep(rng.uniform(0.005, 0.03))
            kind = rng.choice(FAULTS)
            if kind == "stall" and rng.random() < 0.7:
                kind = "drop"  # a stall costs a reply timeout: keep them rare
            if not await asyncio.to_thread(emulator.call, "inject_if_open", kind):
                continue
            injected += 1
            if injected % 20 == 0:
                hits = await asyncio.to_thread(emulator.call, "hits")
                heap_samples.append(python_heap_mb())

    # pytest keeps every log record it captures; hundreds of "connection lost" lines would
    # look like a leak. The daemon's log stays quiet here (it is not what is measured).
    daemon_logger = logging.getLogger("edgevoice")
    quiet = logging.NullHandler()
    daemon_logger.addHandler(quiet)
    daemon_logger.propagate = False
    tracemalloc.start()
    storm_task = asyncio.create_task(storm())
    try:
        result = await simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=presses,
                out=tmp_path / "out.wav",
                earcons=False,
                emulator=emulator,
                timeout_s=300,
                overrides={
                    "audio": {"preroll_ms": 0},
                    "live": {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1, "reply_timeout_s": 1.0},
                },
            )
        )
        assert storm_task.done(), f"the conversation ended after only {hits} faults"
        await storm_task
        report = await asyncio.to_thread(emulator.call, "report")
    finally:
        storm_task.cancel()
        tracemalloc.stop()
        daemon_logger.propagate = True
        daemon_logger.removeHandler(quiet)
        await asyncio.to_thread(emulator.close)

    assert report["hits"] >= WANTED
    assert not report["errors"]
    # No lost utterance: every one reached the server whole (possibly several times).
    for start, end in presses:
        assert mic[round(start * RATE) : round(end * RATE)].tobytes() in report["complete_audio"]
    # Every utterance got its answer and nothing is left in flight.
    daemon = result.daemon
    assert daemon.conversation.pending_utterances == 0 and daemon.conversation.idle
    assert len([line for line in result.transcript if line.startswith("assistant:")]) >= utterances
    # No leaked tasks or file descriptors once the daemon is gone.
    assert len(asyncio.all_tasks()) == tasks_before
    assert open_fds() <= fds_before
    # Memory flat: what Python holds (the daemon and this test; the emulator is elsewhere)
    # does not grow from the first quarter of the storm to its end.
    assert len(heap_samples) >= 8
    quarter = len(heap_samples) // 4
    assert max(heap_samples[-2:]) - min(heap_samples[quarter : quarter + 2]) < 1.0, heap_samples

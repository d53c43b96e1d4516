"""End-to-end runs: the daemon on simulated hardware against the emulator, in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgevoice_testbed.emulator import Emulator, Scenario
from edgevoice_testbed.sim.wav import write_wav

RATE = 16000


def noise_wav(path: Path, seconds: float, seed: int = 1) -> np.ndarray:
    """A microphone recording in which every sample differs from its neighbours."""
    samples = np.random.default_rng(seed).integers(-12000, 12000, int(seconds * RATE)).astype("<i2")
    write_wav(path, samples.tobytes(), RATE)
    return samples


def scenario(**fields: object) -> Scenario:
    base: dict[str, object] = {"voice": "tone", "pace": "fast", "chunk_ms": 200}
    base.update(fields)
    return Scenario.model_validate(base)


@pytest.fixture
async def emulator_factory():
    started: list[Emulator] = []

    async def start(**fields: object) -> Emulator:
        emulator = Emulator(scenario=scenario(**fields))
        await emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        assert not emulator.errors, emulator.errors
        await emulator.aclose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    soak = sys.modules.get("tests.e2e.test_soak")
    for figures in getattr(soak, "SOAK_FIGURES", []):
        terminalreporter.section("soak figures")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name:<28} {value}")

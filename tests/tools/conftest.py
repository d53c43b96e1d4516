"""Fixtures for the smart-home tools (helpers in home_fakes.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.tools.home_fakes import MOSQUITTO, FakeHomeAssistant, Mosquitto, Outcomes


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
def new_outcomes() -> type[Outcomes]:
    """For tests that need several independent collectors."""
    return Outcomes


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto broker on a free loopback port, stopped after the test."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest_asyncio.fixture
async def home_assistant() -> AsyncIterator[FakeHomeAssistant]:
    server = FakeHomeAssistant()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()

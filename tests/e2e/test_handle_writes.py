"""The session handle reaches the disk without holding the event loop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from edgevoice.live.handle_store import HandleStore
from tests.e2e.conftest import noise_wav
from tests.e2e.test_resumption import TWO_TURNS, run


async def test_the_session_handle_is_written_on_the_writer_thread(
    tmp_path: Path, emulator_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    writers: list[str] = []
    real_save = HandleStore.save

    def save_noting_the_thread(store: HandleStore, handle: str | None) -> None:
        writers.append(threading.current_thread().name)
        real_save(store, handle)

    monkeypatch.setattr(HandleStore, "save", save_noting_the_thread)
    state = tmp_path / "state"
    await run(tmp_path, emulator, [(0.3, 1.2)], state_dir=state)
    # An atomic write is two fsyncs (8-16 ms on the bench machine): never on the loop.
    assert writers
    assert all(name.startswith("edgevoice-handle") for name in writers), writers
    # Shutdown waited for the writes: the last handle is on disk.
    assert json.loads((state / "session.json").read_text())["handle"]

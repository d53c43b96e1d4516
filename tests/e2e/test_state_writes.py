"""The session handle and the ledger reach the disk without holding the event loop, and a
function call still runs only once the ledger that remembers it is on disk."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from edgevoice.core.events import SavedLedger
from edgevoice.live.handle_store import HandleStore
from edgevoice.service.ledger_store import LedgerStore
from edgevoice.tools.toolbox import ToolBox
from tests.e2e.conftest import noise_wav
from tests.e2e.test_resumption import LIGHT_ON, TWO_TURNS, run

DISK_WAIT_S = 20.0


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
    assert all(name.startswith("edgevoice-state") for name in writers), writers
    # Shutdown waited for the writes: the last handle is on disk.
    assert json.loads((state / "session.json").read_text())["handle"]


class SlowDisk:
    """Ledger writes that finish only when the test says so (a slow SD card). A write on
    the event loop's thread is not held (it would hold the server too) but noted."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.go = threading.Event()
        self.held = threading.Event()
        self.on_the_loop = 0
        self.events: list[str] = []
        loop_thread = threading.current_thread()
        real_save = LedgerStore.save

        def save(store: LedgerStore, ledger: SavedLedger) -> None:
            if threading.current_thread() is loop_thread:
                self.on_the_loop += 1
            elif ledger.utterances:
                self.held.set()
                self.go.wait(DISK_WAIT_S)
            real_save(store, ledger)
            self.events.append("ledger on disk")

        monkeypatch.setattr(LedgerStore, "save", save)


async def test_the_release_reaches_the_server_while_the_ledger_is_still_being_written(
    tmp_path: Path, emulator_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=TWO_TURNS)
    disk = SlowDisk(monkeypatch)
    conversation = asyncio.create_task(run(tmp_path, emulator, [(0.3, 1.2)], state_dir=tmp_path / "state"))
    try:
        # The utterance, activityEnd included, reaches the server while no ledger write
        # that remembers it can finish: the disk lets none through until `go`. The writer
        # thread may take the write up only after the server has it (a busy machine).
        await emulator.wait_for(lambda e: any(u.complete for u in e.utterances), timeout=DISK_WAIT_S)
        assert await asyncio.to_thread(disk.held.wait, DISK_WAIT_S), "no ledger write reached the disk"
    finally:
        disk.go.set()
    await conversation
    assert disk.on_the_loop == 0
    assert not (tmp_path / "state" / "ledger.json").exists()  # answered, and the writes kept order


async def test_a_function_call_runs_only_once_the_ledger_remembering_it_is_on_disk(
    tmp_path: Path, emulator_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    noise_wav(tmp_path / "mic.wav", 3.0)
    emulator = await emulator_factory(turns=LIGHT_ON)
    disk = SlowDisk(monkeypatch)
    real_start = ToolBox.start

    def start(toolbox: ToolBox, call: object, on_done: object) -> None:
        disk.events.append("call started")
        real_start(toolbox, call, on_done)  # type: ignore[arg-type]

    monkeypatch.setattr(ToolBox, "start", start)
    conversation = asyncio.create_task(run(tmp_path, emulator, [(0.3, 1.2)]))
    try:
        await emulator.wait_for(lambda e: bool(e.tool_calls), timeout=DISK_WAIT_S)
        assert "call started" not in disk.events
    finally:
        disk.go.set()
    await conversation
    # Every write the call waited for landed before it started, and it ran once.
    assert disk.events.count("call started") == 1
    assert disk.events.index("call started") > disk.events.index("ledger on disk")
    assert [r.known for r in emulator.tool_responses] == [True]

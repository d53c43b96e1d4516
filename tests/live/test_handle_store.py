import json
from pathlib import Path

from edgevoice.live.handle_store import HANDLE_LIFETIME_S, HandleStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_handle_survives_a_restart_within_its_lifetime(tmp_path: Path) -> None:
    clock = Clock()
    HandleStore(tmp_path, clock).save("handle-1")
    clock.now += 3600
    assert HandleStore(tmp_path, clock).load() == "handle-1"
    assert (tmp_path / "session.json").stat().st_mode & 0o077 == 0


def test_lifetime_counts_from_when_the_connection_was_last_alive(tmp_path: Path) -> None:
    clock = Clock()
    store = HandleStore(tmp_path, clock)
    store.save("handle-1")
    clock.now += 5000
    store.touch()  # the daemon stopped (connection ended) here
    clock.now += 5000
    assert store.load() == "handle-1"
    clock.now += HANDLE_LIFETIME_S
    assert store.load() is None
    assert not (tmp_path / "session.json").exists()


def test_forget_and_unreadable_files(tmp_path: Path) -> None:
    store = HandleStore(tmp_path, Clock())
    store.save("h")
    store.save(None)
    assert store.load() is None
    (tmp_path / "session.json").write_text("{not json")
    assert store.load() is None
    (tmp_path / "session.json").write_text(json.dumps({"handle": 5, "saved_at": 0}))
    assert store.load() is None

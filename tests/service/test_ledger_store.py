"""The utterance ledger on disk: atomic, bounded in age, never trusted blindly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevoice.core.events import SavedCall, SavedLedger, SavedUtterance
from edgevoice.service.ledger_store import MAX_AGE_S, LedgerStore

LEDGER = SavedLedger((SavedUtterance(1, b"\x01\x02" * 800), SavedUtterance(2, b"\x03\x04")), ("User: hi",))


def test_a_saved_ledger_comes_back_as_it_was(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path)
    store.save(LEDGER)
    assert LedgerStore(tmp_path).load() == LEDGER
    assert store.path.stat().st_mode & 0o777 == 0o600


def test_an_empty_ledger_removes_the_file(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path)
    store.save(LEDGER)
    store.save(SavedLedger())
    assert not store.path.exists() and store.load() is None


def test_a_ledger_too_old_to_matter_is_dropped(tmp_path: Path) -> None:
    now = [1000.0]
    store = LedgerStore(tmp_path, clock=lambda: now[0])
    store.save(LEDGER)
    now[0] += MAX_AGE_S + 1
    assert store.load() is None and not store.path.exists()


BAD_AUDIO = '{"saved_at": 1, "utterances": [{"number": 1, "audio": "!!"}], "context": []}'


@pytest.mark.parametrize("content", ["", "{", BAD_AUDIO, "[]"])
def test_an_unreadable_ledger_is_ignored_with_a_warning(tmp_path: Path, content: str, caplog) -> None:
    (tmp_path / "ledger.json").write_text(content)
    assert LedgerStore(tmp_path).load() is None
    assert "ignoring unreadable ledger file" in caplog.text


def test_a_failed_write_leaves_the_old_ledger_and_no_temporary_file(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path)
    store.save(LEDGER)
    (tmp_path / "ledger.json.tmp").mkdir()  # the temporary file cannot be created
    with pytest.raises(OSError):
        store.save(SavedLedger((SavedUtterance(3, b"\x00\x00"),)))
    assert store.load() == LEDGER


def test_the_functions_a_question_already_ran_are_kept_with_it(tmp_path: Path) -> None:
    ledger = SavedLedger(
        (
            SavedUtterance(
                1,
                b"\x01\x02",
                (
                    SavedCall("set_timer", '{"name":"pasta","seconds":600}', {"ok": True}, "WHEN_IDLE"),
                    SavedCall("set_light", '{"on":true}'),  # still running at the stop
                ),
            ),
        ),
    )
    LedgerStore(tmp_path).save(ledger)
    assert LedgerStore(tmp_path).load() == ledger

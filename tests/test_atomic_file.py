"""State files hold the old content or the new; a failed write leaves no temporary file."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

from edgevoice.atomic_file import write_atomically

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child whose files may not grow past 4 KiB: the kernel refuses the write
# (EFBIG), as a full disk refuses it (ENOSPC), in the middle of the temporary file.
SAVE_A_BIG_HANDLE = """
import sys
from pathlib import Path
from edgevoice.live.handle_store import HandleStore
store = HandleStore(Path(sys.argv[1]))
try:
    store.save("h" * 100_000)
except OSError as exc:
    print(exc.errno)
"""


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "session.json").write_text(json.dumps({"handle": "old", "saved_at": 1.0}))
    result = subprocess.run(
        [sys.executable, "-c", SAVE_A_BIG_HANDLE, str(tmp_path)],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stdout.strip() == "27", result.stdout + result.stderr  # EFBIG: the write failed
    assert json.loads((tmp_path / "session.json").read_text())["handle"] == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.json"]


def test_a_write_replaces_the_file_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "state.json"
    write_atomically(target, b"one")
    write_atomically(target, b"two", mode=0o640)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]

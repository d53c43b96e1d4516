"""Writing a file so that it holds the old content or the new, never half, never neither.

The state files (the session handle, the simulated home, the broker's configuration) are
all written the same way: a temporary file in the same directory, fsync, rename over the
target, fsync of the directory. If any step fails (a full disk, a file-size limit, a
power cut) the temporary file is removed: it never outlives the failed write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``. Raises :class:`OSError`; then ``path`` is as before
    and no temporary file is left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    # The rename itself must reach the disk too.
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


__all__ = ["write_atomically"]

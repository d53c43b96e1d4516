"""One daemon per state directory.

Two daemons on one state directory would take the same resumption handle, fight over it
(the server refuses the second: "session still open") and overwrite each other's files.
The first daemon holds an exclusive ``flock`` on ``<state_dir>/daemon.lock`` for its whole
life and writes its pid there; a second one finds the lock taken and refuses to start,
naming the holder. The kernel drops the lock when the holder exits, however it exits, so a
stale lock file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from edgevoice.errors import UserError

LOCK_FILE_NAME = "daemon.lock"


class StateDirectoryInUse(UserError):
    """Another daemon holds the state directory."""

    def __init__(self, state_dir: Path, holder_pid: int | None) -> None:
        holder = f"pid {holder_pid}" if holder_pid else "a process whose pid is not recorded"
        super().__init__(
            f"another edgevoice daemon ({holder}) is already running on the state directory "
            f"{state_dir}; stop it first, or give this one its own [paths] state_dir"
        )
        self.holder_pid = holder_pid


class InstanceLock:
    """Holds ``<state_dir>/daemon.lock`` from :meth:`acquire` until :meth:`release`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"InstanceLock({str(self.path)!r}, held={self._fd is not None})"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateDirectoryInUse` (a :class:`UserError`)."""
        if self._fd is not None:
            return
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            raise UserError(f"the state directory {self.state_dir} is a file, not a directory") from None
        except OSError as exc:
            raise UserError(f"cannot use the state directory {self.state_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StateDirectoryInUse(self.state_dir, holder) from None
            raise UserError(f"cannot lock {self.path}: {exc.strerror}") from None
        # Ours now: record who holds it, for the next one's message.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # The pid goes first, so a reader never names a process that let go.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


__all__ = ["LOCK_FILE_NAME", "InstanceLock", "StateDirectoryInUse"]

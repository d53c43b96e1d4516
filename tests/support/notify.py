"""A real NOTIFY_SOCKET for tests: the receiving end of sd_notify, as systemd has it.

``NotifyListener`` binds an ``AF_UNIX``/``SOCK_DGRAM`` socket with ``SO_PASSCRED`` (as
systemd does, so each message carries the sender's pid) and parses each datagram into
its ``KEY=VALUE`` fields. Use the ``notify_socket`` fixture for in-process code (it sets
``NOTIFY_SOCKET`` in ``os.environ``) or ``NotifyListener.environ()`` for a subprocess.

    def test_ready(notify_socket):
        run_daemon_until_ready()
        message = notify_socket.wait_for("READY", "1")
        assert message.pid == os.getpid()
"""

from __future__ import annotations

import select
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_CREDENTIALS = struct.Struct("iII")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class NotifyMessage:
    raw: str
    fields: dict[str, str]
    # Sender's pid from SCM_CREDENTIALS (what systemd checks for NotifyAccess=main).
    pid: int | None

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)


class NotifyListener:
    """Receives sd_notify datagrams. Every message received is kept in ``history``."""

    def __init__(self) -> None:
        # A short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path is long.
        self._directory = Path(tempfile.mkdtemp(prefix="ev-notify-"))
        self.path = str(self._directory / "notify")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._socket.bind(self.path)
        self.history: list[NotifyMessage] = []

    def environ(self) -> dict[str, str]:
        """The variable to hand a subprocess."""
        return {"NOTIFY_SOCKET": self.path}

    def receive(self, timeout: float = 5.0) -> NotifyMessage:
        """The next datagram; TimeoutError if none arrives in time."""
        readable, _, _ = select.select([self._socket], [], [], timeout)
        if not readable:
            raise TimeoutError(f"no sd_notify message within {timeout} s")
        return self._read_one()

    def drain(self) -> list[NotifyMessage]:
        """Every datagram already queued, without waiting."""
        messages = []
        while select.select([self._socket], [], [], 0)[0]:
            messages.append(self._read_one())
        return messages

    def wait_for(self, key: str, value: str | None = None, timeout: float = 5.0) -> NotifyMessage:
        """Skip messages until one has ``key`` (equal to ``value`` when given)."""

        def matches(message: NotifyMessage) -> bool:
            return key in message.fields and (value is None or message.fields[key] == value)

        return self.wait_until(matches, timeout, description=f"{key}={value or '*'}")

    def wait_until(
        self,
        predicate: Callable[[NotifyMessage], bool],
        timeout: float = 5.0,
        description: str = "a matching message",
    ) -> NotifyMessage:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [m.raw for m in self.history[-10:]]
                raise TimeoutError(
                    f"no sd_notify {description} within {timeout} s; last seen: {seen}"
                )
            message = self.receive(remaining)
            if predicate(message):
                return message

    def close(self) -> None:
        self._socket.close()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _read_one(self) -> NotifyMessage:
        data, ancillary, _flags, _address = self._socket.recvmsg(
            65536, socket.CMSG_SPACE(_CREDENTIALS.size)
        )
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = _CREDENTIALS.unpack(payload[: _CREDENTIALS.size])[0]
        raw = data.decode("utf-8", errors="replace")
        fields = {}
        for line in raw.split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                fields[key] = value
        message = NotifyMessage(raw=raw, fields=fields, pid=pid)
        self.history.append(message)
        return message


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifyListener]:
    """A listening NOTIFY_SOCKET, exported in ``os.environ`` for the test's duration."""
    listener = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    try:
        yield listener
    finally:
        listener.close()


__all__ = ["NotifyListener", "NotifyMessage", "notify_socket"]

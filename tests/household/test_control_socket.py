"""The control socket: owner-only, one JSON line per request, bad input answered."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

import pytest

from edgevoice.errors import UserError
from edgevoice.service.control import ControlServer, control_socket_path, request, served_socket_path


def test_where_the_socket_lives() -> None:
    runtime = {"RUNTIME_DIRECTORY": "/run/edgevoice"}
    assert served_socket_path(None, runtime) == Path("/run/edgevoice/control.sock")
    assert served_socket_path(None, {}) is None  # a daemon run by hand serves none
    assert control_socket_path(None, {}) == Path("/run/edgevoice/control.sock")
    assert control_socket_path(Path("/tmp/x.sock"), {}) == Path("/tmp/x.sock")


async def test_requests_bad_lines_and_permissions(tmp_path: Path) -> None:
    seen: list[dict] = []

    def handle(message: dict) -> dict:
        seen.append(message)
        if message["command"] == "boom":
            raise RuntimeError("a bug")
        return {"ok": True, "echo": message["command"]}

    path = tmp_path / "run" / "control.sock"
    path.parent.mkdir()
    path.parent.joinpath("control.sock").symlink_to("/nonexistent")  # not a socket: refused
    server = ControlServer(path, handle)
    with pytest.raises(UserError, match="not a socket"):
        await server.start()
    path.unlink()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # a socket left by a daemon that died is replaced
    stale.close()
    await server.start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        reader, writer = await asyncio.open_unix_connection(str(path))
        answers = []
        for line in (b"not json\n", b"[1]\n", b'{"command": "boom"}\n', b'{"command": "status"}\n'):
            writer.write(line)
            answers.append(await reader.readline())
        writer.close()
        assert [a.decode().strip() for a in answers] == [
            '{"ok": false, "error": "not a JSON object"}',
            '{"ok": false, "error": "expected {\\"command\\": ...}"}',
            '{"ok": false, "error": "internal error"}',
            '{"ok": true, "echo": "status"}',
        ]
        answer = await asyncio.to_thread(request, path, {"command": "announce", "text": "hi"})
        assert answer == {"ok": True, "echo": "announce"}
    finally:
        await server.close()
    assert not path.exists()
    with pytest.raises(UserError, match="the daemon is not running"):
        request(path, {"command": "status"})

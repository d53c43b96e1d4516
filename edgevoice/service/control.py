"""The local control socket and its client, ``edgevoice announce``.

A Unix stream socket in the runtime directory, readable and writable by the daemon's user
only (mode 0600): one JSON object per line in, one JSON object per line out::

    {"command": "announce", "text": "The washing machine is done"}   -> {"ok": true}
    {"command": "mute"} / {"command": "unmute"}                       -> {"ok": true}
    {"command": "volume", "level": 4}                                 -> {"ok": true}
    {"command": "status"}                  -> {"ok": true, "state": "idle", "volume": 4, ...}

Anything else gets ``{"ok": false, "error": "..."}``; the connection stays usable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgevoice.errors import UserError

log = logging.getLogger("edgevoice")

SOCKET_NAME = "control.sock"
DEFAULT_RUNTIME_DIR = Path("/run/edgevoice")
MAX_REQUEST_BYTES = 4096
CLIENT_TIMEOUT_S = 5.0

Handler = Callable[[dict[str, Any]], dict[str, Any]]


def control_socket_path(configured: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where a client finds the socket: the configured path, else
    ``$RUNTIME_DIRECTORY/control.sock``, else /run/edgevoice/control.sock (the unit's
    RuntimeDirectory=edgevoice)."""
    served = served_socket_path(configured, environ)
    return served if served is not None else DEFAULT_RUNTIME_DIR / SOCKET_NAME


def served_socket_path(configured: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Where the daemon serves it: the configured path, else in systemd's runtime
    directory; None outside systemd with nothing configured (a daemon run by hand, a test,
    must not take over the system's socket)."""
    if configured is not None:
        return Path(configured)
    environ = os.environ if environ is None else environ
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / SOCKET_NAME if runtime else None


class ControlServer:
    """Serves the control socket on the event loop; ``handle`` answers each request."""

    def __init__(self, path: Path, handle: Handler) -> None:
        self.path = path
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        path = self.path
        if not path.parent.exists():
            path.parent.mkdir(mode=0o700, parents=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # left by a daemon that died
            else:
                raise UserError(f"{path} exists and is not a socket; refusing to replace it")
        # Created owner-only from the first instant, not chmod-ed afterwards.
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        finally:
            os.umask(old_umask)
        path.chmod(0o600)
        log.info("control socket: %s", path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    await _reply(writer, {"ok": False, "error": "request too long"})
                    return
                if len(line) > MAX_REQUEST_BYTES:
                    await _reply(writer, {"ok": False, "error": "request too long"})
                    return
                await _reply(writer, self._answer(line))
                if not line.endswith(b"\n"):
                    return
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "not a JSON object"}
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            return {"ok": False, "error": 'expected {"command": ...}'}
        try:
            return self._handle(request)
        except Exception:
            log.exception("control socket: the %r command failed", request.get("command"))
            return {"ok": False, "error": "internal error"}


async def _reply(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer).encode() + b"\n")
    await writer.drain()


def request(path: Path, message: dict[str, Any], timeout: float = CLIENT_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to the daemon's control socket and return its answer (blocking)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(path))
            client.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
    except FileNotFoundError:
        raise UserError(f"the daemon is not running (no control socket at {path})") from None
    except PermissionError:
        raise UserError(
            f"no permission to use {path}: it belongs to the daemon's user (try sudo)"
        ) from None
    except (ConnectionRefusedError, TimeoutError, OSError) as exc:
        raise UserError(f"the daemon did not answer on {path}: {exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise UserError(f"the daemon gave an unreadable answer on {path}") from None
    if not isinstance(answer, dict):
        raise UserError(f"the daemon gave an unreadable answer on {path}")
    return answer


# -- the commands -----------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    announce = subparsers.add_parser(
        "announce", help="make the running daemon say something (a chime, then the sentence)"
    )
    announce.add_argument("text", help="what the assistant should say, word for word")
    _socket_arguments(announce)
    announce.set_defaults(handler=_announce_command)

    mute = subparsers.add_parser("mute", help="mute or unmute the running daemon's microphone")
    mute.add_argument("state", choices=("on", "off"), help="on mutes, off unmutes")
    _socket_arguments(mute)
    mute.set_defaults(handler=_mute_command)


def _socket_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="configuration file (for device.control_socket)")
    parser.add_argument("--socket", metavar="PATH", type=Path, help="the daemon's control socket")


def _socket_for(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    configured = None
    if args.config or os.environ.get("EDGEVOICE_CONFIG"):
        from edgevoice.config import load_settings, resolve_config_path

        settings = load_settings(resolve_config_path(args.config, os.environ)).settings
        configured = settings.device.control_socket
    return control_socket_path(configured)


def _run_request(args: argparse.Namespace, message: dict[str, Any]) -> int:
    answer = request(_socket_for(args), message)
    if not answer.get("ok"):
        raise UserError(f"the daemon refused: {answer.get('error', 'no reason given')}")
    return 0


def _announce_command(args: argparse.Namespace) -> int:
    return _run_request(args, {"command": "announce", "text": args.text})


def _mute_command(args: argparse.Namespace) -> int:
    return _run_request(args, {"command": "mute" if args.state == "on" else "unmute"})


__all__ = ["ControlServer", "control_socket_path", "register", "request", "served_socket_path"]

"""A tiny TLS websocket server that answers as the real Live API does in the cases the
emulator does not play: a refused upgrade (HTTP 429 with Google's error body), a close with
the service's own words, frames the SDK cannot parse, an oversized frame, a call sent twice.

Each test gives a ``script``: ``async def script(ws, setup)`` runs after the setup frame
arrived (``setup`` is its JSON); ``send_setup_complete`` decides whether the server answers
the setup first. Every frame the client sends is kept in ``frames``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import trustme
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

Script = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


class RawLiveServer:
    def __init__(
        self,
        script: Script | None = None,
        *,
        send_setup_complete: bool = True,
        refuse: tuple[HTTPStatus, dict[str, Any]] | None = None,
    ) -> None:
        self._script = script
        self._send_setup_complete = send_setup_complete
        self._refuse = refuse
        self._ca = trustme.CA()
        self.frames: list[dict[str, Any]] = []
        self.upgrades = 0
        self.connections: list[ServerConnection] = []
        # Set when a connection has ended and every frame it carried is in ``frames``.
        self.read_all = asyncio.Event()
        self._server: Any = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def write_ca(self, path: Path) -> None:
        """The CA's certificate (PEM), for a client that reads its trust from a file."""
        self._ca.cert_pem.write_to_path(str(path))

    async def __aenter__(self) -> RawLiveServer:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1").configure_cert(context)
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            ssl=context,
            process_request=self._process_request,
            max_size=None,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.upgrades += 1
        if self._refuse is None:
            return None
        status, body = self._refuse
        response = connection.respond(status, json.dumps(body))
        response.headers["Content-Type"] = "application/json; charset=UTF-8"
        return response

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        setup = json.loads(await ws.recv())
        self.frames.append(setup)
        if self._send_setup_complete:
            await ws.send(json.dumps({"setupComplete": {}}))
        reader = asyncio.create_task(self._read(ws))
        try:
            if self._script is not None:
                await self._script(ws, setup["setup"])
            await ws.wait_closed()
            await reader
        finally:
            reader.cancel()
            self.read_all.set()

    async def _read(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self.frames.append(json.loads(message))


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    """Google's JSON error body, as the real service sends it."""
    return {"error": {"code": code, "message": message, "status": status}}

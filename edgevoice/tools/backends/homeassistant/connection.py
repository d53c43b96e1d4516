"""One authenticated websocket to Home Assistant (``/api/websocket``), over websockets (the
library the Live SDK already loads: no second HTTP stack on the device).

Home Assistant's protocol: the server says ``auth_required``, the client sends its token,
the server answers ``auth_ok`` or ``auth_invalid``; then every command carries an ``id``
and is answered by a ``result`` with that id (``success`` and ``result`` or ``error``);
a subscription's events arrive as ``event`` messages with the subscribing command's id.

This module only speaks the protocol: it does not retry (the backend owns reconnecting)
and keeps no state of the home. The token is held as a ``SecretStr``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

log = logging.getLogger(__name__)

EventCallback = Callable[[Mapping[str, Any]], None]

# A ping every 30 s; no pong within 15 s ends the connection (and the backend reconnects).
PING_INTERVAL_S = 30.0
PING_TIMEOUT_S = 15.0

LOGIN_REDACTED = "> TEXT [the login message, with the access token: not logged]"


class _RedactLogin(logging.Filter):
    """websockets logs every frame at DEBUG with the start of its text, and the login
    message carries the access token: that record is rewritten before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and "access_token" in record.getMessage():
            record.msg, record.args = LOGIN_REDACTED, ()
        return True


# Under "websockets.client", so the level set there (the service keeps it at INFO) applies.
ws_logger = logging.getLogger("websockets.client.edgevoice.homeassistant")
ws_logger.addFilter(_RedactLogin())


class ConnectionLost(Exception):
    """The websocket is closed or could not be opened; ``str()`` says why, in words."""


class TokenRejected(ConnectionLost):
    """Home Assistant refused the access token (``auth_invalid`` or HTTP 401)."""


class CommandFailed(Exception):
    """Home Assistant answered a command with ``success: false``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class HomeAssistantConnection:
    """Open with :meth:`open`; then :meth:`command` and :meth:`subscribe`; :meth:`closed`
    completes when the socket ends for any reason."""

    def __init__(
        self,
        url: str,
        token: SecretStr,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        timeout_s: float = 8.0,
    ):
        self._url = websocket_url(url)
        self._where = f"Home Assistant at {url}"
        self._token = token
        self._ssl = ssl_context
        self._timeout_s = timeout_s
        self._socket: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._subscriptions: dict[int, EventCallback] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[str] | None = None
        self.ha_version: str | None = None

    def __repr__(self) -> str:
        return f"HomeAssistantConnection(url={self._url!r}, token=SecretStr('**********'))"

    @property
    def is_open(self) -> bool:
        return self._closed is not None and not self._closed.done()

    async def open(self) -> None:
        """Connect and authenticate. Raises :class:`TokenRejected` or :class:`ConnectionLost`."""
        self._closed = asyncio.get_running_loop().create_future()
        try:
            self._socket = await connect(
                self._url,
                ssl=_client_tls(self._url, self._ssl),
                open_timeout=self._timeout_s,
                ping_interval=PING_INTERVAL_S,
                ping_timeout=PING_TIMEOUT_S,
                max_size=None,  # a whole home's states come in one message
                proxy=None,  # Home Assistant is on the local network
                logger=ws_logger,
            )
            async with asyncio.timeout(self._timeout_s):
                hello = await self._receive_json()
                if hello.get("type") != "auth_required":
                    raise ConnectionLost(f"{self._where} did not ask for authentication")
                await self._socket.send(
                    json.dumps({"type": "auth", "access_token": self._token.get_secret_value()})
                )
                answer = await self._receive_json()
        except InvalidStatus as exc:
            await self._abandon()
            status = exc.response.status_code
            if status == 401:
                raise TokenRejected(f"{self._where} refused the access token (HTTP 401)") from None
            raise ConnectionLost(f"{self._where} refused the websocket (HTTP {status})") from None
        except ssl.SSLCertVerificationError:
            await self._abandon()
            raise ConnectionLost(
                f"cannot verify the TLS certificate of {self._where}; "
                "set home.homeassistant.ca_file"
            ) from None
        except TimeoutError:
            await self._abandon()
            raise ConnectionLost(
                f"{self._where} did not answer within {self._timeout_s:g} seconds"
            ) from None
        except ConnectionClosed:
            await self._abandon()
            raise ConnectionLost(f"{self._where} closed the websocket during the login") from None
        except OSError as exc:
            await self._abandon()
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ConnectionLost(f"cannot connect to {self._where}: {reason}") from None
        except WebSocketException as exc:
            await self._abandon()
            raise ConnectionLost(f"lost the connection to {self._where} ({type(exc).__name__})") from None
        except ConnectionLost:
            await self._abandon()
            raise
        if answer.get("type") == "auth_invalid":
            await self._abandon()
            reason = answer.get("message", "auth_invalid")
            raise TokenRejected(f"{self._where} refused the access token ({reason})")
        if answer.get("type") != "auth_ok":
            await self._abandon()
            raise ConnectionLost(f"{self._where} answered the login with {answer.get('type')!r}")
        self.ha_version = str(answer.get("ha_version", "")) or None
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="home-assistant reader")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await self._abandon()
        self._end("closed by EdgeVoice")

    async def closed(self) -> str:
        """Wait until the connection has ended; returns why."""
        assert self._closed is not None
        return await asyncio.shield(self._closed)

    async def command(self, message_type: str, timeout_s: float | None = None, **payload: Any) -> Any:
        """Send one command and return its ``result``. Raises :class:`CommandFailed` when HA
        says no, :class:`ConnectionLost` when the socket ends first, TimeoutError."""
        message_id, future = self._send_prepare()
        try:
            await self._send({"id": message_id, "type": message_type, **payload})
            async with asyncio.timeout(timeout_s or self._timeout_s):
                return await future
        finally:
            self._waiting.pop(message_id, None)

    async def subscribe(self, message_type: str, callback: EventCallback, **payload: Any) -> int:
        """Send a subscribe command; ``callback`` gets each event (on the loop, in order)."""
        message_id, future = self._send_prepare()
        self._subscriptions[message_id] = callback
        try:
            await self._send({"id": message_id, "type": message_type, **payload})
            async with asyncio.timeout(self._timeout_s):
                await future
        except BaseException:
            self._subscriptions.pop(message_id, None)
            raise
        finally:
            self._waiting.pop(message_id, None)
        return message_id

    # -- internals ----------------------------------------------------------------------------

    def _send_prepare(self) -> tuple[int, asyncio.Future[Any]]:
        if not self.is_open or self._socket is None:
            raise ConnectionLost(f"not connected to {self._where}")
        message_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = future
        return message_id, future

    async def _send(self, message: Mapping[str, Any]) -> None:
        assert self._socket is not None
        try:
            await self._socket.send(json.dumps(dict(message)))
        except (WebSocketException, OSError) as exc:
            raise ConnectionLost(f"lost the connection to {self._where} ({type(exc).__name__})") from None

    async def _receive_json(self) -> dict[str, Any]:
        assert self._socket is not None
        message = await self._socket.recv()
        if not isinstance(message, str):
            raise ConnectionLost(f"{self._where} sent a binary message during the login")
        try:
            data = json.loads(message)
        except ValueError:
            raise ConnectionLost(f"{self._where} sent an unreadable login message") from None
        return data if isinstance(data, dict) else {}

    async def _read(self) -> None:
        assert self._socket is not None
        why = f"{self._where} closed the connection"
        try:
            async for message in self._socket:
                if not isinstance(message, str):
                    log.warning("Home Assistant sent a binary message; ignored")
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    log.warning("Home Assistant sent an unreadable message; ignored")
                    continue
                # HA may coalesce several messages into one JSON array.
                for item in data if isinstance(data, list) else [data]:
                    if isinstance(item, dict):
                        self._dispatch(item)
        except (WebSocketException, OSError) as exc:
            # A clean close ends the iteration above; this is a lost connection (no close
            # frame, a ping unanswered, a protocol error).
            why = f"lost the connection to {self._where} ({type(exc).__name__})"
        finally:
            self._end(why)

    def _dispatch(self, message: Mapping[str, Any]) -> None:
        message_id = message.get("id")
        kind = message.get("type")
        if kind == "event" and isinstance(message.get("event"), Mapping):
            callback = self._subscriptions.get(message_id)  # type: ignore[arg-type]
            if callback is not None:
                try:
                    callback(message["event"])
                except Exception:
                    log.exception("handling a Home Assistant event failed")
            return
        if kind != "result":
            return
        future = self._waiting.get(message_id)  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if message.get("success"):
            future.set_result(message.get("result"))
        else:
            error = message.get("error") if isinstance(message.get("error"), Mapping) else {}
            future.set_exception(
                CommandFailed(str(error.get("code", "unknown_error")), str(error.get("message", "")))
            )

    def _end(self, why: str) -> None:
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(why)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionLost(why))
        self._waiting.clear()
        self._subscriptions.clear()

    async def _abandon(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            with contextlib.suppress(Exception):
                await socket.close()


def websocket_url(url: str) -> str:
    """Home Assistant's websocket API under its base URL (``http`` becomes ``ws``; the
    settings accept only ``http://`` and ``https://``)."""
    return "ws" + url.rstrip("/").removeprefix("http") + "/api/websocket"


def _client_tls(url: str, setting: ssl.SSLContext | bool) -> ssl.SSLContext | None:
    """The TLS context for ``url``: none for ``ws://``; for ``wss://`` the given context,
    the system's trust (True), or no verification at all (False, ``verify_tls = false``)."""
    if not url.startswith("wss://"):
        return None
    if isinstance(setting, ssl.SSLContext):
        return setting
    context = ssl.create_default_context()
    if not setting:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


__all__ = [
    "CommandFailed",
    "ConnectionLost",
    "EventCallback",
    "HomeAssistantConnection",
    "TokenRejected",
]

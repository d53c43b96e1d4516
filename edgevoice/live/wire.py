"""A tap on the SDK's websocket: every frame in and out, with its time.

google-genai opens its websocket with ``websockets``' ``connect`` (imported into
``google.genai.live`` as ``ws_connect``). Wrapping that one name gives us, without
touching the protocol: the frames for ``--trace``, the moment a frame was handed to the
socket (for the benchmark), keepalive settings suited to the Live API, and the raw socket
to abort a connection that will not close politely. Checked against google-genai 3.4.0
(``tests/live/test_wire.py`` fails if the SDK stops using this name).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import google.genai.live as sdk_live

# direction ("client" | "server"), frame (str or bytes), monotonic time
FrameObserver = Callable[[str, Any, float], None]

# The library default (20 s ping, 20 s pong timeout) has closed Live connections whose
# pongs came late; a lost link is still found within a minute, and sooner by the reply
# timeout when an answer is owed.
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 40.0

_original_connect = sdk_live.ws_connect
_observer: FrameObserver | None = None

# websockets logs every handshake header at DEBUG, the API key (x-goog-api-key) and the
# ephemeral token (Authorization: Token ...) among them. Our connections log through this
# logger, whose filter blanks those values before any handler sees the record. It lives
# under "websockets.client" so that whatever level is set there (the service keeps it at
# INFO: every audio frame is logged at DEBUG) still applies.
SENSITIVE_HEADERS = frozenset({"x-goog-api-key", "authorization", "proxy-authorization", "cookie"})
_SECRET_QUERY = re.compile(r"(?i)([?&](?:key|access_token)=)[^&\s]+")
REDACTED = "[redacted]"


class _RedactHandshake(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and record.msg in ("> %s: %s", "< %s: %s"):
            if str(args[0]).lower() in SENSITIVE_HEADERS:
                record.args = (args[0], REDACTED)
        elif isinstance(args, tuple) and len(args) == 1 and record.msg == "> GET %s HTTP/1.1":
            record.args = (_SECRET_QUERY.sub(r"\1" + REDACTED, str(args[0])),)
        return True


ws_logger = logging.getLogger("websockets.client.edgevoice")
ws_logger.addFilter(_RedactHandshake())


def set_frame_observer(observer: FrameObserver | None) -> None:
    """Observe every frame of every Live connection in this process (None: stop)."""
    global _observer
    _observer = observer


def install() -> None:
    """Idempotent: route the SDK's websocket connections through the tap."""
    sdk_live.ws_connect = _TappedConnect  # type: ignore[assignment]


class _TappedConnect:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ping_interval", PING_INTERVAL_S)
        kwargs.setdefault("ping_timeout", PING_TIMEOUT_S)
        # Reply audio frames are ~13 kB; a hostile 100 MB frame must not be buffered.
        kwargs.setdefault("max_size", 16 * 1024 * 1024)
        # Base64 PCM barely compresses; deflating every 20 ms frame only costs CPU.
        kwargs.setdefault("compression", None)
        kwargs.setdefault("logger", ws_logger)
        self._inner = _original_connect(*args, **kwargs)

    async def __aenter__(self) -> TappedSocket:
        return TappedSocket(await self._inner.__aenter__())

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)


class TappedSocket:
    """Delegates to the real websocket, telling the observer about each frame."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, message: Any, *args: Any, **kwargs: Any) -> None:
        await self.ws.send(message, *args, **kwargs)
        observer = _observer
        if observer is not None:
            observer("client", message, time.monotonic())

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        message = await self.ws.recv(*args, **kwargs)
        observer = _observer
        if observer is not None:
            observer("server", message, time.monotonic())
        return message

    def abort(self) -> None:
        """Drop the TCP connection without the closing handshake."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ws, name)

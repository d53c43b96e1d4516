"""The one door to google-genai: connect, frames, the wire tap and error mapping.

Nothing else in EdgeVoice imports the SDK. What goes in is plain data (a setup dict in the
SDK's ``LiveConnectConfig`` field names, function declarations as the Live API spells them,
tool results, text); what comes out is the SDK's parsed server messages (read by
:mod:`edgevoice.live.messages`) and :class:`LinkError`, which says, in the core's terms,
why a connection ended or could not be opened.

Two private parts of the SDK are used, both here and nowhere else, and checked when this
module is imported (:func:`check_sdk` raises :class:`SdkMismatch`, naming the installed
version, if either is gone):

- ``google.genai.live.ws_connect``: the SDK opens its websocket through this module-level
  name. Wrapping it gives the frames for ``--trace``, keepalive settings suited to the Live
  API, a size limit, a redacting handshake logger and the raw socket (to abort a connection
  that will not close politely).
- ``AsyncSession._ws``: the session's websocket. Audio and activity frames are written on
  it directly: for a 20 ms period the SDK's pydantic validation and converters cost several
  times the rest of the send path. The frames are byte-identical to the SDK's
  (``tests/live/test_sdk.py`` compares them).

One more, used only if present and not checked: ``LiveServerMessage._from_response``, the
SDK's own parse, which :func:`warm_up` runs once before the daemon is ready (without it,
the public validation of the same message does most of the work).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import certifi
import pydantic
from google import genai
from google.genai import errors, types
from google.genai import live as sdk_live
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, WebSocketException
from websockets.protocol import State

from edgevoice.core.events import DownCause, ToolResult
from edgevoice.errors import UserError

log = logging.getLogger(__name__)

SDK_VERSION: str = getattr(genai, "__version__", "unknown")
TESTED_SDK_VERSIONS = "3.4.0 to 3.6.1"
SDK_REQUIREMENT = "google-genai>=3.4,<3.7"

INPUT_MIME = "audio/pcm;rate=16000"

# The library default (20 s ping, 20 s pong timeout) has closed Live connections whose
# pongs came late; the service's pongs have been measured at up to 30 s. A lost link is
# still found within a minute, and sooner by the reply timeout when an answer is owed.
PING_INTERVAL_S = 20.0
PING_TIMEOUT_S = 40.0
# Reply audio frames are ~13 kB; a hostile 100 MB frame must not be buffered.
MAX_FRAME_BYTES = 16 * 1024 * 1024
# The websocket close code the client sends when a frame exceeds MAX_FRAME_BYTES.
CLOSE_MESSAGE_TOO_BIG = 1009

# The SDK's pydantic models are built on their first use (``defer_build``). Lazily, the
# first server message's parse held the event loop 12.6 ms here (several times that on a
# Pi), mid-answer, and the first tool response 7.5 ms. :func:`warm_up` takes the same
# paths once before the daemon is ready, with a message that has every part the device
# reads, so it builds what the conversation would build and no more (building every
# model on its own cost 4 MB of RSS; this costs about 1.2). The connection's config is
# built at the first connect, before anyone can talk. A test runs a whole conversation
# after the first connect and checks that nothing more was built.
_SERVER_MESSAGE_SAMPLE: dict[str, Any] = {
    "setup_complete": {},
    "server_content": {
        "model_turn": {"parts": [{"inline_data": {"mime_type": "audio/pcm;rate=24000", "data": b"\0\0"}}]},
        "input_transcription": {"text": "a"},
        "output_transcription": {"text": "a"},
        "turn_complete": True,
        "generation_complete": True,
        "interrupted": False,
    },
    "tool_call": {"function_calls": [{"id": "a", "name": "a", "args": {}}]},
    "tool_call_cancellation": {"ids": ["a"]},
    "go_away": {"time_left": "1s"},
    "session_resumption_update": {"new_handle": "a", "resumable": True},
    "usage_metadata": {
        "total_token_count": 1,
        "prompt_tokens_details": [{"modality": "AUDIO", "token_count": 1}],
    },
}
_warmed = False


def warm_up() -> None:
    """Build what parsing the server's messages and sending tool responses and context
    build on first use, now (once per process)."""
    global _warmed
    if _warmed:
        return
    _warmed = True
    sample = copy.deepcopy(_SERVER_MESSAGE_SAMPLE)
    # The SDK's own parse (it prunes unknown keys, building each nested model it meets):
    # used where this version has it, else the public validation of the same message.
    parse = getattr(types.LiveServerMessage, "_from_response", None)
    if callable(parse):
        parse(response=sample, kwargs={})
    else:
        types.LiveServerMessage.model_validate(sample)
    responses = function_responses([ToolResult("warm-up", "warm_up", {"ok": True}, "WHEN_IDLE", 0.0)])
    types.LiveClientToolResponse(function_responses=responses)
    types.LiveClientContent(
        turns=[types.Content(role="user", parts=[types.Part(text="a")])], turn_complete=True
    )


# -- the check -----------------------------------------------------------------------------


class SdkMismatch(UserError):
    """The installed google-genai lacks what the door relies on (message names the version)."""


class _ProbeClient:
    vertexai = False


def check_sdk(live_module: Any = sdk_live, version: str = SDK_VERSION) -> None:
    """Fail loudly, naming ``version``, if the SDK no longer has the private parts used here."""
    problems = []
    if not callable(getattr(live_module, "ws_connect", None)):
        problems.append("google.genai.live no longer opens its websocket through ws_connect")
    session_class = getattr(live_module, "AsyncSession", None)
    marker = object()
    try:
        session = session_class(api_client=_ProbeClient(), websocket=marker)  # type: ignore[misc]
    except Exception as exc:
        problems.append(f"AsyncSession(api_client=..., websocket=...) fails: {type(exc).__name__}: {exc}")
    else:
        if getattr(session, "_ws", None) is not marker:
            problems.append("AsyncSession no longer keeps its websocket as _ws")
    if problems:
        raise SdkMismatch(
            f"google-genai {version} does not work with EdgeVoice's Live door "
            f"(tested with {TESTED_SDK_VERSIONS}): {'; '.join(problems)}. "
            f"Install {SDK_REQUIREMENT}."
        )


check_sdk()

# -- the wire tap ----------------------------------------------------------------------------

# direction ("client" | "server"), frame (str or bytes), monotonic time
FrameObserver = Callable[[str, Any, float], None]

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
    """Observe every frame of every Live connection in this process (None: stop).

    The observer is called on the event loop's thread; one that is also fed from other
    threads must lock (:class:`edgevoice.live.trace.TraceFile` does).
    """
    global _observer
    _observer = observer


def install() -> None:
    """Idempotent: route the SDK's websocket connections through the tap."""
    sdk_live.ws_connect = _TappedConnect  # type: ignore[assignment]


class _TappedConnect:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("ping_interval", PING_INTERVAL_S)
        kwargs.setdefault("ping_timeout", PING_TIMEOUT_S)
        kwargs.setdefault("max_size", MAX_FRAME_BYTES)
        # Base64 PCM barely compresses; deflating every 20 ms frame only costs CPU.
        kwargs.setdefault("compression", None)
        kwargs.setdefault("logger", ws_logger)
        self._inner = _original_connect(*args, **kwargs)

    async def __aenter__(self) -> TappedSocket:
        return TappedSocket(await self._inner.__aenter__())

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self._inner.__aexit__(*exc_info)


def _observe_sent(message: Any) -> None:
    observer = _observer
    if observer is not None:
        observer("client", message, time.monotonic())


class TappedSocket:
    """Delegates to the real websocket, telling the observer about each frame and keeping
    the last frame received (what the SDK could not parse is still there to read)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.last_received: Any = None

    async def send(self, message: Any, *args: Any, **kwargs: Any) -> None:
        await self.ws.send(message, *args, **kwargs)
        _observe_sent(message)

    def send_now(self, message: str) -> bool:
        """Write a text frame at once, as ``send()`` would, when it would not have to wait:
        the connection is open, no fragmented message is under way and the transport takes
        more. False: nothing was written (``send()`` waits, or raises the closure).

        ``send()`` is a coroutine: the caller's task must run to write the frame, one
        loop iteration and a task step later (about a third of a frame's cost, measured).
        Its sans-I/O protocol and transport are what it writes with; a websockets version
        without them only ever takes the slow way."""
        ws = self.ws
        protocol = getattr(ws, "protocol", None)
        transport = getattr(ws, "transport", None)
        if (
            protocol is None
            or transport is None
            or getattr(ws, "paused", True)
            or getattr(ws, "send_in_progress", True) is not None
            or protocol.state is not State.OPEN
            or transport.is_closing()
        ):
            return False
        protocol.send_text(message.encode())
        for data in protocol.data_to_send():
            if data:
                transport.write(data)
        _observe_sent(message)
        return True

    async def recv(self, *args: Any, **kwargs: Any) -> Any:
        message = await self.ws.recv(*args, **kwargs)
        self.last_received = message
        observer = _observer
        if observer is not None:
            observer("server", message, time.monotonic())
        return message

    def sent_close_code(self) -> int | None:
        """The code of the close frame this client sent (1009: a frame was too large)."""
        protocol = getattr(self.ws, "protocol", None)
        close = getattr(protocol, "close_sent", None)
        return getattr(close, "code", None)

    def abort(self) -> None:
        """Drop the TCP connection without the closing handshake."""
        transport = getattr(self.ws, "transport", None)
        if transport is not None:
            transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ws, name)


# -- frames written directly -------------------------------------------------------------------

# The frames google-genai's send_realtime_input writes for audio and activity markers.
_AUDIO_FRAME_HEAD = '{"realtime_input": {"audio": {"data": "'
_AUDIO_FRAME_TAIL = '", "mime_type": ' + json.dumps(INPUT_MIME) + "}}}"
ACTIVITY_START_FRAME = '{"realtime_input": {"activityStart": {}}}'
ACTIVITY_END_FRAME = '{"realtime_input": {"activityEnd": {}}}'


def audio_frame(pcm: bytes) -> str:
    """The realtimeInput frame carrying ``pcm`` (16 kHz S16_LE), as the SDK would write it."""
    return _AUDIO_FRAME_HEAD + base64.urlsafe_b64encode(pcm).decode("ascii") + _AUDIO_FRAME_TAIL


# -- plain data into SDK types -------------------------------------------------------------------


def connect_config(setup: Mapping[str, Any]) -> types.LiveConnectConfig:
    """The SDK's config from the setup builder's plain dict (ValueError if it does not fit)."""
    try:
        return types.LiveConnectConfig.model_validate(dict(setup))
    except pydantic.ValidationError as exc:
        raise ValueError(f"the session setup does not fit the SDK: {exc}") from None


def function_declarations(declarations: Sequence[Mapping[str, Any]]) -> list[types.FunctionDeclaration]:
    """Plain declarations (``name``, ``description``, ``parameters``, ``behavior``) as SDK types."""
    return [types.FunctionDeclaration.model_validate(dict(d)) for d in declarations]


def function_responses(results: Sequence[ToolResult]) -> list[types.FunctionResponse]:
    return [
        types.FunctionResponse(
            id=r.id,
            name=r.name,
            response=r.response,
            scheduling=types.FunctionResponseScheduling(r.scheduling),
        )
        for r in results
    ]


# -- error mapping -------------------------------------------------------------------------------


class LinkError(Exception):
    """A connection ended or could not be opened: ``code`` (close code or HTTP status),
    ``reason`` (one line for the journal, no secrets) and ``cause`` (for the retry plan)."""

    def __init__(self, code: int | None, reason: str, cause: DownCause = DownCause.LOST) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.cause = cause


class UnreadableFrame(Exception):
    """A server frame the SDK could not parse; the connection may still be fine. The
    message says what was wrong, or what the server's ``{"error": ...}`` frame said."""


_NOT_FOUND = re.compile(r"\bnot found\b|\bnot supported for bidigeneratecontent\b", re.IGNORECASE)
_KEY_PROBLEM = re.compile(r"\bapi[ _]key\b", re.IGNORECASE)


def down_cause(code: int | None, text: str) -> DownCause:
    """What a close code or HTTP status and its text mean for the retry (a pure table).

    ===================================================  ==================================
    the server says                                      cause
    ===================================================  ==================================
    HTTP 429, or RESOURCE_EXHAUSTED not about sessions    QUOTA_EXHAUSTED
    1008 "models/... is not found ..."                    MODEL_NOT_FOUND
    1007 "API key expired" / "API key not valid"          KEY_REJECTED
    1009 (a frame over the client's limit)                FRAME_TOO_LARGE
    anything else                                         LOST
    ===================================================  ==================================

    Ephemeral-token refusals (1008 "The ephemeral token ...") stay LOST: the next
    connection asks the broker for a fresh token.
    """
    upper = text.upper()
    if code == 429 or ("RESOURCE_EXHAUSTED" in upper and "CONCURRENT" not in upper):
        return DownCause.QUOTA_EXHAUSTED
    if code == 1008 and _NOT_FOUND.search(text):
        return DownCause.MODEL_NOT_FOUND
    if code == 1007 and _KEY_PROBLEM.search(text):
        return DownCause.KEY_REJECTED
    if code == CLOSE_MESSAGE_TOO_BIG:
        return DownCause.FRAME_TOO_LARGE
    return DownCause.LOST


def _explain(code: int | None, text: str, cause: DownCause, model: str) -> str:
    """The journal line: the server's words, and what to do when there is something to do."""
    match cause:
        case DownCause.QUOTA_EXHAUSTED:
            return f"quota exhausted ({text}): retrying in minutes"
        case DownCause.KEY_REJECTED:
            return (
                f"the Gemini API key was refused ({text}): renew it (GEMINI_API_KEY or the "
                "gemini-api-key credential) and reload"
            )
        case DownCause.MODEL_NOT_FOUND:
            return (
                f"the model {model or '(live.model)'} is not available ({text}): it may be "
                "retired; set live.model (e.g. gemini-3.8-live) and reload"
            )
        case DownCause.FRAME_TOO_LARGE:
            return f"the server sent a frame over the {MAX_FRAME_BYTES // (1024 * 1024)} MiB limit"
    return text


def _api_error_text(exc: errors.APIError) -> str:
    # A websocket close carries its reason in ``details`` (a string), not ``message``: it is
    # what says why the server refused (an invalid key, a spent or expired token).
    details = exc.details if isinstance(exc.details, str) else ""
    message = " ".join(str(exc.message or exc.status or details or "").split())
    return _clip(f"{exc.code} {message}".strip() if message else str(exc.code))


def _status_text(exc: InvalidStatus) -> tuple[int, str]:
    response = exc.response
    status = response.status_code
    text = f"the server refused the connection (HTTP {status})"
    body = getattr(response, "body", None) or b""
    try:
        error = json.loads(body).get("error", {})
    except (ValueError, AttributeError, TypeError):
        error = {}
    if isinstance(error, dict):
        detail = " ".join(str(error.get(k) or "") for k in ("status", "message")).strip()
        if detail:
            text += f": {' '.join(detail.split())}"
    return status, _clip(text)


def link_error(exc: BaseException, socket: Any = None, model: str = "") -> LinkError | None:
    """``exc`` as a :class:`LinkError`, or None if it is not about the connection."""
    if isinstance(exc, LinkError):
        return exc
    if isinstance(exc, errors.APIError):
        code: int | None = exc.code
        text = _api_error_text(exc)
        # The SDK reports our own 1009 close (frame too large) as an abnormal closure.
        if (
            code == 1006
            and isinstance(socket, TappedSocket)
            and socket.sent_close_code() == CLOSE_MESSAGE_TOO_BIG
        ):
            code = CLOSE_MESSAGE_TOO_BIG
    elif isinstance(exc, InvalidStatus):
        code, text = _status_text(exc)
    elif isinstance(exc, ConnectionClosed):
        sent = exc.sent.code if exc.sent is not None else None
        code = exc.rcvd.code if exc.rcvd is not None else (sent if sent == CLOSE_MESSAGE_TOO_BIG else 1006)
        text = _short(exc)
    elif isinstance(exc, TimeoutError):
        code, text = None, "no answer from the server"
    elif isinstance(exc, OSError | InvalidHandshake | WebSocketException):
        code, text = 1006, _short(exc)
    else:
        return None
    cause = down_cause(code, text)
    return LinkError(code, _explain(code, text, cause, model), cause)


def error_frame_text(frame: Any) -> str | None:
    """The message of a server ``{"error": {...}}`` frame, which the SDK cannot parse."""
    try:
        body = json.loads(frame)
    except (TypeError, ValueError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    parts = [str(error[k]) for k in ("code", "status", "message") if error.get(k) not in (None, "")]
    return _clip(" ".join(" ".join(parts).split()) or "no details")


# -- clients and sessions ------------------------------------------------------------------------


EPHEMERAL_TOKEN_PREFIX = "auth_tokens/"


def make_client(
    key: str,
    *,
    base_url: str | None = None,
    api_version: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> genai.Client:
    options = types.HttpOptions()
    if base_url:
        options.base_url = base_url
    if api_version:
        options.api_version = api_version
    elif key.startswith(EPHEMERAL_TOKEN_PREFIX):
        # The Live API takes ephemeral tokens on v1alpha only.
        options.api_version = "v1alpha"
    if ssl_context is not None:
        # Given to every transport the client makes (the websocket takes "ssl", httpx
        # "verify"): without it the SDK loads a trust store for each, ~50 ms of CPU apiece.
        options.async_client_args = {"ssl": ssl_context, "verify": ssl_context}
        options.client_args = {"verify": ssl_context}
    return genai.Client(api_key=key, http_options=options)


def default_tls_context() -> ssl.SSLContext:
    """The trust google-genai gives its Live websocket when told none (certifi's store, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), built here so that one context serves every
    client: a device on ephemeral tokens makes a client per connection."""
    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()),
        capath=os.environ.get("SSL_CERT_DIR"),
    )


def model_path(model: str) -> str:
    return model if model.startswith("models/") else f"models/{model}"


async def open_session(
    client: genai.Client, model: str, setup: Mapping[str, Any], *, timeout_s: float
) -> LiveSession:
    """Connect and wait for setupComplete. Raises :class:`LinkError` (ValueError: bad setup)."""
    install()
    config = connect_config(setup)
    context = client.aio.live.connect(model=model_path(model), config=config)
    try:
        session = await asyncio.wait_for(context.__aenter__(), timeout_s)
    except (pydantic.ValidationError, ValueError) as exc:
        # The SDK could not read the server's answer to the setup.
        raise LinkError(None, _short(exc)) from None
    except Exception as exc:
        error = link_error(exc, model=model)
        if error is None:
            raise
        raise error from None
    return LiveSession(context, session, model)


_UNPARSABLE = (TypeError, ValueError, KeyError, AttributeError, RecursionError, pydantic.ValidationError)


class LiveSession:
    """One open Live connection. Every method raises :class:`LinkError` when the
    connection is gone; :meth:`receive` also raises :class:`UnreadableFrame`."""

    def __init__(self, context: Any, session: Any, model: str = "") -> None:
        self._context = context
        self._session = session
        self._model = model
        self.socket: Any = session._ws
        self._write = self.socket.send

    def _error(self, exc: BaseException) -> LinkError | None:
        return link_error(exc, self.socket, self._model)

    async def send_frame(self, frame: str) -> None:
        """Write a frame built here (:func:`audio_frame`, the activity frames)."""
        try:
            await self._write(frame)
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from None

    def send_frame_now(self, frame: str) -> bool:
        """:meth:`send_frame` without waiting, if the socket can take it at once (see
        :meth:`TappedSocket.send_now`); False: nothing written. Raises :class:`LinkError`."""
        socket = self.socket
        if not isinstance(socket, TappedSocket):
            return False
        try:
            return socket.send_now(frame)
        except Exception as exc:
            raise self._error(exc) or LinkError(1006, _short(exc)) from None

    async def send_tool_responses(self, results: Sequence[ToolResult]) -> None:
        """ValueError/TypeError: a result the SDK cannot encode (the connection is fine)."""
        try:
            await self._session.send_tool_response(function_responses=function_responses(results))
        except pydantic.ValidationError as exc:
            raise ValueError(str(exc)) from None
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from None

    async def send_context(self, text: str, *, turn_complete: bool) -> None:
        try:
            await self._session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=text)]),
                turn_complete=turn_complete,
            )
        except pydantic.ValidationError as exc:
            raise ValueError(str(exc)) from None
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from None

    async def receive(self) -> AsyncIterator[types.LiveServerMessage]:
        """Server messages until the SDK ends its iteration (after each turnComplete)."""
        try:
            async for message in self._session.receive():
                yield message
        except _UNPARSABLE as exc:
            # The SDK could not parse a frame (an unknown or snake_case key, bad JSON, a
            # wrong type, JSON nested too deep, or the server's {"error": ...} frame, on
            # which the SDK itself fails). The frame is consumed.
            server_error = error_frame_text(getattr(self.socket, "last_received", None))
            if server_error is not None:
                raise UnreadableFrame(f"the server reported an error: {server_error}") from None
            raise UnreadableFrame(f"unreadable frame: {_short(exc)}") from None
        except errors.APIError as exc:
            error = self._error(exc)
            if error is None:  # pragma: no cover - APIError always maps
                raise
            raise error from None
        except (OSError, WebSocketException) as exc:
            raise self._error(exc) or LinkError(1006, _short(exc)) from None

    async def close(self, timeout_s: float) -> None:
        """Close politely within ``timeout_s``, else drop the TCP connection."""
        try:
            await asyncio.wait_for(self._context.__aexit__(None, None, None), timeout_s)
        except (TimeoutError, Exception) as exc:  # a dead link cannot close politely
            log.debug("connection closed by abort: %s", exc)
            if isinstance(self.socket, TappedSocket):
                self.socket.abort()


def _clip(text: str) -> str:
    return text if len(text) <= 200 else text[:197] + "..."


def _short(exc: BaseException) -> str:
    return _clip(f"{type(exc).__name__}: {exc}")

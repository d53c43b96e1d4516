"""The Live connection: google-genai's ``client.aio.live.connect`` behind a small adapter.

The core decides when to connect, close and send; this adapter does it and reports what
happened as events. It never decides anything itself: a broken connection is reported
(:class:`LinkDown`), not retried here.

One task (:meth:`LiveLink.run`) owns the connections, one at a time: a connection is always
closed before the next is opened (the server rejects a resume while the old socket of the
same session is open). Per connection, a sender task drains an unbounded queue, so the
event loop never waits on the network, and a receiver task turns every server frame into
events, surviving frames the SDK cannot parse.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from google import genai
from google.genai import errors, types
from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

from edgevoice.bench.probe import NullProbe, Probe
from edgevoice.config import LiveSettings
from edgevoice.core.events import (
    Action,
    CloseLink,
    Connect,
    Event,
    LinkDown,
    LinkFailed,
    LinkUp,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    ServerProblem,
)
from edgevoice.live import wire
from edgevoice.live.messages import events_from_message
from edgevoice.live.session_config import INPUT_MIME, build_connect_config, model_name

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
# Frames in a row the SDK cannot parse before the connection is declared broken.
MAX_BAD_FRAMES = 20

CredentialSource = Callable[[], Awaitable[str]]
EPHEMERAL_TOKEN_PREFIX = "auth_tokens/"

# The frames google-genai's send_realtime_input writes for audio and activity markers
# (3.4.0), built here directly: for a 20 ms period the SDK's pydantic validation and
# converters cost several times the rest of the Python send path. The frames stay
# byte-identical (tests/bench/test_link_frames.py compares them with the SDK's).
_AUDIO_FRAME_HEAD = '{"realtime_input": {"audio": {"data": "'
_AUDIO_FRAME_TAIL = '", "mime_type": ' + json.dumps(INPUT_MIME) + "}}}"
ACTIVITY_START_FRAME = '{"realtime_input": {"activityStart": {}}}'
ACTIVITY_END_FRAME = '{"realtime_input": {"activityEnd": {}}}'


def audio_frame(pcm: bytes) -> str:
    """The realtimeInput frame carrying ``pcm`` (16 kHz S16_LE), as the SDK would write it."""
    return _AUDIO_FRAME_HEAD + base64.urlsafe_b64encode(pcm).decode("ascii") + _AUDIO_FRAME_TAIL


class CredentialError(Exception):
    """No usable credential for a connection (message says what to do)."""


@dataclass
class _Connection:
    link: int
    context: Any  # the SDK's connect() async context manager
    session: Any  # google.genai.live.AsyncSession
    outbox: asyncio.Queue[Action] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class LiveLink:
    def __init__(
        self,
        live: LiveSettings,
        *,
        credentials: CredentialSource,
        post: Callable[[Event], None],
        function_declarations: Sequence[types.FunctionDeclaration] = (),
        ssl_context: ssl.SSLContext | None = None,
        probe: Probe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        wire.install()
        self._live = live
        self._credentials = credentials
        self._post = post
        self._declarations = list(function_declarations)
        self._ssl_context = ssl_context
        self._probe = probe or NullProbe()
        self._clock = clock
        self._commands: asyncio.Queue[Connect | CloseLink | None] = asyncio.Queue()
        self._current: _Connection | None = None
        self._clients: dict[str, genai.Client] = {}
        self.connects = 0

    # -- called by the daemon on the loop thread; never block ---------------------------------

    def update_settings(self, live: LiveSettings) -> None:
        """Use these settings from the next connection on."""
        if live.base_url != self._live.base_url or live.api_version != self._live.api_version:
            self._clients.clear()
        self._live = live

    def use_ssl_context(self, ssl_context: ssl.SSLContext | None) -> None:
        """Trust this context (None: the system's CAs) from the next connection on."""
        if ssl_context is not self._ssl_context:
            self._ssl_context = ssl_context
            self._clients.clear()

    def connect(self, action: Connect) -> None:
        self._commands.put_nowait(action)

    def close(self, action: CloseLink) -> None:
        self._commands.put_nowait(action)

    def send(self, action: Action) -> None:
        current = self._current
        if current is not None and current.link == getattr(action, "link", None):
            current.outbox.put_nowait(action)

    # -- the owning task --------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                command = await self._commands.get()
                if command is None:
                    return
                if isinstance(command, Connect):
                    await self._close_current()
                    await self._open(command)
                elif self._current is not None and self._current.link == command.link:
                    log.info("closing connection %d: %s", command.link, command.reason)
                    await self._close_current()
        finally:
            await self._close_current()

    async def shutdown(self) -> None:
        """Let queued sends go out (briefly), then close and end :meth:`run`."""
        current = self._current
        if current is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(current.outbox.join(), CLOSE_TIMEOUT_S)
        self._commands.put_nowait(None)

    # -- internals ----------------------------------------------------------------------------

    async def _open(self, command: Connect) -> None:
        link = command.link
        try:
            key = await self._credentials()
        except CredentialError as exc:
            self._post(LinkFailed(link, None, str(exc), self._clock()))
            return
        client = self._client_for(key)
        config = build_connect_config(
            self._live, handle=command.handle, function_declarations=self._declarations
        )
        context = client.aio.live.connect(model=model_name(self._live), config=config)
        try:
            session = await asyncio.wait_for(context.__aenter__(), CONNECT_TIMEOUT_S)
        except errors.APIError as exc:
            self._post(LinkFailed(link, exc.code, _api_error_text(exc), self._clock()))
            return
        except TimeoutError:
            self._post(LinkFailed(link, None, "no answer from the server", self._clock()))
            return
        except InvalidStatus as exc:
            status = exc.response.status_code
            self._post(
                LinkFailed(link, status, f"the server refused the connection (HTTP {status})", self._clock())
            )
            return
        except (OSError, InvalidHandshake, WebSocketException, ValueError, pydantic.ValidationError) as exc:
            self._post(LinkFailed(link, None, _short(exc), self._clock()))
            return
        self.connects += 1
        connection = _Connection(link, context, session)
        connection.tasks = [
            asyncio.create_task(self._send_loop(connection), name=f"live-send-{link}"),
            asyncio.create_task(self._receive_loop(connection), name=f"live-receive-{link}"),
        ]
        self._current = connection
        self._post(LinkUp(link, command.handle is not None, self._clock()))

    async def _close_current(self) -> None:
        connection, self._current = self._current, None
        if connection is None:
            return
        for task in connection.tasks:
            task.cancel()
        for task in connection.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        socket = getattr(connection.session, "_ws", None)
        try:
            await asyncio.wait_for(connection.context.__aexit__(None, None, None), CLOSE_TIMEOUT_S)
        except (TimeoutError, Exception) as exc:  # a dead link cannot close politely
            log.debug("connection %d closed by abort: %s", connection.link, exc)
            if isinstance(socket, wire.TappedSocket):
                socket.abort()

    def _client_for(self, key: str) -> genai.Client:
        client = self._clients.get(key)
        if client is None:
            options = types.HttpOptions()
            if self._live.base_url:
                options.base_url = self._live.base_url
            if self._live.api_version:
                options.api_version = self._live.api_version
            elif key.startswith(EPHEMERAL_TOKEN_PREFIX):
                # The Live API takes ephemeral tokens on v1alpha only.
                options.api_version = "v1alpha"
            if self._ssl_context is not None:
                options.async_client_args = {"ssl": self._ssl_context}
            client = genai.Client(api_key=key, http_options=options)
            # One credential at a time: an ephemeral token is never used twice.
            self._clients = {key: client}
        return client

    async def _send_loop(self, connection: _Connection) -> None:
        session = connection.session
        probe = self._probe
        send_frame = _frame_writer(session)
        while True:
            action = await connection.outbox.get()
            try:
                if isinstance(action, SendAudio):
                    await send_frame(audio_frame(action.pcm))
                    if action.captured_t is not None and probe.enabled:
                        probe.add("capture_to_wire_ms", (self._clock() - action.captured_t) * 1000)
                elif isinstance(action, SendActivityStart):
                    await send_frame(ACTIVITY_START_FRAME)
                elif isinstance(action, SendActivityEnd):
                    await send_frame(ACTIVITY_END_FRAME)
                    if action.released_t is not None and probe.enabled:
                        probe.add("release_to_activity_end_ms", (self._clock() - action.released_t) * 1000)
                elif isinstance(action, SendToolResponses):
                    await session.send_tool_response(
                        function_responses=[
                            types.FunctionResponse(
                                id=r.id,
                                name=r.name,
                                response=r.response,
                                scheduling=types.FunctionResponseScheduling(r.scheduling),
                            )
                            for r in action.results
                        ]
                    )
                elif isinstance(action, SendContext):
                    await session.send_client_content(
                        turns=types.Content(role="user", parts=[types.Part(text=action.text)]),
                        turn_complete=action.turn_complete,
                    )
            except errors.APIError as exc:
                self._post(LinkDown(connection.link, exc.code, _api_error_text(exc), self._clock()))
                return
            except (OSError, WebSocketException) as exc:
                self._post(LinkDown(connection.link, 1006, _short(exc), self._clock()))
                return
            except (ValueError, TypeError, RecursionError, pydantic.ValidationError) as exc:
                # Our own message was refused by the SDK (a tool result it cannot encode):
                # a bug to log, not a reason to drop the conversation.
                log.error("could not send %s: %s", type(action).__name__, _short(exc))
            finally:
                connection.outbox.task_done()

    async def _receive_loop(self, connection: _Connection) -> None:
        link = connection.link
        bad_frames = 0
        empty_passes = 0
        while True:
            received = 0
            try:
                async for message in connection.session.receive():
                    received += 1
                    bad_frames = 0
                    t = self._clock()
                    for event in events_from_message(message, link, t):
                        self._post(event)
            except errors.APIError as exc:
                self._post(LinkDown(link, exc.code, _api_error_text(exc), self._clock()))
                return
            except (OSError, WebSocketException) as exc:
                self._post(LinkDown(link, 1006, _short(exc), self._clock()))
                return
            except (
                TypeError, ValueError, KeyError, AttributeError, RecursionError, pydantic.ValidationError
            ) as exc:
                # The SDK could not parse a frame (unknown or snake_case key, bad JSON,
                # wrong type, JSON nested too deep for the parser). The frame is consumed;
                # the connection may still be fine.
                bad_frames += 1
                self._post(ServerProblem(link, f"unreadable frame: {_short(exc)}", self._clock()))
                if bad_frames >= MAX_BAD_FRAMES:
                    self._post(
                        LinkDown(link, None, "the server keeps sending unreadable frames", self._clock())
                    )
                    return
                continue
            except Exception as exc:
                # Anything else: a receiver that died quietly would leave the daemon deaf
                # until the reply timeout. Say so and let the core reconnect now.
                log.error("the receiver of connection %d failed", link, exc_info=True)
                self._post(LinkDown(link, None, f"receiving failed: {_short(exc)}", self._clock()))
                return
            empty_passes = empty_passes + 1 if received == 0 else 0
            if empty_passes >= MAX_BAD_FRAMES:
                self._post(LinkDown(link, None, "the server stream ended", self._clock()))
                return


def _frame_writer(session: Any) -> Callable[[str], Awaitable[None]]:
    """Write a frame on the session's websocket (the SDK keeps it as ``_ws``)."""
    socket = getattr(session, "_ws", None)
    if socket is not None:
        return socket.send
    # An SDK without that attribute: go through its public API, frame by frame.
    parse = json.loads

    async def through_sdk(frame: str) -> None:
        body = parse(frame)["realtime_input"]
        if "audio" in body:
            blob = types.Blob(data=base64.urlsafe_b64decode(body["audio"]["data"]), mime_type=INPUT_MIME)
            await session.send_realtime_input(audio=blob)
        elif "activityStart" in body:
            await session.send_realtime_input(activity_start=types.ActivityStart())
        else:
            await session.send_realtime_input(activity_end=types.ActivityEnd())

    return through_sdk


def _api_error_text(exc: errors.APIError) -> str:
    # A websocket close carries its reason in ``details`` (a string), not ``message``: it is
    # what says why the server refused (an invalid key, a spent or expired token).
    details = exc.details if isinstance(exc.details, str) else ""
    message = " ".join(str(exc.message or exc.status or details or "").split())
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{exc.code} {message}".strip() if message else str(exc.code)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."

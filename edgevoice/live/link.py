"""The Live connection: connections opened through the SDK door (:mod:`edgevoice.live.sdk`).

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
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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
    ServerAudio,
    ServerProblem,
)
from edgevoice.live import sdk
from edgevoice.live.messages import RecentCallIds, events_from_message
from edgevoice.live.sdk import (
    ACTIVITY_END_FRAME,
    ACTIVITY_START_FRAME,
    LinkError,
    UnreadableFrame,
    audio_frame,
)
from edgevoice.live.session_config import SessionSetup, build_setup
from edgevoice.metrics import NO_METRICS, Metrics

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 1.0
# Frames in a row the SDK cannot parse before the connection is declared broken.
MAX_BAD_FRAMES = 20

# What the link writes as frames of its own (the rest goes through the SDK's methods).
_FRAMES = (SendAudio, SendActivityStart, SendActivityEnd)
_MARKERS = {SendActivityStart: ACTIVITY_START_FRAME, SendActivityEnd: ACTIVITY_END_FRAME}


def _frame(action: SendAudio | SendActivityStart | SendActivityEnd) -> str:
    return audio_frame(action.pcm) if isinstance(action, SendAudio) else _MARKERS[type(action)]

CredentialSource = Callable[[], Awaitable[str]]
# Plain function declarations, as the Live API spells them (edgevoice.tools makes them).
FunctionDeclarations = Sequence[Mapping[str, Any]]

__all__ = [
    "ACTIVITY_END_FRAME",
    "ACTIVITY_START_FRAME",
    "CredentialError",
    "CredentialSource",
    "LiveLink",
    "audio_frame",
]


class CredentialError(Exception):
    """No usable credential for a connection (message says what to do)."""


@dataclass
class _Connection:
    link: int
    session: sdk.LiveSession
    outbox: asyncio.Queue[Action] = field(default_factory=asyncio.Queue)
    # Actions put in the outbox and not yet sent: a frame written at once must not pass them.
    queued: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Function calls already reported: the service can send one call twice (as toolCall
    # and inside the model turn).
    seen_calls: RecentCallIds = field(default_factory=RecentCallIds)


class _Unchanged:
    pass


_UNCHANGED = _Unchanged()


class LiveLink:
    def __init__(
        self,
        live: LiveSettings,
        *,
        credentials: CredentialSource,
        post: Callable[[Event], None],
        function_declarations: FunctionDeclarations = (),
        ssl_context: ssl.SSLContext | None = None,
        metrics: Metrics = NO_METRICS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        sdk.install()
        # Before the daemon reports ready: none of it on the loop in the first answer.
        sdk.warm_up()
        self._live = live
        self._credentials = credentials
        self._post = post
        self._declarations = [dict(d) for d in function_declarations]
        self._ssl_context = ssl_context
        self._metrics = metrics
        # Audio chunks received so far, on every connection: each chunk's number names it
        # to the speaker and the metrics.
        self._audio_chunks = 0
        self._clock = clock
        self._commands: asyncio.Queue[Connect | CloseLink | None] = asyncio.Queue()
        self._current: _Connection | None = None
        self._clients: dict[str, Any] = {}
        self._said: tuple[str, ...] = ()
        self.connects = 0

    # -- called by the daemon on the loop thread; never block ---------------------------------

    def update_settings(
        self,
        live: LiveSettings,
        *,
        ssl_context: ssl.SSLContext | _Unchanged | None = _UNCHANGED,
        function_declarations: FunctionDeclarations | None = None,
    ) -> None:
        """Use these settings (and, when given, this TLS context and these functions) from
        the next connection on."""
        if live.base_url != self._live.base_url or live.api_version != self._live.api_version:
            self._clients.clear()
        if not isinstance(ssl_context, _Unchanged):
            # A client keeps the context it was made with: the next connection needs a new one.
            self._ssl_context = ssl_context
            self._clients.clear()
        if function_declarations is not None:
            self._declarations = [dict(d) for d in function_declarations]
        self._live = live

    def connect(self, action: Connect) -> None:
        self._commands.put_nowait(action)

    def close(self, action: CloseLink) -> None:
        self._commands.put_nowait(action)

    def send(self, action: Action) -> None:
        current = self._current
        if current is None or current.link != getattr(action, "link", None):
            return
        # Audio and the activity markers go out at once when nothing is queued before them:
        # the frame leaves in this loop iteration, not the send task's next step.
        if not current.queued and isinstance(action, _FRAMES) and self._send_now(current, action):
            return
        current.queued += 1
        current.outbox.put_nowait(action)

    def _send_now(
        self, connection: _Connection, action: SendAudio | SendActivityStart | SendActivityEnd
    ) -> bool:
        try:
            if not connection.session.send_frame_now(_frame(action)):
                return False
        except LinkError as exc:
            self._down(connection.link, exc)
            return True
        self._sent(action)
        return True

    def _sent(self, action: SendAudio | SendActivityStart | SendActivityEnd) -> None:
        metrics = self._metrics
        if not metrics.enabled:
            return
        if isinstance(action, SendAudio):
            metrics.audio_sent(action.position, action.end, self._clock())
        elif isinstance(action, SendActivityEnd):
            metrics.activity_end_sent(action.utterance, self._clock())

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
        setup = build_setup(self._live, handle=command.handle, function_declarations=self._declarations)
        self._say_once(setup)
        try:
            session = await sdk.open_session(
                self._client_for(key), self._live.model, setup.config, timeout_s=CONNECT_TIMEOUT_S
            )
        except LinkError as exc:
            self._post(LinkFailed(link, exc.code, exc.reason, self._clock(), exc.cause))
            return
        except ValueError as exc:
            self._post(LinkFailed(link, None, f"the session setup was refused: {exc}"[:200], self._clock()))
            return
        except Exception as exc:
            # A bug in the SDK or here must not end the task that owns the connections.
            log.error("connection %d could not be opened", link, exc_info=True)
            self._post(LinkFailed(link, None, f"connecting failed: {_short(exc)}", self._clock()))
            return
        self.connects += 1
        connection = _Connection(link, session)
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
        await connection.session.close(CLOSE_TIMEOUT_S)

    def _say_once(self, setup: SessionSetup) -> None:
        """The assumed family and the settings left out, in the journal once per model."""
        notes: list[str] = []
        if not setup.exact_family:
            notes.append(
                f"unknown model {self._live.model}: treated as the {setup.family.name} family"
            )
        notes.extend(f"not sent to this model: {what}" for what in setup.dropped)
        if tuple(notes) != self._said:
            self._said = tuple(notes)
            for note in notes:
                log.warning("%s", note)

    def _client_for(self, key: str) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = sdk.make_client(
                key,
                base_url=self._live.base_url,
                api_version=self._live.api_version,
                ssl_context=self._tls(),
            )
            # One credential at a time: an ephemeral token is never used twice.
            self._clients = {key: client}
        return client

    def _tls(self) -> ssl.SSLContext:
        """The TLS context of every client until the settings change: loading a trust
        store is most of what making a client costs, and an ephemeral token needs a new
        client for each connection."""
        if self._ssl_context is None:
            self._ssl_context = sdk.default_tls_context()
        return self._ssl_context

    def _numbered(self, audio: ServerAudio) -> ServerAudio:
        self._audio_chunks += 1
        if self._metrics.enabled:
            self._metrics.reply_received(self._audio_chunks, audio.t)
        return replace(audio, chunk=self._audio_chunks)

    def _down(self, link: int, error: LinkError) -> None:
        self._post(LinkDown(link, error.code, error.reason, self._clock(), error.cause))

    async def _send_loop(self, connection: _Connection) -> None:
        session = connection.session
        while True:
            action = await connection.outbox.get()
            try:
                if isinstance(action, _FRAMES):
                    await session.send_frame(_frame(action))
                    self._sent(action)
                elif isinstance(action, SendToolResponses):
                    await session.send_tool_responses(action.results)
                elif isinstance(action, SendContext):
                    await session.send_context(action.text, turn_complete=action.turn_complete)
            except LinkError as exc:
                self._down(connection.link, exc)
                return
            except (ValueError, TypeError, RecursionError) as exc:
                # Our own message was refused by the SDK (a tool result it cannot encode):
                # a bug to log, not a reason to drop the conversation.
                log.error("could not send %s: %s", type(action).__name__, _short(exc))
            finally:
                connection.queued -= 1
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
                    for event in events_from_message(message, link, t, connection.seen_calls):
                        if isinstance(event, ServerAudio):
                            event = self._numbered(event)
                        self._post(event)
            except LinkError as exc:
                self._down(link, exc)
                return
            except UnreadableFrame as exc:
                # The frame is consumed; the connection may still be fine.
                bad_frames += 1
                self._post(ServerProblem(link, str(exc), self._clock()))
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


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."

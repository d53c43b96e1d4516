"""The emulator's I/O: a TLS websocket server that carries out :mod:`protocol`'s decisions.

:class:`Emulator` runs on the caller's asyncio loop; :class:`EmulatorThread` runs one on a
loop of its own in a thread, for clients that must not share a loop with it (the
benchmark, a subprocess). Both expose the recordings of :class:`protocol.EmulatorCore`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trustme
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from edgevoice_testbed.emulator.auth import Authenticator
from edgevoice_testbed.emulator.faults import Fault, parse_fault
from edgevoice_testbed.emulator.protocol import (
    Abort,
    Close,
    Connection,
    EmulatorCore,
    SendFrame,
    SendRaw,
)
from edgevoice_testbed.emulator.records import (
    ConnectionRecord,
    FaultRecord,
    HistoryEntry,
    ReceivedFrame,
    ReplyRecord,
    SentFrame,
    ToolCallRecord,
    ToolResponseRecord,
    UtteranceRecord,
)
from edgevoice_testbed.emulator.scenario import InjectSpec, Scenario
from edgevoice_testbed.emulator.voice import CachedVoice, make_voice

log = logging.getLogger(__name__)

# websockets logs request headers (the API key among them) at DEBUG; its logger for the
# emulator is pinned at WARNING so no debug setting elsewhere can leak a key.
_ws_log = logging.getLogger("edgevoice_testbed.emulator.websockets")
_ws_log.setLevel(logging.WARNING)

INTERNAL_ERROR = Close(1011, "Internal error encountered.")
DEFAULT_WAIT_TIMEOUT = 10.0
SHUTDOWN_TIMEOUT = 5.0


class _RecordViews:
    """Read access to the recordings, shared by :class:`Emulator` and :class:`EmulatorThread`."""

    def _get_core(self) -> EmulatorCore:
        raise NotImplementedError

    @property
    def received(self) -> list[ReceivedFrame]:
        return self._get_core().received

    @property
    def sent(self) -> list[SentFrame]:
        return self._get_core().sent

    @property
    def connections(self) -> list[ConnectionRecord]:
        return self._get_core().connections

    @property
    def utterances(self) -> list[UtteranceRecord]:
        return self._get_core().utterances

    @property
    def replies(self) -> list[ReplyRecord]:
        return self._get_core().replies

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return self._get_core().tool_calls

    @property
    def tool_responses(self) -> list[ToolResponseRecord]:
        return self._get_core().tool_responses

    @property
    def fired_faults(self) -> list[FaultRecord]:
        return self._get_core().fired_faults

    @property
    def rejected_handshakes(self) -> list[tuple[float, str, int]]:
        """(t, path, HTTP status) of every refused websocket upgrade."""
        return self._get_core().rejected_handshakes

    @property
    def issued_tokens(self) -> list[Any]:
        """Ephemeral tokens issued through the REST endpoint (:class:`auth.IssuedToken`)."""
        return self._get_core().issued_tokens

    @property
    def rest_requests(self) -> list[tuple[float, str, int]]:
        """(t, path, HTTP status) of every REST request."""
        return self._get_core().rest_requests

    @property
    def errors(self) -> list[str]:
        """Tracebacks of the emulator's own failures (a test can assert there are none)."""
        return self._get_core().errors

    @property
    def history(self) -> list[HistoryEntry]:
        """Conversation memory of the session of the latest accepted connection."""
        return self._get_core().history

    def messages(self, key: str, connection_id: int | None = None) -> list[dict[str, Any]]:
        """Sent JSON messages that have the top-level ``key`` (e.g. ``toolCall``)."""
        return [frame.message for frame in list(self.sent)
                if frame.message is not None and key in frame.message
                and (connection_id is None or frame.connection_id == connection_id)]


class Emulator(_RecordViews):
    """A local Gemini Live API server over TLS. Use as ``async with Emulator(...) as emu``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        *,
        authenticator: Authenticator | None = None,
        ping_interval: float | None = 20.0,
        close_timeout: float = 2.0,
        record_audio_frames: bool = True,
        rest_port: int = 0,
    ):
        self.scenario = scenario if scenario is not None else Scenario()
        self.host = host
        self.port = port
        self.rest_port = rest_port
        self._rest_runner: web.AppRunner | None = None
        self.clock = clock
        self._authenticator = authenticator
        self._ping_interval = ping_interval
        self._close_timeout = close_timeout
        self._record_audio_frames = record_audio_frames
        self._ca = trustme.CA()
        self._cert = self._ca.issue_cert("127.0.0.1", "localhost", "::1")
        self._core: EmulatorCore | None = None
        self._server: Server | None = None
        self._voice: CachedVoice | None = None
        self._wakes: dict[int, asyncio.Event] = {}
        self._connections: dict[int, ServerConnection] = {}
        self._change: asyncio.Event | None = None
        self._listeners: list[Callable[[], None]] = []

    def _get_core(self) -> EmulatorCore:
        if self._core is None:
            raise RuntimeError("the emulator is not running (use 'async with Emulator()')")
        return self._core

    # Lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def start(self) -> None:
        self._change = asyncio.Event()
        self._voice = make_voice(self.scenario.voice, self.scenario.espeak_voice)
        # Render every scripted text before serving, off the loop (espeak is a subprocess).
        await asyncio.to_thread(self._voice.prerender, sorted(self.scenario.spoken_texts()))
        self._core = EmulatorCore(self.scenario, self._voice.render, self._authenticator,
                                  self._record_audio_frames)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._cert.configure_cert(server_context)
        self._server = await serve(
            self._handle, self.host, self.port, ssl=server_context,
            process_request=self._process_request, ping_interval=self._ping_interval,
            close_timeout=self._close_timeout, max_size=16 * 2**20, logger=_ws_log,
            server_header="edgevoice-emulator",
        )
        self.port = self._server.sockets[0].getsockname()[1]
        await self._start_rest(server_context)
        log.info("Live API emulator listening on %s (REST on %s)", self.base_url, self.rest_base_url)

    async def _start_rest(self, context: ssl.SSLContext) -> None:
        # websockets serves GET upgrades only; the REST side (auth_tokens.create) needs a
        # POST with a body, so it gets its own listener with the same certificate.
        app = web.Application()
        app.router.add_post("/{version}/auth_tokens", self._rest_auth_tokens)
        self._rest_runner = web.AppRunner(app, access_log=None)
        await self._rest_runner.setup()
        site = web.TCPSite(self._rest_runner, self.host, self.rest_port, ssl_context=context)
        await site.start()
        self.rest_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _rest_auth_tokens(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        headers = {key.lower(): value for key, value in request.headers.items()}
        result = self._get_core().create_auth_token(
            request.match_info["version"], headers, body, datetime.now(UTC), self.clock())
        self._notify()
        return web.json_response(result.body, status=result.status)

    async def aclose(self) -> None:
        """Close every connection (1001), stop listening and wait for the handlers."""
        server, self._server = self._server, None
        if server is None:
            return
        rest, self._rest_runner = self._rest_runner, None
        if rest is not None:
            await rest.cleanup()
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.warning("emulator shutdown: aborting connections that did not close in time")
            for connection in list(self._connections.values()):
                connection.transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), SHUTDOWN_TIMEOUT)
        self._notify()

    # Client helpers --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def rest_base_url(self) -> str:
        """Base URL of the REST side (``auth_tokens``): a client's ``http_options.base_url``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.rest_port}"

    def arm_injections(self, injections: list[InjectSpec | dict[str, Any]], *,
                       replace: bool = False) -> None:
        """Send raw frames once, at their placements in the next reply to an utterance."""
        self._get_core().arm_injections(_inject_specs(injections), replace=replace)

    def set_scenario(self, scenario: Scenario) -> None:
        """Answer from ``scenario`` from now on (connections already open included)."""
        self.scenario = scenario
        core = self._get_core()
        core.scenario = scenario
        for connection in core.live_connections():
            connection.scenario = scenario

    def client_ssl_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this emulator's certificate authority."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM) for a client in another process."""
        path = Path(path)
        self._ca.cert_pem.write_to_path(str(path))
        return path

    def wake(self) -> None:
        """Re-check every connection's timers now (after moving an :class:`OffsetClock`)."""
        for wake in self._wakes.values():
            wake.set()
        self._notify()

    def end_refusal(self) -> None:
        """Let a test decide when the outage of a ``refuse`` fault ends."""
        self._get_core().end_refusal()
        self._notify()

    def inject_fault(self, fault: Fault | str) -> None:
        """Make ``fault`` happen at its trigger, or now if it has none."""
        if isinstance(fault, str):
            fault = parse_fault(fault)
        self._get_core().inject_fault(fault, self.clock())
        for wake in self._wakes.values():
            wake.set()
        self._notify()

    async def wait_for(
        self,
        predicate: Callable[[Emulator], bool],
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 (the shared test API)
    ) -> None:
        """Return once ``predicate(self)`` holds; TimeoutError after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; {self.summary()}")
            assert self._change is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._change.wait(), remaining)

    def summary(self) -> str:
        """One line on what happened so far (for timeout messages)."""
        core = self._core
        if core is None:
            return "not running"
        return (f"connections={len(core.connections)} received={len(core.received)} "
                f"sent={len(core.sent)} utterances={len(core.utterances)} "
                f"replies={len(core.replies)} tool_calls={len(core.tool_calls)} "
                f"tool_responses={len(core.tool_responses)} faults={len(core.fired_faults)} "
                f"errors={len(core.errors)}")

    def _notify(self) -> None:
        if self._change is not None:
            self._change.set()
            self._change = asyncio.Event()
        for listener in list(self._listeners):
            listener()

    # Connections -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        reject = self._get_core().check_handshake(request.path, self.clock())
        if reject is None:
            return None
        self._notify()
        return connection.respond(reject.status, reject.body + "\n")

    async def _handle(self, websocket: ServerConnection) -> None:
        core = self._get_core()
        connection = core.open_connection(websocket.request.path, websocket.request.headers,
                                          self.clock())
        connection_id = connection.record.id
        wake = asyncio.Event()
        self._wakes[connection_id] = wake
        self._connections[connection_id] = websocket
        aborted = [False]
        self._delay_pongs(websocket, core)
        self._notify()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._read(websocket, connection, wake, aborted))
                tasks.create_task(self._drive(websocket, connection, wake, aborted))
        except* Exception as group:
            for error in group.exceptions:
                self._record_error(connection, error)
            websocket.transport.abort()
        finally:
            self._wakes.pop(connection_id, None)
            self._connections.pop(connection_id, None)
            if not connection.finished:
                connection.connection_lost(self.clock(), 1006, "", "lost")
            self._notify()

    async def _read(self, websocket: ServerConnection, connection: Connection,
                    wake: asyncio.Event, aborted: list[bool]) -> None:
        try:
            async for message in websocket:
                try:
                    connection.receive(message, self.clock())
                except Exception as error:  # an emulator bug must not take the server down
                    self._record_error(connection, error)
                    connection.terminate(INTERNAL_ERROR)
                wake.set()
                self._notify()
        except ConnectionClosed:
            pass
        finally:
            code, reason, closed_by = _close_info(websocket, aborted[0])
            connection.connection_lost(self.clock(), code, reason, closed_by)
            wake.set()
            self._notify()

    async def _drive(self, websocket: ServerConnection, connection: Connection,
                     wake: asyncio.Event, aborted: list[bool]) -> None:
        while not connection.finished:
            wake.clear()
            try:
                actions = connection.poll(self.clock())
            except Exception as error:
                self._record_error(connection, error)
                connection.terminate(INTERNAL_ERROR)
                actions = [INTERNAL_ERROR]
            if actions:
                self._notify()
            try:
                for action in actions:
                    if isinstance(action, SendFrame):
                        await websocket.send(
                            action.text.encode("utf-8") if action.binary else action.text)
                    elif isinstance(action, SendRaw):
                        await websocket.send(action.data)
                    elif isinstance(action, Close):
                        await websocket.close(action.code, action.reason)
                    elif isinstance(action, Abort):
                        aborted[0] = True
                        websocket.transport.abort()
            except ConnectionClosed:
                pass  # the reader reports the end of the connection
            deadline = connection.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            if timeout == 0.0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    @staticmethod
    def _delay_pongs(websocket: ServerConnection, core: EmulatorCore) -> None:
        """Answer pings ``core.pong_delay_s`` late, as the real service does (8-30 s).

        websockets answers a ping inside its sans-IO protocol; the pong frame is held back
        there and written later, so the client sees exactly a slow server."""
        protocol = websocket.protocol
        send_frame = protocol.send_frame

        def send_frame_late(frame: Frame) -> None:
            delay = core.pong_delay_s
            if frame.opcode is not Opcode.PONG or delay <= 0:
                send_frame(frame)
                return

            def send_now() -> None:
                if protocol.state is State.OPEN:
                    send_frame(frame)
                    websocket.send_data()

            asyncio.get_running_loop().call_later(delay, send_now)

        protocol.send_frame = send_frame_late  # type: ignore[method-assign]

    def _record_error(self, connection: Connection, error: BaseException) -> None:
        text = "".join(traceback.format_exception(error))
        log.error("emulator error on connection %d:\n%s", connection.record.id, text)
        connection.record.error = repr(error)
        self._get_core().errors.append(text)


def _inject_specs(injections: list[InjectSpec | dict[str, Any]]) -> list[InjectSpec]:
    return [item if isinstance(item, InjectSpec) else InjectSpec.model_validate(item)
            for item in injections]


def _close_info(websocket: ServerConnection, aborted: bool) -> tuple[int, str, str]:
    protocol = websocket.protocol
    received, sent = protocol.close_rcvd, protocol.close_sent
    if aborted:
        return 1006, "", "abort"
    if sent is not None and (received is None or protocol.close_rcvd_then_sent is False):
        return sent.code, sent.reason, "server"
    if received is not None:
        return received.code, received.reason, "client"
    return 1006, "", "lost"


class EmulatorThread(_RecordViews):
    """An :class:`Emulator` on its own loop in a thread: ``with EmulatorThread() as emu:``.

    Same attributes as :class:`Emulator`; :meth:`wait_for` blocks the calling thread.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ):
        self._emulator = Emulator(scenario, host, port, clock, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._changed = threading.Condition()
        self._startup_error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _get_core(self) -> EmulatorCore:
        return self._emulator._get_core()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._run, name="edgevoice-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the emulator thread did not start within {timeout} s")
        if self._startup_error is not None:
            raise RuntimeError("the emulator failed to start") from self._startup_error

    def stop(self, timeout: float = 15.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the emulator thread did not stop within %s s", timeout)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self._emulator.start()
        except BaseException as error:
            self._startup_error = error
            self._ready.set()
            return
        self._emulator._listeners.append(self._on_change)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._emulator.aclose()

    def _on_change(self) -> None:
        with self._changed:
            self._changed.notify_all()

    @property
    def base_url(self) -> str:
        return self._emulator.base_url

    @property
    def port(self) -> int:
        return self._emulator.port

    @property
    def scenario(self) -> Scenario:
        return self._emulator.scenario

    @property
    def rest_base_url(self) -> str:
        return self._emulator.rest_base_url

    def client_ssl_context(self) -> ssl.SSLContext:
        return self._emulator.client_ssl_context()

    def write_ca(self, path: str | Path) -> Path:
        return self._emulator.write_ca(path)

    def summary(self) -> str:
        return self._emulator.summary()

    def inject_fault(self, fault: Fault | str, timeout: float = 5.0) -> None:
        if isinstance(fault, str):
            fault = parse_fault(fault)
        self._call(lambda: self._emulator.inject_fault(fault), timeout, "the fault")

    def end_refusal(self, timeout: float = 5.0) -> None:
        """As :meth:`Emulator.end_refusal`, from another thread."""
        self._call(self._emulator.end_refusal, timeout, "the end of the refusal")

    def arm_injections(self, injections: list[InjectSpec | dict[str, Any]], *,
                       replace: bool = False, timeout: float = 5.0) -> None:
        """As :meth:`Emulator.arm_injections`, from another thread."""
        specs = _inject_specs(injections)
        self._call(lambda: self._emulator.arm_injections(specs, replace=replace), timeout,
                   "the injections")

    def _call(self, function: Callable[[], None], timeout: float, what: str) -> None:
        if self._loop is None:
            raise RuntimeError("the emulator thread is not running")
        done = threading.Event()

        def run() -> None:
            try:
                function()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(timeout):
            raise TimeoutError(f"the emulator thread did not take {what}")

    def wait_for(self, predicate: Callable[[EmulatorThread], bool],
                 timeout: float = DEFAULT_WAIT_TIMEOUT) -> None:
        """Block until ``predicate(self)`` holds; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s; {self.summary()}")
                self._changed.wait(remaining)

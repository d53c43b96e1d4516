"""LiveLink through the real SDK over a real TLS websocket: what the real service does at
the edges (refusals, closes with its own words, odd frames) becomes the right event."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from typing import Any

import pytest
import pytest_asyncio

from edgevoice.config import LiveSettings
from edgevoice.core.events import (
    Connect,
    DownCause,
    Event,
    LinkDown,
    LinkFailed,
    LinkUp,
    ResumptionUpdate,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    ServerAudio,
    ServerProblem,
    ToolCallsReceived,
    ToolResult,
    TurnComplete,
)
from edgevoice.live import sdk
from edgevoice.live.link import LiveLink
from tests.live.raw_server import RawLiveServer, google_error

KEY = "AIzaSy-test-key-that-must-never-be-logged"
TIMEOUT = 10.0


class Events:
    """What the link posted, with a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._changed = asyncio.Event()

    def post(self, event: Event) -> None:
        self.seen.append(event)
        self._changed.set()

    async def first(self, kind: type, where: Callable[[Any], bool] = lambda _e: True) -> Any:
        async def wait() -> Any:
            while True:
                for event in self.seen:
                    if isinstance(event, kind) and where(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), TIMEOUT)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.seen if isinstance(e, kind)]


@pytest_asyncio.fixture
async def running() -> AsyncIterator[Callable[..., Any]]:
    """``await start(server, model=...)`` gives (link, events) with connection 1 asked for."""
    links: list[tuple[LiveLink, asyncio.Task[None]]] = []

    async def start(server: RawLiveServer, **live: Any) -> tuple[LiveLink, Events]:
        events = Events()

        async def credentials() -> str:
            return KEY

        link = LiveLink(
            LiveSettings(base_url=server.base_url, **live),
            credentials=credentials,
            post=events.post,
            ssl_context=server.client_ssl_context(),
        )
        task = asyncio.create_task(link.run())
        links.append((link, task))
        link.connect(Connect(1, None))
        return link, events

    yield start
    for link, task in links:
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)


# -- refusals and closes in the service's own words ------------------------------------------


async def test_http_429_at_the_upgrade_is_quota_exhausted(running):
    body = google_error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.")
    async with RawLiveServer(refuse=(HTTPStatus.TOO_MANY_REQUESTS, body)) as server:
        _link, events = await running(server)
        failed = await events.first(LinkFailed)
    assert failed.code == 429
    assert failed.cause is DownCause.QUOTA_EXHAUSTED
    assert "quota exhausted" in failed.reason and "RESOURCE_EXHAUSTED" in failed.reason
    assert server.upgrades == 1


async def test_a_retired_model_is_model_not_found(running):
    # A close reason holds at most 123 bytes: the service's sentence, as it arrives.
    text = (
        "models/gemini-2.0-flash-live-001 is not found for API version v1beta, "
        "or is not supported for bidiGenerateContent."
    )

    async def close(ws, setup):
        await ws.close(1008, text)

    async with RawLiveServer(close, send_setup_complete=False) as server:
        _link, events = await running(server, model="gemini-2.0-flash-live-001")
        failed = await events.first(LinkFailed)
    assert (failed.code, failed.cause) == (1008, DownCause.MODEL_NOT_FOUND)
    assert "gemini-2.0-flash-live-001" in failed.reason and "live.model" in failed.reason


async def test_an_expired_key_names_the_key_setting_but_never_the_key(running):
    async def close(ws, setup):
        await ws.close(1007, "API key expired. Please renew the API key.")

    async with RawLiveServer(close, send_setup_complete=False) as server:
        _link, events = await running(server)
        failed = await events.first(LinkFailed)
    assert (failed.code, failed.cause) == (1007, DownCause.KEY_REJECTED)
    assert "GEMINI_API_KEY" in failed.reason and "expired" in failed.reason
    assert KEY not in failed.reason


async def test_an_expired_key_mid_session_is_key_rejected_too(running):
    async def close(ws, setup):
        await asyncio.sleep(0)
        await ws.close(1007, "API key expired. Please renew the API key.")

    async with RawLiveServer(close) as server:
        _link, events = await running(server)
        down = await events.first(LinkDown)
    assert (down.code, down.cause) == (1007, DownCause.KEY_REJECTED)


async def test_an_ordinary_close_is_a_lost_link(running):
    async def close(ws, setup):
        await ws.close(1011, "Internal error encountered.")

    async with RawLiveServer(close) as server:
        _link, events = await running(server)
        down = await events.first(LinkDown)
    assert (down.code, down.cause) == (1011, DownCause.LOST)
    assert "Internal error encountered." in down.reason


async def test_a_frame_over_the_size_limit_is_a_lost_link_not_a_parse_loop(running, monkeypatch):
    monkeypatch.setattr(sdk, "MAX_FRAME_BYTES", 64 * 1024)
    big = json.dumps({"serverContent": {"outputTranscription": {"text": "x" * 100_000}}})

    async def oversized(ws, setup):
        await ws.send(big)

    async with RawLiveServer(oversized) as server:
        _link, events = await running(server)
        down = await events.first(LinkDown)
    assert down.cause is DownCause.FRAME_TOO_LARGE
    assert down.code == 1009
    assert not events.of(ServerProblem)


# -- frames the service sends that the SDK alone would mishandle -------------------------------


def function_call(call_id: str, name: str = "set_light") -> dict[str, Any]:
    return {"id": call_id, "name": name, "args": {"entity": "kitchen light", "on": True}}


def in_model_turn(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"parts": list(parts)}}}


async def test_one_call_sent_as_tool_call_and_in_the_model_turn_is_one_event(running):
    async def twice(ws, setup):
        await ws.send(json.dumps(in_model_turn({"functionCall": function_call("c1")})))
        await ws.send(json.dumps({"toolCall": {"functionCalls": [function_call("c1")]}}))
        # Both at once in one frame, and a call that only ever comes in the model turn.
        both = in_model_turn({"functionCall": function_call("c2")})
        both["toolCall"] = {"functionCalls": [function_call("c2")]}
        await ws.send(json.dumps(both))
        await ws.send(json.dumps(in_model_turn({"functionCall": function_call("c3")})))
        await ws.send(json.dumps({"serverContent": {"turnComplete": True}}))

    async with RawLiveServer(twice) as server:
        _link, events = await running(server)
        await events.first(TurnComplete)
    ids = [call.id for received in events.of(ToolCallsReceived) for call in received.calls]
    assert ids == ["c1", "c2", "c3"]


async def test_resumption_update_without_a_handle_is_not_resumable(running):
    async def updates(ws, setup):
        await ws.send(json.dumps({"sessionResumptionUpdate": {"resumable": False}}))
        await ws.send(json.dumps({"sessionResumptionUpdate": {"newHandle": "h-2", "resumable": True}}))

    async with RawLiveServer(updates) as server:
        _link, events = await running(server)
        await events.first(ResumptionUpdate, lambda e: e.resumable)
        assert not events.of(ServerProblem) and not events.of(LinkDown)
    updates_seen = [(u.handle, u.resumable) for u in events.of(ResumptionUpdate)]
    assert updates_seen == [(None, False), ("h-2", True)]


async def test_the_servers_error_frame_is_reported_with_its_message(running):
    error = google_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")

    async def error_then_audio(ws, setup):
        await ws.send(json.dumps(error))
        pcm = base64.b64encode(b"\x01\x00" * 240).decode()
        audio = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": pcm}}
        await ws.send(json.dumps(in_model_turn(audio)))

    async with RawLiveServer(error_then_audio) as server:
        _link, events = await running(server)
        await events.first(ServerAudio)
        assert not events.of(LinkDown)  # the connection survived the frame
    (problem,) = events.of(ServerProblem)
    assert "Request contains an invalid argument." in problem.description
    assert "INVALID_ARGUMENT" in problem.description


# -- what goes out ----------------------------------------------------------------------------


async def test_tool_results_and_context_reach_the_wire_as_the_sdk_writes_them(running):
    async with RawLiveServer() as server:
        link, events = await running(server)
        await events.first(LinkUp)
        link.send(SendToolResponses(1, (ToolResult("c1", "set_light", {"ok": True}, "WHEN_IDLE", 0.0),)))
        link.send(SendContext(1, "Earlier you turned the light on.", True))
        link.send(SendActivityStart(1, 1))
        # shutdown() lets queued sends go out before it closes the connection.
        await link.shutdown()
        await asyncio.wait_for(server.read_all.wait(), TIMEOUT)
    _setup, tool, context, start = server.frames[:4]
    assert tool == {"tool_response": {"functionResponses": [
        {"id": "c1", "name": "set_light", "response": {"ok": True}, "scheduling": "WHEN_IDLE"}
    ]}}
    assert context["client_content"]["turns"][0]["parts"] == [{"text": "Earlier you turned the light on."}]
    assert context["client_content"]["turnComplete"] is True
    assert start == {"realtime_input": {"activityStart": {}}}


@pytest.fixture
def wire() -> Iterator[list[str]]:
    """The client's frames, as the tap sees them leave."""
    sent: list[str] = []
    sdk.set_frame_observer(lambda side, frame, _t: sent.append(frame) if side == "client" else None)
    yield sent
    sdk.set_frame_observer(None)


async def test_audio_and_activity_markers_leave_before_send_returns(running, wire):
    async with RawLiveServer() as server:
        link, events = await running(server)
        await events.first(LinkUp)
        setup_frames = len(wire)
        link.send(SendActivityStart(1, 1))
        link.send(SendAudio(1, b"\x01\x02" * 320, 0))
        link.send(SendActivityEnd(1, 1))
        # Written in this loop iteration, not when the send task next runs.
        assert wire[setup_frames:] == [sdk.ACTIVITY_START_FRAME, sdk.audio_frame(b"\x01\x02" * 320),
                                       sdk.ACTIVITY_END_FRAME]
        await link.shutdown()
        await asyncio.wait_for(server.read_all.wait(), TIMEOUT)
    kinds = [next(iter(f["realtime_input"])) for f in server.frames[1:]]
    assert kinds == ["activityStart", "audio", "activityEnd"]


async def test_a_frame_never_passes_one_queued_before_it(running, wire):
    async with RawLiveServer() as server:
        link, events = await running(server)
        await events.first(LinkUp)
        link.send(SendToolResponses(1, (ToolResult("c1", "set_light", {"ok": True}, "WHEN_IDLE", 0.0),)))
        link.send(SendActivityStart(1, 2))
        link.send(SendAudio(1, b"\x00\x00" * 320, 0))
        assert sdk.ACTIVITY_START_FRAME not in wire  # behind the tool response, in the outbox
        await link.shutdown()
        await asyncio.wait_for(server.read_all.wait(), TIMEOUT)
    kinds = [next(iter(f.get("realtime_input") or f)) for f in server.frames[1:]]
    assert kinds == ["tool_response", "activityStart", "audio"]


async def test_a_socket_that_cannot_take_more_gets_the_frame_once_it_drains(running, wire):
    async with RawLiveServer() as server:
        link, events = await running(server)
        await events.first(LinkUp)
        ws = link._current.session.socket.ws
        ws.pause_writing()  # what asyncio calls when the transport's buffer is full
        link.send(SendAudio(1, b"\x03\x00" * 320, 0))
        assert sdk.audio_frame(b"\x03\x00" * 320) not in wire
        ws.resume_writing()
        await link.shutdown()
        await asyncio.wait_for(server.read_all.wait(), TIMEOUT)
    assert [f["realtime_input"]["audio"]["data"] for f in server.frames[1:]] == [
        base64.urlsafe_b64encode(b"\x03\x00" * 320).decode()
    ]


async def test_one_tls_context_serves_every_connection_and_honours_ssl_cert_file(
    tmp_path, monkeypatch
):
    # As with ephemeral tokens: a new credential, hence a new client, per connection. The
    # trust store is loaded once (what the SDK would trust: here SSL_CERT_FILE), not per client.
    built: list[object] = []
    default_tls_context = sdk.default_tls_context

    def counted() -> object:
        built.append(default_tls_context())
        return built[-1]

    monkeypatch.setattr(sdk, "default_tls_context", counted)
    events = Events()
    tokens = iter(f"key-of-connection-{n}" for n in range(1, 10))

    async def credentials() -> str:
        return next(tokens)

    async with RawLiveServer() as server:
        ca_file = tmp_path / "ca.pem"
        server.write_ca(ca_file)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        link = LiveLink(LiveSettings(base_url=server.base_url), credentials=credentials, post=events.post)
        task = asyncio.create_task(link.run())
        for n in (1, 2, 3):
            link.connect(Connect(n, None))
            await events.first(LinkUp, lambda e, n=n: e.link == n)
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)
        assert server.upgrades == 3
    assert len(built) == 1
    assert not events.of(LinkFailed)


async def test_keepalive_survives_pongs_that_take_30_seconds(running):
    async with RawLiveServer() as server:
        link, events = await running(server)
        await events.first(LinkUp)
        socket = link._current.session.socket
        assert isinstance(socket, sdk.TappedSocket)
        # The service's pongs have been measured at up to 30 s.
        assert socket.ws.ping_timeout == sdk.PING_TIMEOUT_S > 30
        assert socket.ws.ping_interval == sdk.PING_INTERVAL_S


@pytest.mark.parametrize(
    ("model", "behavior"),
    [
        ("gemini-3.8-live", "NON_BLOCKING"),
        ("gemini-2.5-flash-native-audio-preview-12-2025", "NON_BLOCKING"),
        ("gemini-3.1-flash-live-preview", None),
    ],
)
async def test_the_setup_frame_follows_the_family(model, behavior):
    events = Events()
    declaration = {
        "name": "set_light",
        "description": "Switch a light.",
        "parameters": {
            "type": "OBJECT",
            "properties": {"entity": {"type": "STRING"}},
            "required": ["entity"],
        },
    }

    async def credentials() -> str:
        return KEY

    async with RawLiveServer() as server:
        link = LiveLink(
            LiveSettings(
                base_url=server.base_url,
                model=model,
                thinking_budget=0,
                proactive_audio=False,
                affective_dialog=True,
            ),
            credentials=credentials,
            post=events.post,
            function_declarations=[declaration],
            ssl_context=server.client_ssl_context(),
        )
        task = asyncio.create_task(link.run())
        link.connect(Connect(1, None))
        await events.first(LinkUp)
        await link.shutdown()
        await asyncio.wait_for(task, TIMEOUT)
    setup = server.frames[0]["setup"]
    assert setup["model"] == f"models/{model}"
    (wire,) = setup["tools"][0]["functionDeclarations"]
    assert wire.get("behavior") == behavior
    assert wire["parameters"]["properties"]["entity"]["type"] == "STRING"
    generation = setup.get("generationConfig", {})
    if model == "gemini-3.8-live":
        assert "thinkingConfig" not in generation and "thinking_config" not in generation
        assert "proactivity" not in setup and "enableAffectiveDialog" not in generation
        assert "enable_affective_dialog" not in json.dumps(setup)
    else:
        assert json.dumps(setup).count("thinking") >= 1
        assert "proactiv" in json.dumps(setup).lower()
        assert "affective" in json.dumps(setup).lower()

"""The SDK door: its frames are the SDK's, its check fails loudly, its error table maps what
the service says to the right cause, and the retry plans never hammer."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading

import pytest
from google.genai import errors, live, types
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from edgevoice.config import LiveSettings
from edgevoice.core.backoff import RETRY_PLANS, Backoff, retry_plan
from edgevoice.core.events import DownCause
from edgevoice.live import sdk
from edgevoice.live.messages import RecentCallIds
from edgevoice.live.sdk import (
    ACTIVITY_END_FRAME,
    ACTIVITY_START_FRAME,
    INPUT_MIME,
    LinkError,
    audio_frame,
    down_cause,
    error_frame_text,
    link_error,
)
from edgevoice.live.session_config import build_setup
from edgevoice.live.trace import TraceFile

# -- the frames written past the SDK ----------------------------------------------------------


class RecordingSocket:
    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send(self, frame: str) -> None:
        self.frames.append(frame)


class _Client:
    vertexai = False


def sdk_frame(**kwargs: object) -> str:
    socket = RecordingSocket()
    session = live.AsyncSession(api_client=_Client(), websocket=socket)
    asyncio.run(session.send_realtime_input(**kwargs))
    return socket.frames[0]


@pytest.mark.parametrize("size", [0, 1, 2, 640, 641, 9600])
def test_the_audio_frame_is_byte_for_byte_the_sdks(size):
    pcm = os.urandom(size)
    assert audio_frame(pcm) == sdk_frame(audio=types.Blob(data=pcm, mime_type=INPUT_MIME))


def test_activity_frames_are_the_sdks():
    assert sdk_frame(activity_start=types.ActivityStart()) == ACTIVITY_START_FRAME
    assert sdk_frame(activity_end=types.ActivityEnd()) == ACTIVITY_END_FRAME


# -- the check on the SDK's private parts --------------------------------------------------------


def test_the_installed_sdk_passes_the_check():
    sdk.check_sdk()
    assert sdk.SDK_VERSION != "unknown"


def test_an_sdk_without_ws_connect_is_refused_naming_its_version():
    class ChangedLive:
        AsyncSession = live.AsyncSession

    with pytest.raises(sdk.SdkMismatch) as caught:
        sdk.check_sdk(ChangedLive, "3.9.0")
    message = str(caught.value)
    assert "google-genai 3.9.0" in message and "ws_connect" in message
    assert sdk.SDK_REQUIREMENT in message and sdk.TESTED_SDK_VERSIONS in message


def test_an_sdk_whose_session_keeps_its_socket_elsewhere_is_refused():
    class Session:
        def __init__(self, api_client: object, websocket: object) -> None:
            self._websocket = websocket

    class ChangedLive:
        ws_connect = live.ws_connect
        AsyncSession = Session

    with pytest.raises(sdk.SdkMismatch, match=r"3\.9\.0 .*_ws"):
        sdk.check_sdk(ChangedLive, "3.9.0")


def test_the_tap_is_where_the_sdk_connects():
    sdk.install()
    assert live.ws_connect is sdk._TappedConnect


# -- the error table ---------------------------------------------------------------------------

RETIRED = (
    "models/gemini-2.0-flash-live-001 is not found for API version v1beta, "
    "or is not supported for bidiGenerateContent"
)


@pytest.mark.parametrize(
    ("code", "text", "cause"),
    [
        (429, "the server refused the connection (HTTP 429): RESOURCE_EXHAUSTED", DownCause.QUOTA_EXHAUSTED),
        (1011, "RESOURCE_EXHAUSTED: quota exceeded for the day", DownCause.QUOTA_EXHAUSTED),
        (1011, "RESOURCE_EXHAUSTED: Maximum concurrent sessions", DownCause.LOST),
        (1008, RETIRED, DownCause.MODEL_NOT_FOUND),
        (1008, "Operation is not implemented, or supported, or enabled.", DownCause.LOST),
        (1008, "The operation was aborted.", DownCause.LOST),
        (1007, "API key expired. Please renew the API key.", DownCause.KEY_REJECTED),
        (1007, "API key not valid. Please pass a valid API key.", DownCause.KEY_REJECTED),
        (1007, "Request contains an invalid argument.", DownCause.LOST),
        (1007, "Precondition check failed.", DownCause.LOST),
        (403, "the server refused the connection (HTTP 403)", DownCause.LOST),
        (404, "the server refused the connection (HTTP 404): Not Found", DownCause.LOST),
        (1008, "The ephemeral token has expired.", DownCause.LOST),
        (1007, "Token expired.", DownCause.LOST),
        (1009, "message too big", DownCause.FRAME_TOO_LARGE),
        (1011, "Deadline expired before operation could complete.", DownCause.LOST),
        (1006, "Abnormal closure.", DownCause.LOST),
        (None, "no answer from the server", DownCause.LOST),
    ],
)
def test_down_cause_table(code, text, cause):
    assert down_cause(code, text) is cause


def test_a_close_from_the_sdk_keeps_its_code_and_words():
    error = link_error(errors.APIError(1008, RETIRED), model="gemini-2.0-flash-live-001")
    assert isinstance(error, LinkError)
    assert (error.code, error.cause) == (1008, DownCause.MODEL_NOT_FOUND)
    assert "gemini-2.0-flash-live-001" in error.reason and "is not found" in error.reason


def test_a_refused_upgrade_carries_the_status_and_googles_words():
    body = json.dumps({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED"}})
    response = Response(429, "Too Many Requests", Headers(), body.encode())
    error = link_error(InvalidStatus(response))
    assert (error.code, error.cause) == (429, DownCause.QUOTA_EXHAUSTED)
    assert "HTTP 429" in error.reason and "Quota exceeded." in error.reason


def test_our_own_1009_close_is_a_frame_too_large():
    closed = ConnectionClosedError(None, Close(1009, "frame exceeds limit"))
    error = link_error(closed)
    assert (error.code, error.cause) == (1009, DownCause.FRAME_TOO_LARGE)


def test_errors_that_are_not_about_the_connection_are_not_mapped():
    assert link_error(KeyError("x")) is None
    assert link_error(ValueError("x")) is None


def test_the_servers_error_frame_gives_its_message():
    error = {"code": 400, "message": "Bad  request\n here.", "status": "INVALID_ARGUMENT"}
    frame = json.dumps({"error": error})
    assert error_frame_text(frame) == "400 INVALID_ARGUMENT Bad request here."
    assert error_frame_text(b'{"error": {}}') == "no details"
    for not_an_error in ('{"serverContent": {}}', "[1]", "not json", None, b"\xff", '{"error": "text"}'):
        assert error_frame_text(not_an_error) is None


# -- retry plans ----------------------------------------------------------------------------------


def test_every_cause_has_a_plan():
    assert set(RETRY_PLANS) == set(DownCause)
    assert retry_plan("something new") is RETRY_PLANS[DownCause.LOST]


@pytest.mark.parametrize("failures", [1, 2, 5, 50, 10_000])
def test_slow_causes_never_retry_quickly(failures):
    ordinary = Backoff(0.25, 5.0, rng=random.Random(1))
    assert retry_plan(DownCause.QUOTA_EXHAUSTED).delay(failures, ordinary) >= 60
    assert retry_plan(DownCause.KEY_REJECTED).delay(failures, ordinary) >= 600
    assert retry_plan(DownCause.MODEL_NOT_FOUND).delay(failures, ordinary) >= 3600 * 0.75
    assert 1 <= retry_plan(DownCause.FRAME_TOO_LARGE).delay(failures, ordinary) <= 120


def test_a_lost_link_keeps_the_ordinary_backoff():
    ordinary = Backoff(0.25, 5.0, rng=random.Random(1))
    assert retry_plan(DownCause.LOST).delay(0, ordinary) == 0
    assert retry_plan(DownCause.LOST).delay(30, ordinary) <= 5.0


def test_each_slow_cause_has_a_status():
    for cause in DownCause:
        assert bool(retry_plan(cause).status) == (cause is not DownCause.LOST)
    assert retry_plan(DownCause.QUOTA_EXHAUSTED).status == "quota exhausted"


# -- the setup per family --------------------------------------------------------------------------

OPTIONS = {"thinking_budget": 0, "proactive_audio": False, "affective_dialog": True}


def test_3_8_gets_no_thinking_no_proactive_audio_off_no_affective_dialog():
    setup = build_setup(LiveSettings(model="gemini-3.8-live", **OPTIONS), handle=None)
    assert not {"thinking_config", "proactivity", "enable_affective_dialog"} & set(setup.config)
    assert len(setup.dropped) == 3
    sdk.connect_config(setup.config)  # the SDK takes it


def test_2_5_gets_the_options_it_takes():
    setup = build_setup(
        LiveSettings(model="gemini-2.5-flash-native-audio-preview-12-2025", **OPTIONS), handle="h"
    )
    config = sdk.connect_config(setup.config)
    assert config.thinking_config.thinking_budget == 0
    assert config.proactivity.proactive_audio is False
    assert config.enable_affective_dialog is True
    assert config.session_resumption.handle == "h"
    assert setup.dropped == ()


def test_an_unknown_model_says_its_family_was_guessed():
    setup = build_setup(LiveSettings(model="gemini-3.2-flash-live-preview"), handle=None)
    assert (setup.family.name, setup.exact_family) == ("gemini-3.1-flash-live", False)


def test_the_default_model_is_3_8():
    setup = build_setup(LiveSettings(), handle=None)
    assert (setup.family.name, setup.exact_family) == ("gemini-3.8-live", True)


# -- small parts -----------------------------------------------------------------------------------


def test_recent_call_ids_remember_a_bounded_number():
    seen = RecentCallIds(capacity=3)
    assert [seen.first_time(i) for i in "abca"] == [True, True, True, False]
    for i in "defg":
        seen.first_time(i)
    assert len(seen) == 3
    assert seen.first_time("a")  # long forgotten


def test_the_trace_keeps_every_line_whole_whichever_thread_writes(tmp_path):
    path = tmp_path / "trace.jsonl"
    writers, lines_each = 4, 500
    with TraceFile.open(path) as trace:
        start = threading.Barrier(writers)

        def write(n: int) -> None:
            start.wait()
            for i in range(lines_each):
                trace.frame("client", json.dumps({"writer": n, "i": i, "pad": "x" * 3000}))

        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == writers * lines_each
    assert {(r["msg"]["writer"], r["msg"]["i"]) for r in records} == {
        (n, i) for n in range(writers) for i in range(lines_each)
    }

"""The token flow end to end: broker, device (the real daemon on simulated hardware) and
emulator. The device has no API key at all; the emulator accepts only tokens it issued to
the broker (and the broker's key for minting them)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from edgevoice.core.events import Connect, Event, LinkFailed, LinkUp
from edgevoice.errors import UserError
from edgevoice.live.link import LiveLink
from edgevoice.security.credentials import BrokerCredentials
from edgevoice.security.settings import AuthSettings
from edgevoice_broker.broker import TokenBroker
from edgevoice_broker.config import load_broker_settings
from edgevoice_testbed.emulator import Emulator, OffsetClock
from edgevoice_testbed.emulator.auth import TOKEN_EXPIRED, TOKEN_USED, TokenAuthenticator
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.emulator.helpers import scenario
from tests.security.helpers import GEMINI_KEY, BrokerFiles, credentials_dir, write_broker_files

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")

KITCHEN_SECRET = "kitchen-device-secret-7c1e9a3b5d2f4e6a8c0b"
ATTIC_SECRET = "attic-device-secret-2b4d6f8a0c1e3a5b7d9f"
TWO_TURNS = [
    {"input_transcript": "first question", "reply": "First answer."},
    {"input_transcript": "second question", "reply": "Second answer."},
]
TIMEOUT = 60


@dataclass
class Flow:
    emulator: Emulator
    broker: TokenBroker
    files: BrokerFiles
    clock: OffsetClock

    def auth(self, device_id: str = "kitchen") -> dict[str, object]:
        return {
            "mode": "token_broker",
            "broker_url": self.broker.url,
            "device_id": device_id,
            "broker_ca_file": str(self.files.ca_file),
        }

    def options(self, tmp_path: Path, device_id: str = "kitchen", **fields: object) -> SimulationOptions:
        overrides = {"auth": self.auth(device_id), "audio": {"preroll_ms": 0}}
        overrides.update(fields.pop("overrides", {}))  # type: ignore[arg-type]
        return SimulationOptions(
            presses=fields.pop("presses", [(0.1, 0.6), (1.0, 1.5)]),  # type: ignore[arg-type]
            out=tmp_path / "out.wav",
            earcons=False,
            emulator=self.emulator,
            overrides=overrides,
            timeout_s=fields.pop("timeout_s", 30.0),  # type: ignore[arg-type]
            **fields,  # type: ignore[arg-type]
        )


@pytest_asyncio.fixture
async def flow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Flow]:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    creds = credentials_dir(tmp_path / "device-creds", edgevoice_device_secret=KITCHEN_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    clock = OffsetClock()
    emulator = Emulator(
        scenario(turns=TWO_TURNS), clock=clock, authenticator=TokenAuthenticator(api_keys=[GEMINI_KEY])
    )
    await emulator.start()
    files = write_broker_files(
        tmp_path / "broker",
        devices={"kitchen": {"secret": KITCHEN_SECRET}, "attic": {"secret": ATTIC_SECRET, "revoked": True}},
        gemini_base_url=emulator.rest_base_url,
        gemini_ca_file=emulator.write_ca(tmp_path / "emulator-ca.pem"),
    )
    broker = TokenBroker(load_broker_settings(files.config), GEMINI_KEY)
    await broker.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            yield Flow(emulator, broker, files, clock)
    finally:
        await broker.aclose()
        await emulator.aclose()
    assert not emulator.errors, emulator.errors


async def test_the_device_talks_on_broker_tokens_one_per_connection(flow, tmp_path):
    result = await simulate(flow.options(tmp_path, faults=["drop@utterance:2:frame:5"]))
    assert result.transcript == [
        "you: first question",
        "assistant: First answer.",
        "you: second question",
        "assistant: Second answer.",
    ]
    connections = flow.emulator.connections
    assert len(connections) == 2 and connections[1].resumed_handle is not None
    assert {c.method for c in connections} == {"BidiGenerateContentConstrained"}
    assert {c.api_version for c in connections} == {"v1alpha"}
    # A fresh token for the resume too: every token opened exactly one connection.
    assert len({c.api_key_fingerprint for c in connections}) == 2
    assert [t.used for t in flow.emulator.issued_tokens] == [1, 1]
    assert all(t.refusals == [] for t in flow.emulator.issued_tokens)
    assert [t.device_id for t in flow.broker.issued] == ["kitchen", "kitchen"]
    # The locked model is what the sessions ran with.
    assert {c.effective_setup["model"] for c in connections} == {
        "models/gemini-2.5-flash-native-audio-preview-12-2025"}


async def test_an_expired_token_ends_the_session_and_the_device_fetches_a_new_one(flow, tmp_path):
    async def expire_after_first_answer() -> None:
        await flow.emulator.wait_for(lambda e: any(r.finished for r in e.replies), 20)
        flow.clock.advance(flow.broker.settings.tokens.expire_s + 1)
        flow.emulator.wake()

    mover = asyncio.create_task(expire_after_first_answer())
    result = await simulate(flow.options(tmp_path, presses=[(0.1, 0.6), (1.5, 2.0)]))
    await mover
    assert result.transcript[-1] == "assistant: Second answer."
    first, second = flow.emulator.connections[:2]
    assert (first.close_code, first.close_reason, first.closed_by) == (*TOKEN_EXPIRED, "server")
    assert second.accepted and second.resumed_handle is not None
    assert first.api_key_fingerprint != second.api_key_fingerprint
    assert len(flow.broker.issued) == len(flow.emulator.connections) >= 2


async def test_a_revoked_device_cannot_connect_and_says_why(flow, tmp_path, monkeypatch, caplog):
    creds = credentials_dir(tmp_path / "attic-creds", edgevoice_device_secret=ATTIC_SECRET)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    with pytest.raises(UserError, match="did not finish"):
        await simulate(flow.options(tmp_path, device_id="attic", timeout_s=2.0))
    assert flow.emulator.connections == [] and flow.emulator.issued_tokens == []
    assert {r.status for r in flow.broker.refused} == {403}
    refusals = [r for r in caplog.records if r.name == "edgevoice.auth" and r.levelno == logging.ERROR]
    assert len(refusals) == 1 and "has revoked this device" in refusals[0].getMessage()
    failures = [r.getMessage() for r in caplog.records if "connection attempt" in r.getMessage()]
    assert failures and all("has revoked this device" in line for line in failures)


async def test_a_reused_token_is_refused_and_the_next_attempt_brings_a_fresh_one(flow):
    from edgevoice.config import LiveSettings

    device = BrokerCredentials(AuthSettings(**flow.auth()), KITCHEN_SECRET)  # type: ignore[arg-type]
    spent = await device()
    handed_out: list[str] = []

    async def replaying() -> str:
        # A broken credential cache: the first attempt replays a token already spent.
        token = spent if not handed_out else await device()
        handed_out.append(token)
        return token

    events: list[Event] = []
    arrived = asyncio.Event()

    def post(event: Event) -> None:
        events.append(event)
        arrived.set()

    live = LiveSettings(model="gemini-2.5-flash-native-audio-preview-12-2025",
                        base_url=flow.emulator.base_url)
    link = LiveLink(live, credentials=replaying, post=post, ssl_context=flow.emulator.client_ssl_context())
    runner = asyncio.create_task(link.run())
    # The spent token opens one real session first, so the replay is a true reuse.
    first = LiveLink(
        live,
        credentials=lambda: _value(spent),
        post=lambda e: None,
        ssl_context=flow.emulator.client_ssl_context(),
    )
    first_runner = asyncio.create_task(first.run())
    first.connect(Connect(1, None))
    await flow.emulator.wait_for(lambda e: e.connections and e.connections[0].accepted)
    await first.shutdown()
    await first_runner
    try:
        for attempt in (1, 2):
            arrived.clear()
            link.connect(Connect(attempt, None))
            while not any(getattr(e, "link", None) == attempt for e in events):
                await asyncio.wait_for(arrived.wait(), 10)
                arrived.clear()
    finally:
        await link.shutdown()
        await runner
    refused, accepted = events[0], events[1]
    assert isinstance(refused, LinkFailed) and (refused.code, refused.reason) == (
        1008,
        f"1008 {TOKEN_USED[1]}",
    )
    assert isinstance(accepted, LinkUp) and accepted.link == 2
    assert handed_out[0] == spent and handed_out[1] != spent
    assert [t.used for t in flow.emulator.issued_tokens] == [1, 1]


async def _value(text: str) -> str:
    return text

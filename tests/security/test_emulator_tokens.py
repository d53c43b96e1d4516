"""The emulator's ephemeral tokens: issued over REST to the real SDK, enforced per connection.

Sans-IO tests pin each rule (single use, expiry, the new-session window, v1alpha only, the
locked fields); the SDK tests show the same rules as the SDK sees them over TLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import warnings

import pytest
from google import genai
from google.genai import errors, types

from edgevoice_testbed.emulator import Emulator, OffsetClock
from edgevoice_testbed.emulator.auth import (
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TOKEN_NEW_SESSIONS_OVER,
    TOKEN_USED,
    TOKEN_WRONG_VERSION,
    TokenAuthenticator,
    apply_constraints,
)
from edgevoice_testbed.emulator.protocol import Close, EmulatorCore
from edgevoice_testbed.emulator.voice import ToneVoice
from tests.emulator.helpers import MODEL, TEST_KEY, client_for, live_config, receive_turn, scenario, speak

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")

V1ALPHA = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained"
V1BETA = V1ALPHA.replace("v1alpha", "v1beta")
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
KEY_HEADERS = {"x-goog-api-key": TEST_KEY}
TIMEOUT = 30


def body(expire_s: float = 900, window_s: float = 60, uses: int = 1, **extra: object) -> dict:
    return {
        "expireTime": (NOW + dt.timedelta(seconds=expire_s)).isoformat(),
        "newSessionExpireTime": (NOW + dt.timedelta(seconds=window_s)).isoformat(),
        "uses": uses,
        **extra,
    }


def issue(auth: TokenAuthenticator, now: float = 100.0, **fields: object) -> str:
    result = auth.issue("v1alpha", KEY_HEADERS, body(**fields), NOW, now)
    assert result.status == 200, result.body
    return result.body["name"]


def token_headers(token: str) -> dict[str, str]:
    return {"authorization": f"Token {token}"}


# -- the rules, sans I/O ----------------------------------------------------------------------


def test_a_token_opens_one_connection_and_is_then_spent():
    auth = TokenAuthenticator()
    token = issue(auth)
    first = auth.check(V1ALPHA, token_headers(token), 101.0)
    second = auth.check(V1ALPHA, token_headers(token), 102.0)
    assert first.ok and first.scheme == "token" and first.expires_t == pytest.approx(100.0 + 900)
    assert (second.ok, second.close_code, second.reason) == (False, *TOKEN_USED)
    [record] = auth.issued
    assert (record.used, record.refusals) == (1, [TOKEN_USED[1]])
    assert token not in repr(record) and token not in repr(first) + repr(second)


def test_tokens_with_more_uses_and_unlimited_ones():
    auth = TokenAuthenticator()
    three, unlimited = issue(auth, uses=3), issue(auth, uses=0)
    assert [auth.check(V1ALPHA, token_headers(three), 101.0 + i).ok for i in range(4)] == [True] * 3 + [False]
    assert all(auth.check(V1ALPHA, token_headers(unlimited), 101.0 + i).ok for i in range(10))


def test_the_new_session_window_and_the_expiry_are_enforced():
    auth = TokenAuthenticator()
    late, expired = issue(auth, window_s=60), issue(auth, expire_s=120, window_s=120)
    refused_late = auth.check(V1ALPHA, token_headers(late), 100.0 + 61)
    refused_expired = auth.check(V1ALPHA, token_headers(expired), 100.0 + 121)
    assert (refused_late.close_code, refused_late.reason) == TOKEN_NEW_SESSIONS_OVER
    assert (refused_expired.close_code, refused_expired.reason) == TOKEN_EXPIRED


def test_unknown_tokens_wrong_versions_and_missing_credentials_are_refused():
    auth = TokenAuthenticator()
    token = issue(auth)
    unknown = auth.check(V1ALPHA, token_headers("auth_tokens/" + "0" * 64), 101.0)
    wrong_version = auth.check(V1BETA, token_headers(token), 101.0)
    nothing = auth.check(V1ALPHA, {}, 101.0)
    assert (unknown.close_code, unknown.reason) == TOKEN_INVALID
    assert (wrong_version.close_code, wrong_version.reason) == TOKEN_WRONG_VERSION
    assert not nothing.ok and not nothing.key_present and nothing.close_code == 1008
    # The refusal on the wrong version did not spend the token.
    assert auth.check(V1ALPHA, token_headers(token), 101.0).ok


def test_the_access_token_query_parameter_works_like_the_header():
    auth = TokenAuthenticator()
    token = issue(auth)
    assert auth.check(f"{V1ALPHA}?access_token={token}", {}, 101.0).ok


def test_lenient_mode_accepts_made_up_tokens_and_api_keys_can_be_restricted():
    lenient = TokenAuthenticator(accept_unissued_tokens=True)
    assert lenient.check(V1ALPHA, token_headers("auth_tokens/made-up-1"), 0.0).ok
    strict_keys = TokenAuthenticator(api_keys=["the-right-key"])
    path = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent"
    assert strict_keys.check(path, {"x-goog-api-key": "the-right-key"}, 0.0).ok
    wrong = strict_keys.check(path, {"x-goog-api-key": "a-wrong-key"}, 0.0)
    assert (wrong.ok, wrong.close_code) == (False, 1007)


@pytest.mark.parametrize(
    ("version", "headers", "payload", "status", "words"),
    [
        ("v1beta", KEY_HEADERS, body(), 404, ""),
        ("v1alpha", {}, body(), 403, "unregistered callers"),
        ("v1alpha", KEY_HEADERS, ["not", "an", "object"], 400, "Invalid JSON payload"),
        ("v1alpha", KEY_HEADERS, {"uses": -1}, 400, "uses must not be negative"),
        ("v1alpha", KEY_HEADERS, {"uses": "many"}, 400, "uses must be an integer"),
        ("v1alpha", KEY_HEADERS, {"expireTime": "tomorrow"}, 400, "expire_time must be an RFC 3339"),
        ("v1alpha", KEY_HEADERS, body(expire_s=-5), 400, "expire_time must be in the future"),
        ("v1alpha", KEY_HEADERS, body(expire_s=21 * 3600), 400, "less than 20 hours"),
        ("v1alpha", KEY_HEADERS, {"newSessionExpireTime": "2026-01-01T12:05:00"}, 400, "time zone"),
        ("v1alpha", KEY_HEADERS, {"bidiGenerateContentSetup": "x"}, 400, "must be an object"),
    ],
)
def test_bad_token_requests_get_googles_error_shape(version, headers, payload, status, words):
    result = TokenAuthenticator(api_keys=[TEST_KEY]).issue(version, headers, payload, NOW, 0.0)
    assert result.status == status
    assert result.body["error"]["code"] == status and words in result.body["error"]["message"]


def test_an_invalid_api_key_cannot_mint_tokens():
    result = TokenAuthenticator(api_keys=["only-this"]).issue("v1alpha", KEY_HEADERS, body(), NOW, 0.0)
    assert (result.status, result.body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "API key not valid" in result.body["error"]["message"]


def test_defaults_follow_the_sdk_documentation():
    auth = TokenAuthenticator()
    result = auth.issue("v1alpha", KEY_HEADERS, {}, NOW, 50.0)
    [record] = auth.issued
    assert result.body["uses"] == 1 == record.uses
    assert record.expire_t == pytest.approx(50.0 + 1800) and record.new_session_expire_t == pytest.approx(
        110.0
    )


def test_locked_fields_replace_the_clients_and_the_rest_is_kept():
    client = {
        "model": "models/other",
        "generationConfig": {"responseModalities": ["TEXT"], "speechConfig": {"voiceConfig": {}}},
        "tools": [{"functionDeclarations": [{"name": "set_light"}]}],
        "sessionResumption": {"handle": "h-1"},
    }
    locked = {
        "model": "models/locked",
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
    }
    mask = "model,generationConfig.responseModalities,realtimeInputConfig.automatic_activity_detection"
    effective, fields = apply_constraints(client, locked, mask)
    assert effective["model"] == "models/locked"
    assert effective["generationConfig"] == {
        "responseModalities": ["AUDIO"],
        "speechConfig": {"voiceConfig": {}},
    }
    assert effective["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert effective["tools"] == client["tools"] and effective["sessionResumption"] == {"handle": "h-1"}
    assert fields == [
        "model",
        "generationConfig.responseModalities",
        "realtimeInputConfig.automaticActivityDetection",
    ]
    # Without a mask the token's setup is the whole setup: tools and handle are gone.
    whole, everything = apply_constraints(client, locked, None)
    assert whole == locked and everything == ["*"]


def test_a_session_is_closed_when_its_token_expires():
    auth = TokenAuthenticator()
    token = issue(auth, expire_s=120, window_s=60, now=0.0)
    core = EmulatorCore(scenario(), ToneVoice().render, auth)
    connection = core.open_connection(V1ALPHA, token_headers(token), 1.0)
    setup = {
        "setup": {
            "model": "models/gemini-3.8-live",
            "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        }
    }
    connection.receive(json.dumps(setup), 1.0)
    assert connection.record.accepted and connection.poll(1.0)
    assert connection.next_deadline() == pytest.approx(120.0)
    assert connection.poll(119.9) == []
    assert connection.poll(120.0) == [Close(*TOKEN_EXPIRED)]


# -- with the real SDK over TLS ---------------------------------------------------------------


async def mint(emu: Emulator, **config: object) -> types.AuthToken:
    """The SDK's own auth_tokens.create, pointed at the emulator's REST side."""
    client = genai.Client(
        api_key=TEST_KEY,
        http_options=types.HttpOptions(
            base_url=emu.rest_base_url,
            api_version="v1alpha",
            async_client_args={"ssl": emu.client_ssl_context()},
        ),
    )
    now = dt.datetime.now(dt.UTC)
    defaults = {
        "uses": 1,
        "expire_time": now + dt.timedelta(minutes=15),
        "new_session_expire_time": now + dt.timedelta(minutes=1),
    }
    try:
        return await client.aio.auth_tokens.create(config={**defaults, **config})
    finally:
        await client.aio.aclose()


async def connect_and_talk(emu: Emulator, token: str) -> list[types.LiveServerMessage]:
    client = client_for(emu, api_key=token, api_version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await speak(session, frames=3)
        return await receive_turn(session)


async def test_the_sdk_mints_a_token_and_spends_it_once():
    clock = OffsetClock()
    async with (
        asyncio.timeout(TIMEOUT),
        Emulator(scenario(), clock=clock, authenticator=TokenAuthenticator()) as emu,
    ):
        token = await mint(emu)
        assert token.name.startswith("auth_tokens/") and token.uses == 1
        messages = await connect_and_talk(emu, token.name)
        assert any(m.server_content and m.server_content.turn_complete for m in messages)
        with pytest.raises(errors.APIError) as reused:
            await connect_and_talk(emu, token.name)
        assert (reused.value.code, reused.value.details) == TOKEN_USED
        [issued] = emu.issued_tokens
        assert (issued.used, issued.refusals) == (1, [TOKEN_USED[1]])
        first, second = emu.connections
        assert (first.method, first.auth_scheme, first.accepted) == (
            "BidiGenerateContentConstrained",
            "token",
            True,
        )
        assert (second.accepted, second.close_code) == (False, 1008)
        assert emu.rest_requests[-1][1:] == ("/v1alpha/auth_tokens", 200)
        everything = repr(emu.connections) + repr(emu.issued_tokens) + repr(emu.received) + repr(emu.sent)
        assert token.name not in everything and TEST_KEY not in everything


async def test_an_expired_token_is_refused_by_the_sdk_connection():
    clock = OffsetClock()
    async with (
        asyncio.timeout(TIMEOUT),
        Emulator(scenario(), clock=clock, authenticator=TokenAuthenticator()) as emu,
    ):
        late, expired = await mint(emu), await mint(emu)
        clock.advance(61)  # past the one-minute window for new sessions
        with pytest.raises(errors.APIError) as refused:
            await connect_and_talk(emu, late.name)
        assert (refused.value.code, refused.value.details) == TOKEN_NEW_SESSIONS_OVER
        clock.advance(15 * 60)
        with pytest.raises(errors.APIError) as refused:
            await connect_and_talk(emu, expired.name)
        assert (refused.value.code, refused.value.details) == TOKEN_EXPIRED


async def test_the_tokens_locked_settings_win_over_the_clients():
    constraints = types.LiveConnectConstraints(
        model="models/gemini-3.8-live",
        config=types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO]),
    )
    async with asyncio.timeout(TIMEOUT), Emulator(scenario(), authenticator=TokenAuthenticator()) as emu:
        token = await mint(emu, live_connect_constraints=constraints, lock_additional_fields=[])
        await connect_and_talk(emu, token.name)
        [record] = emu.connections
        assert record.setup["model"] == f"models/{MODEL}"
        assert record.effective_setup["model"] == "models/gemini-3.8-live"
        assert "model" in record.locked_fields
        # Only the set fields are locked: the client's tools and transcription survive.
        assert record.effective_setup["tools"] == record.setup["tools"]
        assert "inputAudioTranscription" in record.effective_setup


async def test_the_rest_endpoint_refuses_a_wrong_api_key_as_the_sdk_sees_it():
    async with (
        asyncio.timeout(TIMEOUT),
        Emulator(scenario(), authenticator=TokenAuthenticator(api_keys=["another-key"])) as emu,
    ):
        with pytest.raises(errors.ClientError) as refused:
            await mint(emu)
        assert refused.value.code == 400 and "API key not valid" in (refused.value.message or "")
        assert emu.issued_tokens == [] and emu.rest_requests[-1][2] == 400


async def test_the_default_emulator_still_accepts_made_up_tokens():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        async with asyncio.timeout(TIMEOUT), Emulator(scenario()) as emu:
            await connect_and_talk(emu, "auth_tokens/made-up")
            token = await mint(emu)
            await connect_and_talk(emu, token.name)
            with pytest.raises(errors.APIError):
                await connect_and_talk(emu, token.name)

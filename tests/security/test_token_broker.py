"""The token broker over real HTTPS, minting real tokens through the SDK at the emulator,
and the device's side of it (:class:`BrokerCredentials`)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from google.genai import errors

from edgevoice.config import ConfigError, Settings
from edgevoice.errors import UserError
from edgevoice.live.link import CredentialError
from edgevoice.security.credentials import BrokerCredentials, credential_source
from edgevoice.security.device_secrets import fingerprint, verify_secret
from edgevoice.security.settings import AuthSettings
from edgevoice_broker.broker import TokenBroker
from edgevoice_broker.config import load_broker_settings, set_revoked
from edgevoice_testbed.emulator import Emulator
from edgevoice_testbed.emulator.auth import TOKEN_USED, TokenAuthenticator
from tests.emulator.helpers import MODEL, client_for, live_config, receive_turn, scenario, speak
from tests.security.helpers import GEMINI_KEY, BrokerFiles, credentials_dir, write_broker_files

pytestmark = pytest.mark.filterwarnings("ignore::google.genai.errors.ExperimentalWarning")

KITCHEN_SECRET = "kitchen-secret-3f9a1c7e5b2d4a6f8e0c1b3d5f7a9c2e4b6d8f0a1c3"
ATTIC_SECRET = "attic-secret-0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1"
TIMEOUT = 30


@dataclass
class Setup:
    emulator: Emulator
    broker: TokenBroker
    files: BrokerFiles

    def device(
        self, device_id: str = "kitchen", secret: str = KITCHEN_SECRET, **auth: object
    ) -> BrokerCredentials:
        settings = AuthSettings(
            mode="token_broker",
            broker_url=self.broker.url,
            device_id=device_id,
            broker_ca_file=self.files.ca_file,
            **auth,
        )
        return BrokerCredentials(settings, secret)

    def url(self, device_id: str = "kitchen") -> str:
        return f"{self.broker.url}/v1/devices/{device_id}/token"

    def client_ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.files.ca_file))


async def start(tmp_path: Path, extra: str = "", emulator_keys: list[str] | None = None) -> Setup:
    emulator = Emulator(scenario(), authenticator=TokenAuthenticator(api_keys=emulator_keys or [GEMINI_KEY]))
    await emulator.start()
    files = write_broker_files(
        tmp_path / "broker",
        devices={"kitchen": {"secret": KITCHEN_SECRET}, "attic": {"secret": ATTIC_SECRET, "revoked": True}},
        gemini_base_url=emulator.rest_base_url,
        gemini_ca_file=emulator.write_ca(tmp_path / "emulator-ca.pem"),
        extra=extra,
    )
    broker = TokenBroker(load_broker_settings(files.config), GEMINI_KEY)
    await broker.start()
    return Setup(emulator, broker, files)


@pytest_asyncio.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    env = await start(tmp_path)
    async with asyncio.timeout(TIMEOUT):
        yield env
    await env.broker.aclose()
    await env.emulator.aclose()
    assert not env.emulator.errors


def assert_no_secrets(text: str, *secrets: str) -> None:
    for secret in (GEMINI_KEY, KITCHEN_SECRET, ATTIC_SECRET, *secrets):
        assert secret not in text, f"a secret leaked: {secret[:6]}..."


async def test_a_device_gets_a_locked_single_use_token(setup, caplog):
    caplog.set_level(logging.DEBUG)
    device = setup.device()
    token = await device()
    assert token.startswith("auth_tokens/")
    [issued] = setup.broker.issued
    assert (issued.device_id, issued.fingerprint, issued.uses) == ("kitchen", fingerprint(token), 1)
    [minted] = setup.emulator.issued_tokens
    assert (minted.fingerprint, minted.uses) == (fingerprint(token)[:8], 1)
    assert minted.new_session_expire_t - minted.issued_t == pytest.approx(60, abs=2)
    assert minted.expire_t - minted.issued_t == pytest.approx(900, abs=2)
    assert minted.constraints["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    assert minted.constraints["realtimeInputConfig"] == {"automaticActivityDetection": {"disabled": True}}
    assert minted.field_mask is not None and "model" in minted.field_mask
    # The token works once, on the v1alpha constrained method, with the model locked in.
    client = client_for(setup.emulator, api_key=token, api_version="v1alpha")
    async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
        await speak(session, frames=3)
        await receive_turn(session)
    record = setup.emulator.connections[0]
    assert record.effective_setup["model"] == "models/gemini-2.5-flash-native-audio-preview-12-2025"
    assert record.effective_setup["tools"] == record.setup["tools"]
    with pytest.raises(errors.APIError) as reused:
        async with client.aio.live.connect(model=MODEL, config=live_config()):
            pass
    assert reused.value.code == TOKEN_USED[0]
    # Logged with device, expiry and fingerprint; never the token, the key or the secret.
    [line] = [r.getMessage() for r in caplog.records if "issued a token" in r.getMessage()]
    assert "kitchen" in line and fingerprint(token) in line and issued.expire_time in line
    # (This test's own SDK client logs its headers through websockets.client; the daemon's
    # connections go through edgevoice.live.sdk's redacting logger, scanned in test_secret_scan.)
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("websockets"))
    assert_no_secrets(ours + repr(setup.broker) + repr(device), token)


async def test_every_call_fetches_a_new_token(setup):
    device = setup.device()
    tokens = [await device() for _ in range(3)]
    assert len(set(tokens)) == 3 and device.fetched == 3
    assert len(setup.emulator.issued_tokens) == 3


@pytest.mark.parametrize(
    ("device_id", "secret", "status", "words"),
    [
        ("kitchen", "wrong-secret", 401, "does not know this device or its secret"),
        ("garage", KITCHEN_SECRET, 401, "does not know this device or its secret"),
        ("attic", ATTIC_SECRET, 403, "has revoked this device"),
    ],
)
async def test_unknown_wrong_and_revoked_devices_are_refused_clearly(
    setup, caplog, device_id, secret, status, words
):
    caplog.set_level(logging.DEBUG)
    device = setup.device(device_id, secret)
    with pytest.raises(CredentialError) as refused:
        await device()
    assert words in str(refused.value) and f"HTTP {status}" in str(refused.value)
    assert "edgevoice-device-secret" in str(refused.value)
    with pytest.raises(CredentialError):
        await device()
    # One error line per change of answer, not one per retry.
    errors_logged = [r for r in caplog.records if r.name == "edgevoice.auth" and r.levelno == logging.ERROR]
    assert len(errors_logged) == 1
    assert setup.broker.issued == [] and setup.emulator.issued_tokens == []
    assert [r.status for r in setup.broker.refused] == [status, status]
    assert_no_secrets(caplog.text + str(refused.value))


async def test_the_json_errors_of_the_broker(setup):
    async with aiohttp.ClientSession() as http:
        async with http.post(setup.url(), ssl=setup.client_ssl()) as response:
            missing = (response.status, await response.json())
        async with http.post(
            setup.url(), headers={"Authorization": f"Bearer {ATTIC_SECRET}"}, ssl=setup.client_ssl()
        ) as response:
            wrong = (response.status, await response.json(), response.headers.get("Cache-Control"))
        async with http.get(f"{setup.broker.url}/", ssl=setup.client_ssl()) as response:
            nowhere = (response.status, await response.json())
        async with http.post(
            setup.url("..%2Fetc"), headers={"Authorization": "Bearer x"}, ssl=setup.client_ssl()
        ) as response:
            bad_id = response.status
    assert missing == (
        401,
        {
            "error": {
                "code": 401,
                "status": "UNAUTHENTICATED",
                "message": "send the device secret as 'Authorization: Bearer <secret>'",
            }
        },
    )
    assert wrong == (
        401,
        {
            "error": {
                "code": 401,
                "status": "UNAUTHENTICATED",
                "message": "unknown device or wrong device secret",
            }
        },
        "no-store",
    )
    assert nowhere[0] == 404 and "POST /v1/devices/{device_id}/token" in nowhere[1]["error"]["message"]
    assert bad_id in (401, 404)


async def test_a_greedy_device_is_rate_limited(tmp_path):
    env = await start(tmp_path, extra="[rate_limit]\nburst = 2\nper_minute = 1\n")
    try:
        device = env.device()
        await device()
        await device()
        with pytest.raises(CredentialError, match=r"rate-limiting this device; it asks to wait \d+ s"):
            await device()
        assert [r.status for r in env.broker.refused] == [429]
    finally:
        await env.broker.aclose()
        await env.emulator.aclose()


async def test_guessing_from_one_address_is_stopped(tmp_path):
    env = await start(tmp_path, extra="[rate_limit]\nfailed_burst = 3\nfailed_per_minute = 1\n")
    try:
        for _ in range(3):
            with pytest.raises(CredentialError, match="HTTP 401"):
                await env.device(secret="guess")()
        with pytest.raises(CredentialError, match="rate-limiting"):
            await env.device()()  # even the right secret waits: the address is blocked
        assert [r.status for r in env.broker.refused] == [401, 401, 401, 429]
    finally:
        await env.broker.aclose()
        await env.emulator.aclose()


async def test_revoking_a_device_takes_effect_on_its_next_request(setup):
    device = setup.device()
    await device()
    set_revoked(setup.files.config, "kitchen")
    with pytest.raises(CredentialError, match="has revoked this device"):
        await device()
    set_revoked(setup.files.config, "kitchen", False)
    assert (await device()).startswith("auth_tokens/")


async def test_a_broken_config_edit_keeps_the_running_configuration(setup, caplog):
    device = setup.device()
    await device()
    setup.files.config.write_text(setup.files.config.read_text() + "\n[[devices]]\nid = 'x'\n")
    assert (await device()).startswith("auth_tokens/")
    assert any("cannot be used; keeping the configuration in use" in r.getMessage() for r in caplog.records)


async def test_an_upstream_refusal_is_a_502_with_googles_reason(tmp_path):
    env = await start(tmp_path, emulator_keys=["some-other-key"])
    try:
        with pytest.raises(CredentialError) as refused:
            await env.device()()
        assert "HTTP 502" in str(refused.value) and "API key not valid" in str(refused.value)
    finally:
        await env.broker.aclose()
        await env.emulator.aclose()


async def test_an_unreachable_or_untrusted_broker_is_a_credential_error(setup, tmp_path):
    untrusted = BrokerCredentials(
        AuthSettings(mode="token_broker", broker_url=setup.broker.url, device_id="kitchen"), KITCHEN_SECRET
    )
    with pytest.raises(CredentialError, match="TLS certificate is not trusted"):
        await untrusted()
    url = setup.broker.url
    await setup.broker.aclose()
    gone = BrokerCredentials(
        AuthSettings(
            mode="token_broker", broker_url=url, device_id="kitchen", broker_ca_file=setup.files.ca_file
        ),
        KITCHEN_SECRET,
    )
    with pytest.raises(CredentialError, match=f"the token broker at {re.escape(url)} cannot be reached"):
        await gone()


async def test_a_silent_broker_times_out(tmp_path):
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept and say nothing

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        device = BrokerCredentials(
            AuthSettings(
                mode="token_broker",
                broker_url=f"https://127.0.0.1:{port}",
                device_id="kitchen",
                request_timeout_s=0.3,
            ),
            KITCHEN_SECRET,
        )
        with pytest.raises(CredentialError, match=r"did not answer within 0\.3 s"):
            await device()
    finally:
        server.close()


# -- the daemon's credential source -----------------------------------------------------------------


def settings_with(**auth: object) -> Settings:
    return Settings(auth=AuthSettings(**auth)) if auth else Settings()


def test_token_broker_mode_needs_the_device_secret_credential(tmp_path):
    broker = {"mode": "token_broker", "broker_url": "https://h:1", "device_id": "kitchen"}
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        credential_source(settings_with(**broker), environ={})
    empty = credentials_dir(tmp_path / "empty")
    with pytest.raises(ConfigError, match="needs the device secret in"):
        credential_source(settings_with(**broker), environ={"CREDENTIALS_DIRECTORY": str(empty)})
    loose = credentials_dir(tmp_path / "loose", edgevoice_device_secret="s")
    (loose / "edgevoice-device-secret").chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        credential_source(settings_with(**broker), environ={"CREDENTIALS_DIRECTORY": str(loose)})


def test_api_key_mode_without_a_key_says_what_to_do():
    with pytest.raises(UserError, match=r'no Gemini API key.*mode = "token_broker"'):
        credential_source(Settings(), environ={})


async def test_the_source_follows_the_settings_across_a_reload(setup, tmp_path):
    creds = credentials_dir(tmp_path / "creds", edgevoice_device_secret=KITCHEN_SECRET)
    broker_settings = settings_with(
        mode="token_broker",
        broker_url=setup.broker.url,
        device_id="kitchen",
        broker_ca_file=str(setup.files.ca_file),
    )
    key_settings = Settings(gemini_api_key="plain-key-123")
    current = [broker_settings]
    source = credential_source(broker_settings, lambda: current[0], {"CREDENTIALS_DIRECTORY": str(creds)})
    assert (await source()).startswith("auth_tokens/")
    current[0] = key_settings
    assert await source() == "plain-key-123"
    assert "secret" not in repr(source).replace("secrets=redacted", "")


# -- the command line ---------------------------------------------------------------------------------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgevoice",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_cli_enrols_serves_and_revokes(setup, tmp_path):
    env = dict(os.environ, EDGEVOICE_BROKER_CONFIG=str(setup.files.config))
    env.pop("GEMINI_API_KEY", None)
    status, out, err = await run_cli("token-broker", "add-device", "hall", env=env)
    assert status == 0, err
    secret = out.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", secret) and "shown only once" in err
    stored = load_broker_settings(setup.files.config).settings.device("hall")
    assert verify_secret(secret, stored.secret_hash) and secret not in setup.files.config.read_text()
    status, out, _ = await run_cli("token-broker", "list-devices", env=env)
    assert out.splitlines() == ["kitchen\tactive", "attic\trevoked", "hall\tactive"]

    # Serve with the key from a credential file, on a free port; the new device gets a token.
    creds = credentials_dir(tmp_path / "broker-creds", gemini_api_key=GEMINI_KEY)
    serve_env = dict(env, CREDENTIALS_DIRECTORY=str(creds), PYTHONFAULTHANDLER="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgevoice",
        "token-broker",
        env=serve_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stderr is not None
        first = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        url = re.search(r"listening on (https://\S+)", first).group(1)
        hall = BrokerCredentials(
            AuthSettings(
                mode="token_broker", broker_url=url, device_id="hall", broker_ca_file=setup.files.ca_file
            ),
            secret,
        )
        token = await hall()
        status, out, _ = await run_cli("token-broker", "revoke-device", "hall", env=env)
        assert status == 0 and "revoked" in out
        with pytest.raises(CredentialError, match="HTTP 403"):
            await hall()
    finally:
        process.terminate()
        out_bytes, err_bytes = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    logged = first + err_bytes.decode() + out_bytes.decode()
    assert "issued a token to device hall" in logged and "refused a token to device 'hall'" in logged
    assert_no_secrets(logged, secret, token)


async def test_the_cli_explains_a_missing_key_and_a_missing_file(tmp_path):
    env = dict(os.environ, EDGEVOICE_BROKER_CONFIG=str(tmp_path / "none.toml"))
    env.pop("GEMINI_API_KEY", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    status, _, err = await run_cli("token-broker", env=env)
    assert status == 78 and "none.toml does not exist" in err
    files = write_broker_files(tmp_path / "b")
    status, _, err = await run_cli("token-broker", "--config", str(files.config), env=env)
    assert status == 1 and "needs the Gemini API key" in err and "Traceback" not in err
    status, _, err = await run_cli(
        "token-broker", "add-device", "bad/name", "--config", str(files.config), env=env
    )
    assert status == 2 and "device id 'bad/name'" in err

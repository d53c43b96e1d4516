"""The token broker: an HTTPS service that trades a device secret for an ephemeral token.

It runs on a home server and holds the real Gemini API key, so the key never lives on the
devices. A device asks ``POST /v1/devices/{id}/token`` with ``Authorization: Bearer
<device secret>``; the broker checks the secret against the stored scrypt hash, applies the
per-device rate limit (:mod:`policy` decides) and mints a single-use token with the SDK's
``client.aio.auth_tokens.create``: short new-session window, limited lifetime, and the
model plus the push-to-talk Live settings locked in.

Answers are JSON. Errors look like Google's: ``{"error": {"code", "status", "message"}}``.
Every token issued is logged with the device, its expiry and a fingerprint (a short
sha256 prefix); tokens, secrets and the API key never are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web
from google import genai
from google.genai import errors, types
from pydantic import SecretStr

from edgevoice.config import ConfigError
from edgevoice.security.device_secrets import fingerprint, verify_secret
from edgevoice.security.settings import check_device_id
from edgevoice_broker.config import LoadedBroker, file_signature, load_broker_settings
from edgevoice_broker.policy import BrokerPolicy, Refusal, unauthenticated
from edgevoice_broker.settings import BrokerSettings

log = logging.getLogger("edgevoice.token_broker")

TOKEN_PATH = "/v1/devices/{device_id}/token"
TOKEN_PREFIX = "auth_tokens/"
MAX_SECRET_LENGTH = 512
# scrypt needs 16 MiB per check: a few at a time, whatever the request rate.
MAX_PARALLEL_VERIFICATIONS = 2


@dataclass(frozen=True)
class IssuedToken:
    """What the broker remembers of a token it issued (never the token itself)."""

    t: float
    device_id: str
    fingerprint: str
    expire_time: str
    new_session_expire_time: str
    uses: int


@dataclass(frozen=True)
class RefusedRequest:
    t: float
    device_id: str
    client: str
    status: int
    message: str


class TokenBroker:
    """``async with TokenBroker(loaded, api_key) as broker:`` serves on ``broker.url``."""

    def __init__(
        self,
        loaded: LoadedBroker,
        api_key: str,
        *,
        host: str | None = None,
        port: int | None = None,
        upstream_ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._loaded = loaded
        self._api_key = SecretStr(api_key)
        self._host = host if host is not None else loaded.settings.server.host
        self._port = port if port is not None else loaded.settings.server.port
        self._upstream_ssl = upstream_ssl_context
        self._clock = clock
        self._wall_clock = wall_clock
        self.policy = BrokerPolicy(loaded.settings)
        self.issued: list[IssuedToken] = []
        self.refused: list[RefusedRequest] = []
        self._runner: web.AppRunner | None = None
        self._client: genai.Client | None = None
        self._client_settings: tuple[Any, ...] | None = None
        self._retired: list[genai.Client] = []
        self._verifications = asyncio.Semaphore(MAX_PARALLEL_VERIFICATIONS)
        self._bad_signature: tuple[int, int, int] | None = None

    def __repr__(self) -> str:
        devices = len(self.settings.devices)
        return f"TokenBroker(url={self.url!r}, devices={devices}, api_key=SecretStr('**********'))"

    @property
    def settings(self) -> BrokerSettings:
        return self.policy.settings

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        server = self.settings.server
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(server.tls_cert_file, server.tls_key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"server.tls_cert_file / server.tls_key_file cannot be used: {exc}"]) from None
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # Our own log lines say more than an access log, and say it once.
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=context)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        if sockets:
            self._port = sockets[0].getsockname()[1]
        log.info("token broker listening on %s (%d devices enrolled)", self.url, len(self.settings.devices))

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        clients, self._client = [*self._retired, self._client], None
        self._retired = []
        for client in clients:
            if client is not None:
                await client.aio.aclose()

    # -- handlers ------------------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        return _json(
            404,
            {
                "error": {
                    "code": 404,
                    "status": "NOT_FOUND",
                    "message": f"no such endpoint: ask POST {TOKEN_PATH}",
                }
            },
        )

    async def _token(self, request: web.Request) -> web.Response:
        self._maybe_reload()
        device_id = request.match_info["device_id"]
        client = request.remote or "unknown"
        now = self._clock()
        refusal = self.policy.admit(client, now)
        if refusal is not None:
            return self._refuse(device_id, client, refusal)
        try:
            check_device_id(device_id)
            valid_id = True
        except ValueError:
            valid_id = False
        secret = _bearer(request.headers.get("Authorization", ""))
        if secret is None or not valid_id:
            refusal = self.policy.decide(device_id, client, verified=False, now=self._clock())
            if secret is None:
                refusal = unauthenticated("send the device secret as 'Authorization: Bearer <secret>'")
            return self._refuse(device_id, client, refusal or unauthenticated("refused"))
        async with self._verifications:
            verified = await asyncio.to_thread(verify_secret, secret, self.policy.hash_for(device_id))
        refusal = self.policy.decide(device_id, client, verified, self._clock())
        if refusal is not None:
            return self._refuse(device_id, client, refusal)
        return await self._mint(device_id, client)

    def _refuse(self, device_id: str, client: str, refusal: Refusal) -> web.Response:
        shown = device_id if len(device_id) <= 64 else device_id[:61] + "..."
        level = logging.INFO if refusal.status == 429 else logging.WARNING
        log.log(
            level,
            "refused a token to device %r from %s: %s (HTTP %d)",
            shown,
            client,
            refusal.message,
            refusal.status,
        )
        self.refused.append(RefusedRequest(self._clock(), shown, client, refusal.status, refusal.message))
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = str(max(1, int(refusal.retry_after_s + 0.999)))
        return _json(refusal.status, refusal.body(), headers)

    async def _mint(self, device_id: str, client: str) -> web.Response:
        settings = self.settings
        wall_now = self._wall_clock()
        expire = wall_now + dt.timedelta(seconds=settings.tokens.expire_s)
        new_session = wall_now + dt.timedelta(seconds=settings.tokens.new_session_s)
        config = types.CreateAuthTokenConfig(
            uses=settings.tokens.uses,
            expire_time=expire,
            new_session_expire_time=new_session,
            live_connect_constraints=locked_constraints(settings),
            # Lock only what is set above: the device keeps its own tools and resumption handle.
            lock_additional_fields=[],
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", errors.ExperimentalWarning)
                pending = self._gemini().aio.auth_tokens.create(config=config)
            token = await asyncio.wait_for(pending, settings.gemini.timeout_s)
        except errors.APIError as exc:
            message = f"Gemini refused to issue a token ({exc.code} {exc.status or ''}".rstrip() + ")"
            if exc.message:
                message += f": {_clip(exc.message)}"
            return self._refuse(device_id, client, Refusal(502, "BAD_GATEWAY", message))
        except TimeoutError:
            return self._refuse(
                device_id,
                client,
                Refusal(
                    504,
                    "GATEWAY_TIMEOUT",
                    f"no answer from the Gemini API within {settings.gemini.timeout_s:g} s",
                ),
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return self._refuse(
                device_id,
                client,
                Refusal(502, "BAD_GATEWAY", f"cannot reach the Gemini API: {type(exc).__name__}"),
            )
        name = token.name or ""
        if not name.startswith(TOKEN_PREFIX):
            return self._refuse(
                device_id,
                client,
                Refusal(502, "BAD_GATEWAY", "the Gemini API answered without a usable token"),
            )
        record = IssuedToken(
            self._clock(),
            device_id,
            fingerprint(name),
            expire.isoformat(),
            new_session.isoformat(),
            settings.tokens.uses,
        )
        self.issued.append(record)
        log.info(
            "issued a token to device %s from %s: fingerprint %s, new sessions until %s, expires %s",
            device_id,
            client,
            record.fingerprint,
            record.new_session_expire_time,
            record.expire_time,
        )
        return _json(
            200,
            {
                "token": name,
                "expire_time": record.expire_time,
                "new_session_expire_time": record.new_session_expire_time,
                "uses": record.uses,
            },
        )

    # -- upstream ------------------------------------------------------------------------------

    def _gemini(self) -> genai.Client:
        gemini = self.settings.gemini
        key = (gemini.base_url, gemini.api_version, gemini.ca_file)
        if self._client is None or key != self._client_settings:
            options = types.HttpOptions(api_version=gemini.api_version)
            if gemini.base_url:
                options.base_url = gemini.base_url
            context = self._upstream_ssl
            if context is None and gemini.ca_file is not None:
                try:
                    context = ssl.create_default_context(cafile=str(gemini.ca_file))
                except (OSError, ssl.SSLError) as exc:
                    raise ValueError(f"gemini.ca_file cannot be used: {exc}") from None
            if context is not None:
                options.async_client_args = {"ssl": context}
            if self._client is not None:
                self._retired.append(self._client)
            self._client = genai.Client(api_key=self._api_key.get_secret_value(), http_options=options)
            self._client_settings = key
        return self._client

    def _maybe_reload(self) -> None:
        """Re-read the file when it changed (a device added or revoked takes effect at once)."""
        path = self._loaded.path
        try:
            signature = file_signature(path)
        except OSError as exc:
            if self._bad_signature != (0, 0, 0):
                log.error("cannot read %s (%s); keeping the configuration in use", path, exc.strerror)
                self._bad_signature = (0, 0, 0)
            return
        if signature == self._loaded.signature or signature == self._bad_signature:
            return
        try:
            loaded = load_broker_settings(path)
        except ConfigError as exc:
            log.error(
                "%s changed but cannot be used; keeping the configuration in use: %s",
                path,
                "; ".join(exc.problems),
            )
            self._bad_signature = signature
            return
        if loaded.settings.server != self._loaded.settings.server:
            log.warning("[server] changed in %s: restart the broker to apply it", path)
        self._loaded = loaded
        self._bad_signature = None
        self.policy.update(loaded.settings)
        log.info(
            "reloaded %s: %d devices (%d revoked)",
            path,
            len(loaded.settings.devices),
            sum(device.revoked for device in loaded.settings.devices),
        )


def locked_constraints(settings: BrokerSettings) -> types.LiveConnectConstraints:
    """The model and Live settings every token is locked to."""
    live = settings.live
    config = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO])
    if live.voice:
        config.speech_config = types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=live.voice)
            )
        )
    if live.system_instruction:
        config.system_instruction = types.Content(parts=[types.Part(text=live.system_instruction)])
    if live.lock_manual_activity:
        config.realtime_input_config = types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        )
    model = live.model if live.model.startswith("models/") else f"models/{live.model}"
    return types.LiveConnectConstraints(model=model, config=config)


def _bearer(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_SECRET_LENGTH:
        return None
    return value


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    response = web.json_response(body, status=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


async def serve(loaded: LoadedBroker, api_key: str, stop: asyncio.Event) -> None:
    """Run the broker until ``stop`` is set."""
    async with TokenBroker(loaded, api_key):
        await stop.wait()


__all__ = ["IssuedToken", "RefusedRequest", "TokenBroker", "locked_constraints", "serve"]

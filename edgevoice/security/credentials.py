"""Where the daemon's Live credential comes from, per connection.

:func:`credential_source` turns the ``[auth]`` settings into the
:data:`edgevoice.live.link.CredentialSource` the Live link awaits before every connection
attempt (a new session or a resume):

- ``mode = "api_key"``: the Gemini API key (``GEMINI_API_KEY`` or the credential
  ``gemini-api-key``), re-read from the settings at each call so a reload can change it.
- ``mode = "token_broker"``: a fresh single-use ephemeral token from the token broker,
  fetched over HTTPS with the device secret (credential ``edgevoice-device-secret``).

A broker that cannot be reached raises :class:`CredentialError`, which the daemon treats
as a failed connection attempt (offline earcon, backoff, retry). A broker that refuses the
device (401/403) is logged as an error once per change of answer, and retried the same way:
an administrator may fix the enrolment while the device waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2
from pydantic import SecretStr

from edgevoice.config import ConfigError, Settings, read_credential_file
from edgevoice.errors import UserError
from edgevoice.live.link import CredentialError, CredentialSource
from edgevoice.security.settings import DEVICE_SECRET_CREDENTIAL, AuthSettings

log = logging.getLogger("edgevoice.auth")

TOKEN_PREFIX = "auth_tokens/"


def read_device_secret(environ: Mapping[str, str]) -> str:
    """The device secret from ``$CREDENTIALS_DIRECTORY/edgevoice-device-secret``."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        raise ConfigError(
            [
                f'auth.mode = "token_broker" needs the device secret as the credential '
                f"{DEVICE_SECRET_CREDENTIAL}: add LoadCredential={DEVICE_SECRET_CREDENTIAL}:... to the "
                "unit (CREDENTIALS_DIRECTORY is not set)"
            ]
        )
    path = Path(directory) / DEVICE_SECRET_CREDENTIAL
    if not path.exists():
        raise ConfigError(
            [
                f'auth.mode = "token_broker" needs the device secret in {path} '
                "(printed by 'edgevoice token-broker add-device' on the broker)"
            ]
        )
    secret = read_credential_file(path, environ)
    if not secret:
        raise ConfigError([f"credential file {path} is empty"])
    return secret


def broker_ssl_context(auth: AuthSettings) -> ssl.SSLContext:
    try:
        if auth.broker_ca_file is not None:
            return ssl.create_default_context(cafile=str(auth.broker_ca_file))
        return ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"auth.broker_ca_file {auth.broker_ca_file} cannot be used: {exc}") from None


class BrokerRefused(CredentialError):
    """The broker answered and said no (401 or 403): an enrolment problem, not a network one."""


class BrokerCredentials:
    """Fetches one fresh ephemeral token per call from the token broker."""

    def __init__(
        self,
        auth: AuthSettings,
        secret: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if auth.broker_url is None or auth.device_id is None:
            raise ValueError("token_broker mode needs broker_url and device_id")
        self.auth = auth
        self._secret = SecretStr(secret)
        self._ssl = ssl_context if ssl_context is not None else broker_ssl_context(auth)
        self._clock = clock
        self._last_problem: str | None = None
        self.fetched = 0

    def __repr__(self) -> str:
        return (
            f"BrokerCredentials(broker_url={self.auth.broker_url!r}, device_id={self.auth.device_id!r}, "
            "secret=SecretStr('**********'))"
        )

    @property
    def token_url(self) -> str:
        return f"{self.auth.broker_url}/v1/devices/{self.auth.device_id}/token"

    async def __call__(self) -> str:
        try:
            token = await self._fetch()
        except CredentialError as exc:
            self._report(str(exc), isinstance(exc, BrokerRefused))
            raise
        if self._last_problem is not None:
            log.info("the token broker answers again")
            self._last_problem = None
        self.fetched += 1
        return token

    async def _fetch(self) -> str:
        url = self.token_url
        headers = {"Authorization": f"Bearer {self._secret.get_secret_value()}", "Accept": "application/json"}
        try:
            # One deadline for the whole exchange, as the setting says; the environment's
            # proxies are not the device's (the broker is on its own network).
            async with (
                asyncio.timeout(self.auth.request_timeout_s),
                httpx2.AsyncClient(verify=self._ssl, trust_env=False, timeout=None) as client,
            ):
                response = await client.post(url, headers=headers)
            status = response.status_code
            try:
                body: Any = response.json()
            except ValueError:
                body = None
            retry_after = response.headers.get("Retry-After")
        except TimeoutError:  # the client has no timeouts of its own: this deadline is all
            raise CredentialError(
                f"the token broker at {self.auth.broker_url} did not answer within "
                f"{self.auth.request_timeout_s:g} s"
            ) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise CredentialError(
                f"the token broker at {self.auth.broker_url} cannot be reached: {_describe(exc)}"
            ) from None
        if status == 200:
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 4096:
                # Never echo a 200 body: it may hold a token.
                raise CredentialError("the token broker's answer holds no usable token")
            return token
        message = _error_message(body)
        if status in (401, 403):
            what = "does not know this device or its secret" if status == 401 else "has revoked this device"
            raise BrokerRefused(
                f"the token broker {what} (HTTP {status}: {message}); check auth.device_id "
                f"({self.auth.device_id}) and the credential {DEVICE_SECRET_CREDENTIAL}"
            )
        if status == 429:
            wait = f"; it asks to wait {retry_after} s" if retry_after else ""
            raise CredentialError(f"the token broker is rate-limiting this device{wait}")
        raise CredentialError(f"the token broker could not issue a token (HTTP {status}: {message})")

    def _report(self, problem: str, refused: bool) -> None:
        # One line per change of answer: a device left offline does not flood the journal.
        if problem == self._last_problem:
            log.debug("%s", problem)
            return
        self._last_problem = problem
        log.log(logging.ERROR if refused else logging.WARNING, "%s", problem)


class DaemonCredentials:
    """The daemon's :data:`CredentialSource`: follows ``[auth]`` across reloads."""

    def __init__(
        self,
        settings: Settings,
        get_settings: Callable[[], Settings] | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        broker_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self._get_settings = get_settings or (lambda: settings)
        self._environ = environ if environ is not None else os.environ
        self._broker_ssl = broker_ssl
        self._broker: BrokerCredentials | None = None
        self.check(settings)

    def __repr__(self) -> str:
        return f"DaemonCredentials(mode={self._get_settings().auth.mode!r}, secrets=redacted)"

    def check(self, settings: Settings) -> None:
        """Raise :class:`ConfigError` / :class:`UserError` if ``settings`` cannot give a
        credential (a missing key or device secret): at start, before going online."""
        if settings.auth.mode == "api_key":
            if settings.gemini_api_key is None or not settings.gemini_api_key.get_secret_value():
                raise UserError(
                    "no Gemini API key: set GEMINI_API_KEY or install the credential "
                    "(LoadCredential=gemini-api-key in the systemd unit), or use "
                    '[auth] mode = "token_broker"'
                )
        else:
            self._broker_for(settings.auth)

    def _broker_for(self, auth: AuthSettings) -> BrokerCredentials:
        if self._broker is None or self._broker.auth != auth:
            self._broker = BrokerCredentials(
                auth, read_device_secret(self._environ), ssl_context=self._broker_ssl
            )
        return self._broker

    async def __call__(self) -> str:
        settings = self._get_settings()
        if settings.auth.mode == "api_key":
            key = settings.gemini_api_key
            if key is None or not key.get_secret_value():
                raise CredentialError("the Gemini API key is empty")
            return key.get_secret_value()
        try:
            broker = self._broker_for(settings.auth)
        except (ConfigError, UserError) as exc:
            problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
            raise CredentialError("; ".join(problems)) from None
        return await broker()


def credential_source(
    settings: Settings,
    get_settings: Callable[[], Settings] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    broker_ssl: ssl.SSLContext | None = None,
) -> CredentialSource:
    """The credential source for ``settings.auth``; raises :class:`ConfigError` or
    :class:`UserError` at once if it cannot work. ``get_settings`` gives the settings in
    force at each connection (after a reload); default: ``settings`` forever."""
    return DaemonCredentials(settings, get_settings, environ, broker_ssl=broker_ssl)


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if isinstance(message, str) and message:
            text = " ".join(message.split())
            return text if len(text) <= 200 else text[:197] + "..."
    return "no explanation given"


def _describe(exc: BaseException) -> str:
    reason = _socket_error(exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "its TLS certificate is not trusted (set auth.broker_ca_file to its CA)"
    if reason is not None:
        return reason.strerror or type(reason).__name__
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _socket_error(exc: BaseException | None) -> OSError | None:
    """The socket's own error under the HTTP client's wrappers (its causes, and the attempts
    of a connection to several addresses): a certificate failure, or one with a strerror."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ssl.SSLCertVerificationError) or (isinstance(exc, OSError) and exc.strerror):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                if (found := _socket_error(inner)) is not None:
                    return found
        exc = exc.__cause__ or exc.__context__
    return None


__all__ = [
    "BrokerCredentials",
    "BrokerRefused",
    "DaemonCredentials",
    "broker_ssl_context",
    "credential_source",
    "read_device_secret",
]

"""Settings of the security room: the device's ``[auth]`` section and the token broker's file.

The device side (:class:`AuthSettings`) says where a connection's credential comes from:
the Gemini API key itself (``mode = "api_key"``, the default), or a short-lived ephemeral
token fetched from a token broker on the home server (``mode = "token_broker"``). Secrets
never live in these models: the device secret is the systemd credential
``edgevoice-device-secret``; the broker's Gemini key is ``gemini-api-key``.

The ``[auth]`` table registers itself with :mod:`edgevoice.sections`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from edgevoice.sections import Section, section

DEVICE_SECRET_CREDENTIAL = "edgevoice-device-secret"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)


# The broker's own file uses the same kind of tables.
_Section = Section


def check_https_url(value: str) -> str:
    """An ``https://host[:port][/path]`` URL without credentials, query or fragment."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("must be an https:// URL such as https://homeserver.local:8443")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (the device secret is a credential)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        raise ValueError("has an invalid port") from None
    return value.rstrip("/")


def check_device_id(value: str) -> str:
    if not _DEVICE_ID_RE.fullmatch(value):
        raise ValueError(
            "must be 1-64 letters, digits, dots, dashes or underscores, starting with a letter or digit"
        )
    return value


@section("auth")
class AuthSettings(Section):
    """The ``[auth]`` section: how the device authenticates to the Live API."""

    mode: Literal["api_key", "token_broker"] = "api_key"
    # token_broker mode: the broker's base URL, e.g. https://homeserver.local:8443
    broker_url: str | None = Field(None, validate_default=True)
    device_id: str | None = Field(None, validate_default=True)
    # A CA certificate (PEM) to trust for broker_url (a self-signed home server); unset: the
    # system's trust store.
    broker_ca_file: Path | None = None
    request_timeout_s: float = Field(10.0, gt=0, le=120)

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return _required_by_mode(info)
        return check_https_url(value)

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return _required_by_mode(info)
        return check_device_id(value)


def _required_by_mode(info: ValidationInfo) -> None:
    # Reported on the missing key itself, so the error names auth.broker_url / auth.device_id.
    if info.data.get("mode") == "token_broker":
        raise ValueError('is required when mode = "token_broker"')
    return None

"""Who may use the emulated Live API: a pluggable check on the request path and headers.

:class:`ApiKeyAuthenticator` accepts any non-empty ``x-goog-api-key`` on
``BidiGenerateContent`` and any ``Authorization: Token auth_tokens/...`` on
``BidiGenerateContentConstrained``. :class:`TokenAuthenticator` also issues ephemeral tokens
(the REST endpoint ``auth_tokens`` the SDK's ``auth_tokens.create`` calls) and enforces
them: single use, expiry, the new-session window and the locked Live settings. Key and
token values are never kept: decisions and records carry a presence flag, a short
fingerprint, and for issued tokens a digest to recognise them by.
"""

from __future__ import annotations

import copy
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from edgevoice_testbed.emulator.wire import normalise, snake_to_camel

# Close codes and reasons as the real service words them (seen in public issue threads).
UNREGISTERED_CALLER = (
    1008,
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API.",
)
INVALID_API_KEY = (1007, "API key not valid. Please pass a valid API key.")


def fingerprint(secret: str) -> str:
    """First 8 hex digits of sha256: enough to tell credentials apart, useless to an attacker."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:8]


@dataclass(frozen=True)
class AuthDecision:
    ok: bool
    scheme: str | None = None
    """``api_key`` or ``token``."""
    key_present: bool = False
    key_fingerprint: str | None = None
    close_code: int | None = None
    reason: str | None = None
    expires_t: float | None = None
    """An ephemeral token's expiry: the connection is closed then."""
    constraints: dict[str, Any] | None = None
    """The Live settings an ephemeral token locks (normalised setup), if any."""
    field_mask: str | None = None

    @classmethod
    def reject(cls, code_and_reason: tuple[int, str], **fields: object) -> AuthDecision:
        code, reason = code_and_reason
        return cls(ok=False, close_code=code, reason=reason, **fields)  # type: ignore[arg-type]


class Authenticator(Protocol):
    def check(self, path: str, headers: Mapping[str, str], now: float) -> AuthDecision:
        """Decide on a connection from its request path (with query) and headers."""
        ...


class ApiKeyAuthenticator:
    """Accept any non-empty API key (header or ``key=`` query) or ephemeral-token header.

    A later policy (ephemeral tokens single-use with expiry) can replace this object; the
    server only calls :meth:`check`.
    """

    def check(self, path: str, headers: Mapping[str, str], now: float) -> AuthDecision:
        constrained = urlsplit(path).path.endswith("BidiGenerateContentConstrained")
        if constrained:
            authorization = headers.get("authorization", "")
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "token" and token.startswith("auth_tokens/") and len(token) > 12:
                return AuthDecision(ok=True, scheme="token", key_present=True,
                                    key_fingerprint=fingerprint(token))
            return AuthDecision.reject(UNREGISTERED_CALLER, scheme="token",
                                       key_present=bool(token))
        key = headers.get("x-goog-api-key", "")
        if not key:
            query = parse_qs(urlsplit(path).query)
            key = (query.get("key") or [""])[0]
        if key.strip():
            return AuthDecision(ok=True, scheme="api_key", key_present=True,
                                key_fingerprint=fingerprint(key))
        return AuthDecision.reject(UNREGISTERED_CALLER, scheme="api_key", key_present=False)


# ---------------------------------------------------------------------------------------
# Ephemeral tokens: issued by the REST endpoint ``auth_tokens``, spent by connections.

V1ALPHA = "v1alpha"
# How a spent, expired or unknown token is refused: the websocket upgrade succeeds and the
# connection is closed after the setup frame, like every other credential problem the real
# service reports (close 1008 for an unregistered caller, 1007 for a bad API key). A public
# report saw 1011 "The service is currently unavailable" when a single-use token was reused
# for a resume; 1008 is the policy-violation code and leaves the client's resumption handle
# alone (1007 right after a resume tells a client to drop its handle).
TOKEN_INVALID = (1008, "The ephemeral token is not valid.")
TOKEN_EXPIRED = (1008, "The ephemeral token has expired.")
TOKEN_USED = (1008, "The ephemeral token has already been used.")
TOKEN_NEW_SESSIONS_OVER = (1008, "The ephemeral token can no longer open new sessions.")
TOKEN_WRONG_VERSION = (1008, "Ephemeral tokens are only accepted by the v1alpha API.")
# Defaults and limits from the SDK's CreateAuthTokenConfig documentation.
DEFAULT_EXPIRE_S = 30 * 60.0
DEFAULT_NEW_SESSION_S = 60.0
MAX_LIFETIME_S = 20 * 3600.0
TOKEN_PREFIX = "auth_tokens/"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass
class IssuedToken:
    """A token the emulator issued; times are on the emulator's clock. The token itself is
    not kept, only its digest (to recognise it) and a fingerprint (to report it)."""

    fingerprint: str
    issued_t: float
    expire_t: float
    new_session_expire_t: float
    uses: int
    """Connections it may open; 0 means no limit."""
    constraints: dict[str, Any] | None = None
    """``bidiGenerateContentSetup`` normalised to camelCase: the locked Live settings."""
    field_mask: str | None = None
    """None: everything in ``constraints`` is locked (and nothing else may be set)."""
    api_key_fingerprint: str | None = None
    used: int = 0
    connection_fingerprints: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    """Reasons of the connections it was refused for."""


@dataclass(frozen=True)
class TokenResult:
    """Answer of the REST endpoint: HTTP status and JSON body."""

    status: int
    body: dict[str, Any]


def _error(status: int, state: str, message: str) -> TokenResult:
    return TokenResult(status, {"error": {"code": status, "message": message, "status": state}})


class TokenAuthenticator(ApiKeyAuthenticator):
    """API keys as :class:`ApiKeyAuthenticator`, plus ephemeral tokens it issued itself.

    A token opens at most ``uses`` connections (each connection counts, a resume too: the
    SDK says a resume is free, but a public report saw the service refuse a reused
    single-use token on resume), none after its new-session window or its expiry, and only
    on the v1alpha ``BidiGenerateContentConstrained`` method. A connection still open when
    the token expires is closed (the service "may preemptively close the session").

    ``api_keys``: the keys the emulator accepts (None: any non-empty key).
    ``accept_unissued_tokens``: accept any ``auth_tokens/...`` it did not issue, as the
    plain authenticator does (the emulator's default, for tests that make tokens up).
    """

    def __init__(self, *, api_keys: Iterable[str] | None = None,
                 accept_unissued_tokens: bool = False) -> None:
        self._api_keys = None if api_keys is None else {_digest(key) for key in api_keys}
        self.accept_unissued_tokens = accept_unissued_tokens
        self.issued: list[IssuedToken] = []
        self._by_digest: dict[str, IssuedToken] = {}

    def key_valid(self, key: str) -> bool:
        if not key.strip() or key.startswith(TOKEN_PREFIX):
            return False
        return self._api_keys is None or _digest(key) in self._api_keys

    # REST: auth_tokens.create ------------------------------------------------------------

    def issue(self, version: str, headers: Mapping[str, str], body: Any, wall_now: datetime,
              now: float) -> TokenResult:
        """``POST /{version}/auth_tokens``: mint a token, or say why not (Google's words)."""
        if version != V1ALPHA:
            return _error(404, "NOT_FOUND", "")
        key = headers.get("x-goog-api-key", "")
        if not key.strip():
            return _error(403, "PERMISSION_DENIED", UNREGISTERED_CALLER[1])
        if not self.key_valid(key):
            return _error(400, "INVALID_ARGUMENT", INVALID_API_KEY[1])
        if not isinstance(body, dict):
            return _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        try:
            uses = _uses(body.get("uses", 1))
            expire = _time(body.get("expireTime"), wall_now, DEFAULT_EXPIRE_S, "expire_time")
            new_session = _time(body.get("newSessionExpireTime"), wall_now, DEFAULT_NEW_SESSION_S,
                                "new_session_expire_time")
            setup = body.get("bidiGenerateContentSetup")
            if setup is not None and not isinstance(setup, dict):
                raise ValueError("bidi_generate_content_setup must be an object.")
            mask = body.get("fieldMask")
            if mask is not None and not isinstance(mask, str):
                raise ValueError("field_mask must be a string.")
        except ValueError as exc:
            return _error(400, "INVALID_ARGUMENT", str(exc))
        name = TOKEN_PREFIX + secrets.token_hex(32)
        record = IssuedToken(
            fingerprint=fingerprint(name),
            issued_t=now,
            expire_t=now + (expire - wall_now).total_seconds(),
            new_session_expire_t=now + (new_session - wall_now).total_seconds(),
            uses=uses,
            constraints=normalise(setup) if setup is not None else None,
            field_mask=mask,
            api_key_fingerprint=fingerprint(key),
        )
        self.issued.append(record)
        self._by_digest[_digest(name)] = record
        return TokenResult(200, {
            "name": name,
            "expireTime": _rfc3339(expire),
            "newSessionExpireTime": _rfc3339(new_session),
            "uses": uses,
        })

    # Websocket connections -------------------------------------------------------------------

    def check(self, path: str, headers: Mapping[str, str], now: float) -> AuthDecision:
        parts = urlsplit(path)
        if not parts.path.endswith("BidiGenerateContentConstrained"):
            key = headers.get("x-goog-api-key", "") or (parse_qs(parts.query).get("key") or [""])[0]
            if not key.strip():
                return AuthDecision.reject(UNREGISTERED_CALLER, scheme="api_key", key_present=False)
            if not self.key_valid(key):
                return AuthDecision.reject(INVALID_API_KEY, scheme="api_key", key_present=True,
                                           key_fingerprint=fingerprint(key))
            return AuthDecision(ok=True, scheme="api_key", key_present=True,
                                key_fingerprint=fingerprint(key))
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "token":
            token = (parse_qs(parts.query).get("access_token") or [""])[0]
        token = token.strip()
        if not token.startswith(TOKEN_PREFIX) or len(token) <= len(TOKEN_PREFIX):
            return AuthDecision.reject(UNREGISTERED_CALLER, scheme="token", key_present=bool(token))
        fields: dict[str, Any] = {"scheme": "token", "key_present": True,
                                  "key_fingerprint": fingerprint(token)}
        record = self._by_digest.get(_digest(token))
        if record is None:
            if self.accept_unissued_tokens:
                return AuthDecision(ok=True, **fields)
            return AuthDecision.reject(TOKEN_INVALID, **fields)
        refusal = None
        if f".{V1ALPHA}." not in parts.path:
            refusal = TOKEN_WRONG_VERSION
        elif now >= record.expire_t:
            refusal = TOKEN_EXPIRED
        elif record.uses and record.used >= record.uses:
            refusal = TOKEN_USED
        elif now >= record.new_session_expire_t:
            refusal = TOKEN_NEW_SESSIONS_OVER
        if refusal is not None:
            record.refusals.append(refusal[1])
            return AuthDecision.reject(refusal, **fields)
        record.used += 1
        return AuthDecision(ok=True, expires_t=record.expire_t, constraints=record.constraints,
                            field_mask=record.field_mask, **fields)


def apply_constraints(setup: dict[str, Any], constraints: dict[str, Any],
                      field_mask: str | None) -> tuple[dict[str, Any], list[str]]:
    """The setup a token's connection runs with, and the fields the token locked.

    Without a field mask the whole constraint is the setup (what the client set is
    ignored, as the SDK documents for a token created without ``lock_additional_fields``);
    with one, each masked path takes the token's value (or is removed if the token has
    none) and the rest is the client's.
    """
    if field_mask is None:
        effective = copy.deepcopy(constraints)
        if "model" not in effective and "model" in setup:
            effective["model"] = setup["model"]
        return effective, ["*"]
    effective = copy.deepcopy(setup)
    locked = []
    for raw in field_mask.split(","):
        path = [snake_to_camel(part.strip()) for part in raw.strip().split(".") if part.strip()]
        if not path:
            continue
        locked.append(".".join(path))
        found, value = _get_path(constraints, path)
        if found:
            _set_path(effective, path, copy.deepcopy(value))
        else:
            _delete_path(effective, path)
    return effective, locked


def _get_path(data: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return False, None
        data = data[part]
    return True, data


def _set_path(data: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[path[-1]] = value


def _delete_path(data: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        data = data.get(part)  # type: ignore[assignment]
        if not isinstance(data, dict):
            return
    data.pop(path[-1], None)


def _uses(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("uses must be an integer.")
    try:
        uses = int(value)
    except ValueError:
        raise ValueError("uses must be an integer.") from None
    if uses < 0:
        raise ValueError("uses must not be negative.")
    return uses


def _time(value: Any, wall_now: datetime, default_s: float, name: str) -> datetime:
    if value is None:
        return wall_now + timedelta(seconds=default_s)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 timestamp.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an RFC 3339 timestamp.") from None
    if moment.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone.")
    seconds = (moment - wall_now).total_seconds()
    if seconds <= 0:
        raise ValueError(f"{name} must be in the future.")
    if seconds > MAX_LIFETIME_S:
        raise ValueError(f"{name} must be less than 20 hours in the future.")
    return moment


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

"""Who may use the emulated Live API: a pluggable check on the request path and headers.

The default accepts any non-empty ``x-goog-api-key`` on ``BidiGenerateContent`` and any
``Authorization: Token auth_tokens/...`` on ``BidiGenerateContentConstrained``. Key values
are never kept: a decision carries a presence flag and a short fingerprint only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

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

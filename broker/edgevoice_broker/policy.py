"""The token broker's decisions, without I/O: who gets a token and when to say no.

:class:`BrokerPolicy` is fed the facts of a request (device id, client address, whether
the secret verified) and the time, and answers with ``None`` (mint a token) or a
:class:`Refusal` (HTTP status and a JSON error). The adapter in :mod:`broker` does the
hashing, the HTTP and the upstream call.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from edgevoice.security.device_secrets import DUMMY_HASH
from edgevoice_broker.settings import BrokerRateSettings, BrokerSettings

# Failure buckets are kept per client address; a flood of addresses must not grow memory.
MAX_CLIENT_BUCKETS = 4096


class TokenBucket:
    """``capacity`` tokens, refilled at ``per_second``; time is passed in."""

    def __init__(self, capacity: float, per_second: float, now: float) -> None:
        self.capacity = float(capacity)
        self.per_second = float(per_second)
        self._tokens = float(capacity)
        self._t = now

    def _refill(self, now: float) -> None:
        if now > self._t:
            self._tokens = min(self.capacity, self._tokens + (now - self._t) * self.per_second)
            self._t = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= 1.0

    def full(self, now: float) -> bool:
        self._refill(now)
        return self._tokens >= self.capacity

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.per_second


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str
    """Google-style status word: UNAUTHENTICATED, PERMISSION_DENIED, RESOURCE_EXHAUSTED, ..."""
    message: str
    retry_after_s: float | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.status, "status": self.reason, "message": self.message}}


def unauthenticated(message: str) -> Refusal:
    return Refusal(401, "UNAUTHENTICATED", message)


class BrokerPolicy:
    def __init__(self, settings: BrokerSettings) -> None:
        self._settings = settings
        self._device_buckets: dict[str, TokenBucket] = {}
        self._client_buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    @property
    def settings(self) -> BrokerSettings:
        return self._settings

    def update(self, settings: BrokerSettings) -> None:
        """New configuration (devices added or revoked); rate limit state carries over."""
        if settings.rate_limit != self._settings.rate_limit:
            self._device_buckets.clear()
            self._client_buckets.clear()
        self._settings = settings

    def admit(self, client: str, now: float) -> Refusal | None:
        """Before the (slow) secret check: refuse a client that keeps failing."""
        bucket = self._client_buckets.get(client)
        if bucket is not None and not bucket.available(now):
            wait = bucket.take(now)
            return Refusal(
                429, "RESOURCE_EXHAUSTED", "too many failed attempts from this address; try again later", wait
            )
        return None

    def hash_for(self, device_id: str) -> str:
        """The hash to verify the presented secret against (a dummy for unknown devices,
        so both cost the same time)."""
        device = self._settings.device(device_id)
        return device.secret_hash if device is not None else DUMMY_HASH

    def decide(self, device_id: str, client: str, verified: bool, now: float) -> Refusal | None:
        """After the secret check: None to mint a token, else why not."""
        device = self._settings.device(device_id)
        if device is None or not verified:
            self._client_bucket(client, now).take(now)
            return unauthenticated("unknown device or wrong device secret")
        if device.revoked:
            return Refusal(403, "PERMISSION_DENIED", f"device {device_id} is revoked")
        bucket = self._device_buckets.get(device_id)
        if bucket is None:
            bucket = self._device_buckets[device_id] = _bucket(self._settings.rate_limit, now)
        wait = bucket.take(now)
        if wait > 0:
            return Refusal(
                429,
                "RESOURCE_EXHAUSTED",
                f"device {device_id} asks for tokens too often; try again later",
                wait,
            )
        return None

    def _client_bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._client_buckets.get(client)
        if bucket is not None:
            self._client_buckets.move_to_end(client)
            return bucket
        if len(self._client_buckets) >= MAX_CLIENT_BUCKETS:
            # Forget a client whose bucket has refilled (it lost nothing); else the oldest.
            for key, old in self._client_buckets.items():
                if old.full(now):
                    del self._client_buckets[key]
                    break
            else:
                self._client_buckets.popitem(last=False)
        rates = self._settings.rate_limit
        bucket = TokenBucket(rates.failed_burst, rates.failed_per_minute / 60.0, now)
        self._client_buckets[client] = bucket
        return bucket


def _bucket(rates: BrokerRateSettings, now: float) -> TokenBucket:
    return TokenBucket(rates.burst, rates.per_minute / 60.0, now)


__all__ = ["BrokerPolicy", "Refusal", "TokenBucket", "unauthenticated"]

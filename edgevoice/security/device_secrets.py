"""Device secrets: made once, shown once, stored only as a salted scrypt hash.

A secret is 32 random bytes (URL-safe base64, 43 characters): far beyond guessing, so the
hash's job is to make a stolen broker configuration useless, and scrypt's cost makes even
an offline attempt at a weak, hand-typed secret expensive. Hashes carry their parameters
(``scrypt$n=16384,r=8,p=1$<salt>$<hash>``) so the cost can be raised later without breaking
the devices already enrolled. Comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

SCHEME = "scrypt"
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
SECRET_BYTES = 32
# hashlib.scrypt refuses work needing more than maxmem; 128 * r * n bytes plus slack.
_MAXMEM = 64 * 2**20

_HASH_RE = re.compile(r"^scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9_-]+=*)\$([A-Za-z0-9_-]+=*)$")


@dataclass(frozen=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        return f"{SCHEME}$n={self.n},r={self.r},p={self.p}${_b64(self.salt)}${_b64(self.digest)}"


def generate_secret() -> str:
    """A new device secret (43 URL-safe characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """The encoded salted scrypt hash of ``secret``."""
    salt = secrets.token_bytes(SALT_BYTES)
    return ScryptHash(n, r, p, salt, _scrypt(secret, salt, n, r, p)).encode()


def parse_hash(encoded: str) -> ScryptHash:
    """Decode a stored hash; ValueError says what is wrong (never echoing the value)."""
    match = _HASH_RE.fullmatch(encoded.strip())
    if not match:
        raise ValueError(
            "is not a device secret hash (expected scrypt$n=N,r=R,p=P$SALT$HASH, "
            "as written by 'edgevoice token-broker add-device')"
        )
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise ValueError("has scrypt parameters out of range (n a power of two up to 2^20, r 1-32, p 1-16)")
    if 128 * r * n > _MAXMEM // 2:
        raise ValueError("has scrypt parameters that need too much memory")
    try:
        salt, digest = _unb64(match.group(4)), _unb64(match.group(5))
    except (binascii.Error, ValueError):
        raise ValueError("has a salt or hash that is not base64") from None
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("has a salt or hash that is too short")
    return ScryptHash(n, r, p, salt, digest)


def verify_secret(secret: str, encoded: str) -> bool:
    """True if ``secret`` matches the stored hash. Constant-time in the comparison; a bad
    hash verifies nothing."""
    try:
        stored = parse_hash(encoded)
    except ValueError:
        return False
    candidate = _scrypt(secret, stored.salt, stored.n, stored.r, stored.p, len(stored.digest))
    return hmac.compare_digest(candidate, stored.digest)


def fingerprint(secret: str) -> str:
    """First 12 hex digits of sha256: tells tokens apart in a log, reveals nothing useful."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, length: int = HASH_BYTES) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    text = text.rstrip("=")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Verified against when the device is unknown, so an unknown id costs the same time as a
# wrong secret and response times do not reveal which devices exist.
DUMMY_HASH = ScryptHash(DEFAULT_N, DEFAULT_R, DEFAULT_P, b"\0" * SALT_BYTES, b"\0" * HASH_BYTES).encode()


__all__ = [
    "DUMMY_HASH",
    "ScryptHash",
    "fingerprint",
    "generate_secret",
    "hash_secret",
    "parse_hash",
    "verify_secret",
]

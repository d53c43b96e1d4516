"""The spoken confirmation code that gates unlocking and disarming (sans-IO, time passed in).

The model passes what the user said as ``confirmation``. Codes are compared ignoring case,
spaces and punctuation, with spoken digits read as digits ("one two three four" ==
"1234" == "12-34"). After ``max_failures`` wrong codes in a row the guard refuses every
attempt for ``lockout_s`` seconds, so the model cannot be talked into guessing.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import Enum

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_WORD = re.compile(r"[a-z]+")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_code(text: str) -> str:
    lowered = _WORD.sub(
        lambda match: _DIGIT_WORDS.get(match.group(0), match.group(0)), text.lower()
    )
    return _NOT_ALNUM.sub("", lowered)


class Verdict(Enum):
    ACCEPTED = "accepted"
    NOT_CONFIGURED = "not configured"
    MISSING = "missing"
    WRONG = "wrong"
    LOCKED_OUT = "locked out"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    retry_after_s: float = 0.0

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


class ConfirmationGuard:
    def __init__(self, code: str | None, *, max_failures: int = 3, lockout_s: float = 300.0):
        # A code of only punctuation would normalise to "" and match anything: treat as unset.
        self._code = (normalize_code(code) if code else "") or None
        self._max_failures = max_failures
        self._lockout_s = lockout_s
        self._failures = 0
        self._locked_until = float("-inf")

    def __repr__(self) -> str:  # the code never appears in a repr or a log line
        return f"ConfirmationGuard(configured={self._code is not None}, failures={self._failures})"

    @property
    def configured(self) -> bool:
        return self._code is not None

    def check(self, spoken: str | None, now: float) -> Check:
        if self._code is None:
            return Check(Verdict.NOT_CONFIGURED)
        if now < self._locked_until:
            return Check(Verdict.LOCKED_OUT, retry_after_s=self._locked_until - now)
        if not spoken or not normalize_code(spoken):
            return Check(Verdict.MISSING)
        if hmac.compare_digest(normalize_code(spoken).encode(), self._code.encode()):
            self._failures = 0
            return Check(Verdict.ACCEPTED)
        self._failures += 1
        if self._failures >= self._max_failures:
            self._failures = 0
            self._locked_until = now + self._lockout_s
            return Check(Verdict.LOCKED_OUT, retry_after_s=self._lockout_s)
        return Check(Verdict.WRONG)


__all__ = ["Check", "ConfirmationGuard", "Verdict", "normalize_code"]

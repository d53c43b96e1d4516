"""How spoken device names are compared: case, spacing and a leading article don't matter."""

from __future__ import annotations

import re

_SPACES = re.compile(r"[\s_]+")
_ARTICLE = re.compile(r"^(the|my|our)(\s+|$)")


def normalize_name(text: str) -> str:
    """``"  The Kitchen_Light "`` -> ``"kitchen light"``."""
    text = _SPACES.sub(" ", text.strip().lower())
    return _ARTICLE.sub("", text).strip(" .!?,")


def singular(text: str) -> str:
    """A forgiving fallback for plurals: ``"kitchen lights"`` -> ``"kitchen light"``."""
    return " ".join(
        word[:-1] if len(word) > 3 and word.endswith("s") else word for word in text.split(" ")
    )

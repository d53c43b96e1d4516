"""Wire-format helpers for the Live API emulator: key normalisation and frame encoding.

The SDK mixes spellings (``realtime_input`` at the top level, ``mimeType`` or ``mime_type``
inside); the documented WebSocket reference uses camelCase throughout. Everything the
emulator reads goes through :func:`normalise` first, so the protocol code sees one spelling.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Values under these keys are user data (function arguments, function results, JSON
# schemas, examples): their inner keys are names chosen by the client and must survive
# untouched, so normalisation stops there.
OPAQUE_KEYS = frozenset(
    {"args", "response", "parametersJsonSchema", "responseJsonSchema", "default", "example"}
)
# The keys of these maps are names chosen by the client (schema property names); their
# values are schemas again and are normalised.
NAME_MAP_KEYS = frozenset({"properties"})

_RATE_RE = re.compile(r"(?:^|;)\s*rate\s*=\s*(\d+)\s*(?:;|$)")


def snake_to_camel(name: str) -> str:
    """``automatic_activity_detection`` -> ``automaticActivityDetection``; camelCase passes."""
    if "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest if part)


def normalise(value: Any) -> Any:
    """Return ``value`` with every mapping key in camelCase, recursively.

    User data (see :data:`OPAQUE_KEYS` and :data:`NAME_MAP_KEYS`) keeps its keys.
    """
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            camel = snake_to_camel(key) if isinstance(key, str) else key
            if camel in OPAQUE_KEYS:
                result[camel] = item
            elif camel in NAME_MAP_KEYS and isinstance(item, dict):
                result[camel] = {name: normalise(schema) for name, schema in item.items()}
            else:
                result[camel] = normalise(item)
        return result
    if isinstance(value, list):
        return [normalise(item) for item in value]
    return value


def encode_frame(message: dict[str, Any]) -> str:
    """Serialise a server message as the compact JSON text frame the server sends."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def rate_from_mime(mime_type: str | None) -> int | None:
    """Sample rate named by ``audio/pcm;rate=16000``; None when the type names none."""
    if not mime_type:
        return None
    _, _, params = mime_type.partition(";")
    match = _RATE_RE.search(params)
    return int(match.group(1)) if match else None


def duration_string(seconds: float) -> str:
    """Protobuf JSON duration: ``10s``, ``0.5s``."""
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0") + "s"

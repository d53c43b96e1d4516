"""Hypothesis strategies for hostile Live API server frames (what a broken or malicious
server could send the daemon), as emulator injections."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

PLACEMENTS = ("before_reply", "after_chunk:1", "after_reply")
KNOWN_KEYS = (
    "setupComplete",
    "serverContent",
    "toolCall",
    "toolCallCancellation",
    "goAway",
    "sessionResumptionUpdate",
    "usageMetadata",
)
SNAKE_KEYS = (
    "setup_complete",
    "server_content",
    "tool_call",
    "tool_call_cancellation",
    "go_away",
    "session_resumption_update",
    "usage_metadata",
)
# Beyond the client's 16 MiB max_size (edgevoice/live/sdk.py): built once, sent rarely.
HUGE_FRAME = '{"serverContent":{"outputTranscription":{"text":"' + "x" * (17 * 2**20) + '"}}}'

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
wrong_types = st.one_of(
    st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.booleans(), st.none()
)


def text_frame(message: Any) -> dict[str, str]:
    return {"text": json.dumps(message)}


def binary_frame(data: bytes) -> dict[str, str]:
    return {"binary_base64": base64.b64encode(data).decode("ascii")}


def audio(mime: Any, data: Any) -> dict[str, Any]:
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": mime, "data": data}}]}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


# Each entry: (kind, strategy of frame specs {"text"|"binary_base64": ...}).
FRAMES: dict[str, st.SearchStrategy[dict[str, str]]] = {
    "invalid JSON": st.one_of(
        st.sampled_from(["{", "not json", '{"serverContent": }', "", "\x00\x01", '{"a":1}}']),
        st.text(max_size=40).filter(_not_json),
    ).map(lambda text: {"text": text}),
    "binary garbage": st.binary(min_size=1, max_size=64).map(binary_frame),
    "binary JSON": st.sampled_from(KNOWN_KEYS).map(lambda key: binary_frame(json.dumps({key: {}}).encode())),
    "JSON that is not an object": st.one_of(
        st.sampled_from(["[]", "null", "42", '"text"', "true", "[{}]"]).map(lambda text: {"text": text}),
        st.lists(json_values, max_size=3).map(text_frame),
    ),
    "unknown or snake_case top-level key": st.one_of(
        st.sampled_from(SNAKE_KEYS), st.text(min_size=1, max_size=12).filter(lambda k: k not in KNOWN_KEYS)
    ).flatmap(lambda key: json_values.map(lambda value: text_frame({key: value}))),
    "wrong types": st.one_of(
        st.tuples(st.sampled_from(KNOWN_KEYS), wrong_types).map(lambda kv: {kv[0]: kv[1]}),
        wrong_types.map(lambda v: {"serverContent": {"turnComplete": v, "interrupted": v}}),
        wrong_types.map(lambda v: {"serverContent": {"modelTurn": {"parts": v}}}),
        wrong_types.map(lambda v: {"serverContent": {"outputTranscription": v}}),
        wrong_types.map(lambda v: {"toolCall": {"functionCalls": v}}),
        wrong_types.map(lambda v: {"toolCallCancellation": {"ids": v}}),
        wrong_types.map(lambda v: {"usageMetadata": {"totalTokenCount": v}}),
        st.dictionaries(st.sampled_from(KNOWN_KEYS), json_values, min_size=1, max_size=3),
    ).map(text_frame),
    "invalid base64 audio": st.sampled_from(["!!!not base64!!!", "QUJD=", "A", "====", "\u00e9\u00e9"]).map(
        lambda data: text_frame(audio("audio/pcm;rate=24000", data))
    ),
    "audio at an odd rate or length": st.tuples(
        st.sampled_from(
            [
                "audio/pcm;rate=16000",
                "audio/pcm;rate=48000",
                "audio/pcm;rate=8000",
                "audio/pcm;rate=0",
                "audio/pcm;rate=999999999",
                "audio/pcm;rate=abc",
                "audio/pcm",
                "audio/pcm;rate=24000",
                "image/png",
                "",
            ]
        ),
        st.binary(min_size=1, max_size=3001),
    ).map(lambda md: text_frame(audio(md[0], b64(md[1])))),
    "tool call without id or with garbage args": st.one_of(
        st.just(
            {"toolCall": {"functionCalls": [{"name": "set_light", "args": {"entity": "kitchen light"}}]}}
        ),
        json_values.map(
            lambda args: {"toolCall": {"functionCalls": [{"id": "h-1", "name": "set_light", "args": args}]}}
        ),
        st.tuples(st.text(max_size=30), json_values).map(
            lambda na: {"toolCall": {"functionCalls": [{"id": "h-2", "name": na[0], "args": na[1]}]}}
        ),
        st.sampled_from(["", "x" * 5000, "\u202e\u0000id"]).map(
            lambda call_id: {
                "toolCall": {
                    "functionCalls": [
                        {"id": call_id, "name": "get_state", "args": {"entity": "kitchen light"}}
                    ]
                }
            }
        ),
    ).map(text_frame),
    "messages out of order": st.sampled_from(
        [
            {"serverContent": {"turnComplete": True}},
            {"serverContent": {"generationComplete": True}},
            {"serverContent": {"interrupted": True}},
            {"serverContent": {"interrupted": True, "turnComplete": True}},
            {"setupComplete": {}},
            {"serverContent": {"inputTranscription": {"text": "\u0000" * 3 + "x" * 10000}}},
            {"toolCallCancellation": {"ids": ["never-issued", ""]}},
            {"toolCallCancellation": {}},
        ]
    ).map(text_frame),
    "garbage resumption update": st.one_of(
        st.sampled_from(
            [
                {"sessionResumptionUpdate": {"newHandle": "garbage-handle", "resumable": True}},
                {"sessionResumptionUpdate": {"resumable": True}},
                {"sessionResumptionUpdate": {"newHandle": "", "resumable": True}},
                {"sessionResumptionUpdate": {"newHandle": "x" * 100000, "resumable": True}},
            ]
        ),
        wrong_types.map(lambda v: {"sessionResumptionUpdate": {"newHandle": v, "resumable": v}}),
    ).map(text_frame),
    "garbage goAway": st.one_of(
        st.sampled_from(["-5s", "abc", "1e9s", "99999999999999999999s", "0s", "0.001s", ""]),
        wrong_types,
    ).map(lambda left: text_frame({"goAway": {"timeLeft": left}})),
    "deeply nested JSON": st.sampled_from([100, 5000, 200000]).map(
        lambda depth: {"text": '{"serverContent":' + "[" * depth + "]" * depth + "}"}
    ),
    "huge frame": st.just({"text": HUGE_FRAME}),
}

KINDS = tuple(FRAMES)


@dataclass(frozen=True)
class Hostile:
    """One hostile frame: its kind and the emulator injection (payload and placement)."""

    kind: str
    inject: dict[str, str]

    def __repr__(self) -> str:
        # Failure reports stay readable when the payload is 17 MB.
        payload = self.inject.get("text", self.inject.get("binary_base64", ""))
        shown = payload if len(payload) <= 120 else f"{payload[:120]}... ({len(payload)} chars)"
        form = "text" if "text" in self.inject else "binary_base64"
        return f"Hostile({self.kind!r}, when={self.inject['when']!r}, {form}={shown!r})"


@st.composite
def hostile_case(draw: st.DrawFn) -> list[Hostile]:
    """One to three hostile frames at chosen points of a reply."""
    count = draw(st.integers(1, 3))
    frames = []
    for _ in range(count):
        kind = draw(st.sampled_from(KINDS))
        frame = dict(draw(FRAMES[kind]))
        frame["when"] = draw(st.sampled_from(PLACEMENTS))
        frames.append(Hostile(kind, frame))
    return frames


# One fixed frame per kind, run as explicit examples so every kind is exercised every run.
REPRESENTATIVE: dict[str, dict[str, str]] = {
    "invalid JSON": {"text": '{"serverContent": '},
    "binary garbage": binary_frame(b"\xff\xfe\x00garbage\x80"),
    "binary JSON": binary_frame(b'{"serverContent": {"turnComplete": true}}'),
    "JSON that is not an object": {"text": "[1, 2, 3]"},
    "unknown or snake_case top-level key": text_frame({"server_content": {"turnComplete": True}}),
    "wrong types": text_frame({"serverContent": {"modelTurn": {"parts": "not a list"}}}),
    "invalid base64 audio": text_frame(audio("audio/pcm;rate=24000", "!!!not base64!!!")),
    "audio at an odd rate or length": text_frame(audio("audio/pcm;rate=16000", b64(bytes(range(255))))),
    "tool call without id or with garbage args": text_frame(
        {
            "toolCall": {
                "functionCalls": [{"id": "h-3", "name": "set_light", "args": {"entity": 42, "on": "x"}}]
            }
        }
    ),
    "messages out of order": text_frame({"serverContent": {"turnComplete": True}}),
    "garbage resumption update": text_frame(
        {"sessionResumptionUpdate": {"newHandle": "garbage-handle", "resumable": True}}
    ),
    "garbage goAway": text_frame({"goAway": {"timeLeft": "99999999999999999999s"}}),
    "deeply nested JSON": {"text": '{"serverContent":' + "[" * 200000 + "]" * 200000 + "}"},
    "huge frame": {"text": HUGE_FRAME},
}
assert set(REPRESENTATIVE) == set(FRAMES)

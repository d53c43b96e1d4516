"""Server messages (google-genai's ``LiveServerMessage``, as the SDK door hands them) into
core events.

One frame can carry several things at once (audio and a transcription, turnComplete and
usage): every field present becomes an event, in the order the protocol implies. Odd input
(audio at another rate, an odd byte count, a tool call without an id) is repaired where
that is safe and reported as a :class:`ServerProblem` otherwise; nothing here raises.

The service has been seen to send one function call twice, as ``toolCall`` and inside
``serverContent.modelTurn.parts[].functionCall``: with a :class:`RecentCallIds` per
connection, each call id becomes one :class:`ToolCallsReceived`, whichever comes first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from edgevoice.core.events import (
    Event,
    GenerationComplete,
    GoAway,
    Interrupted,
    ResumptionUpdate,
    ServerAudio,
    ServerProblem,
    ToolCall,
    ToolCallsCancelled,
    ToolCallsReceived,
    Transcript,
    TurnComplete,
)

OUTPUT_RATE = 24000
_RATE_RE = re.compile(r"rate=(\d+)")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class RecentCallIds:
    """The last ``capacity`` function call ids seen on one connection (bounded memory)."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, call_id: str) -> bool:
        """True the first time ``call_id`` is seen (and remember it)."""
        if call_id in self._ids:
            self._ids.move_to_end(call_id)
            return False
        self._ids[call_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)


def events_from_message(
    message: Any, link: int, t: float, seen_calls: RecentCallIds | None = None
) -> list[Event]:
    """Events of one ``LiveServerMessage``; ``seen_calls`` drops calls already reported."""
    events: list[Event] = []
    calls: list[ToolCall] = []
    content = message.server_content
    if content is not None:
        if content.input_transcription is not None and content.input_transcription.text:
            events.append(Transcript(link, "user", content.input_transcription.text, t))
        if content.interrupted:
            events.append(Interrupted(link, t))
        if content.model_turn is not None:
            for part in content.model_turn.parts or ():
                events.extend(_audio_events(part, link, t))
                if part.function_call is not None:
                    _add_call(part.function_call, calls, events, seen_calls, link, t)
        if content.output_transcription is not None and content.output_transcription.text:
            events.append(Transcript(link, "model", content.output_transcription.text, t))
        if content.generation_complete:
            events.append(GenerationComplete(link, t))
        if content.turn_complete:
            events.append(TurnComplete(link, t))
    if message.tool_call is not None:
        for call in message.tool_call.function_calls or ():
            _add_call(call, calls, events, seen_calls, link, t)
    if calls:
        events.append(ToolCallsReceived(link, tuple(calls), t))
    if message.tool_call_cancellation is not None:
        ids = tuple(i for i in (message.tool_call_cancellation.ids or ()) if i)
        if ids:
            events.append(ToolCallsCancelled(link, ids, t))
    if message.session_resumption_update is not None:
        update = message.session_resumption_update
        events.append(ResumptionUpdate(link, update.new_handle or None, bool(update.resumable), t))
    if message.go_away is not None:
        events.append(GoAway(link, parse_duration(message.go_away.time_left), t))
    if not events and all(getattr(message, name) is None for name in type(message).model_fields):
        # What the SDK makes of an empty frame, "{}", "[]" or "null": nothing to act on,
        # but a server that sends it is worth a line in the log.
        events.append(ServerProblem(link, "an empty server message: ignored", t))
    return events


def _add_call(
    call: Any,
    calls: list[ToolCall],
    events: list[Event],
    seen_calls: RecentCallIds | None,
    link: int,
    t: float,
) -> None:
    if not call.id:
        events.append(ServerProblem(link, f"tool call {call.name!r} without an id: ignored", t))
        return
    if any(c.id == call.id for c in calls):
        return
    if seen_calls is not None and not seen_calls.first_time(call.id):
        return
    args: Any = call.args
    calls.append(ToolCall(id=call.id, name=call.name or "", args=args if isinstance(args, dict) else {}))


def parse_duration(value: object, default: float = 10.0) -> float:
    """A protobuf Duration as JSON ("12.5s"); a missing or odd value gives ``default``."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (match := _DURATION_RE.match(value)):
        return float(match.group(1))
    return default


def _audio_events(part: Any, link: int, t: float) -> list[Event]:
    blob = part.inline_data
    if blob is None or not blob.data:
        return []
    mime = blob.mime_type or ""
    if mime and not mime.startswith("audio/pcm"):
        return [ServerProblem(link, f"model sent {mime!r}, not PCM audio: ignored", t)]
    data = blob.data
    problems: list[Event] = []
    if len(data) % 2:
        problems.append(ServerProblem(link, f"audio chunk of {len(data)} bytes (odd): last byte dropped", t))
        data = data[:-1]
    match = _RATE_RE.search(mime)
    rate = int(match.group(1)) if match else OUTPUT_RATE
    if rate != OUTPUT_RATE:
        if not 4000 <= rate <= 192000:
            return [*problems, ServerProblem(link, f"audio at {rate} Hz cannot be played: ignored", t)]
        # Only a model that speaks at another rate needs these (about 15 MB resident).
        import numpy as np
        import soxr

        samples = np.frombuffer(data, dtype="<i2")
        data = soxr.resample(samples, rate, OUTPUT_RATE).astype("<i2").tobytes()
        problems.append(ServerProblem(link, f"audio at {rate} Hz resampled to {OUTPUT_RATE} Hz", t))
    return [*problems, ServerAudio(link, data, t)] if data else problems

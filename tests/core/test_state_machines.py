"""The core's machines: their tables, events that do not fit, and a bug inside handle."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.core.connection import LINK_TRANSITIONS, LinkState, LinkTrigger
from edgevoice.core.events import (
    CloseLink,
    Connect,
    DeviceState,
    GenerationComplete,
    GoAway,
    Interrupted,
    LinkDown,
    LinkUp,
    Log,
    PlayAudio,
    PlaybackIdle,
    Pressed,
    Released,
    ResumptionUpdate,
    ServerAudio,
    StopPlayback,
    ToolCall,
    ToolCallsReceived,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.core.ledger import UTTERANCE_TRANSITIONS, UtteranceState
from edgevoice.core.machine import Machine, NotInState
from edgevoice.core.turn import TURN_TRANSITIONS, TurnState
from tests.core.test_conversation import Harness, mic


@pytest.mark.parametrize(
    ("table", "states"),
    [(LINK_TRANSITIONS, LinkState), (TURN_TRANSITIONS, TurnState), (UTTERANCE_TRANSITIONS, UtteranceState)],
)
def test_every_state_of_a_machine_is_reached_by_some_move_and_no_move_leaves_the_enum(table, states) -> None:
    targets = {target for moves in table.values() for target in moves.values()}
    assert targets == set(states)


def test_a_trigger_that_does_not_fit_is_refused_before_anything_changes() -> None:
    machine: Machine[LinkState, LinkTrigger] = Machine(LinkState.BACKING_OFF, LINK_TRANSITIONS)
    with pytest.raises(NotInState, match="SETUP_COMPLETE does not fit state BACKING_OFF"):
        machine.fire(LinkTrigger.SETUP_COMPLETE)
    assert machine.state is LinkState.BACKING_OFF


def test_a_second_setup_complete_on_a_live_connection_is_logged_and_ignored() -> None:
    h = Harness()
    h.up()
    actions = h.send(LinkUp(h.core.link, False, h.t))
    [log] = [a for a in actions if isinstance(a, Log)]
    assert log.level == logging.WARNING and "SETUP_COMPLETE does not fit state UP" in log.message
    assert h.core.connection_state is LinkState.UP and len(h.of(Connect)) == 1


def test_a_bug_while_handling_an_event_leaves_the_connection_keeps_the_ledger_and_resumes() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    # A malformed event the core was never meant to see: iterating None raises inside handle.
    actions = h.send(ToolCallsReceived(link, None, h.t))  # type: ignore[arg-type]
    assert any(
        isinstance(a, Log) and a.level == logging.ERROR and "internal error" in a.message for a in actions
    )
    assert CloseLink(link, "recovering from an internal error") in actions
    assert any(isinstance(a, StopPlayback) for a in actions)
    assert h.core.turn_state is TurnState.IDLE
    assert h.core.pending_utterances == 1  # the question is kept
    h.up(resumed=True)
    resent = [u for u in h.wire if u.link == h.core.link]
    assert len(resent) == 1 and bytes(resent[0].audio) == mic(1000, 5000)
    h.reply()
    assert h.core.pending_utterances == 0 and h.core.idle
    assert h.core.status is not None and h.core.status.state is DeviceState.IDLE


def test_audio_of_a_connection_already_left_is_dropped() -> None:
    h = Harness()
    h.up()
    old = h.core.link
    h.send(ToolCallsReceived(old, None, h.t))  # type: ignore[arg-type]
    h.up()
    played = len(h.of(PlayAudio))
    h.send(ServerAudio(old, b"\x01\x00", h.t))
    assert len(h.of(PlayAudio)) == played


SERVER_STEPS = [
    "audio",
    "model_text",
    "user_text",
    "generation_complete",
    "turn_complete",
    "interrupted",
    "tool_call",
    "tool_result",
    "handle",
    "goaway",
    "drop",
    "press",
    "release",
    "capture",
    "played",
    "tick",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SERVER_STEPS), max_size=60))
def test_any_order_of_server_messages_and_presses_is_survived_and_ends_answered(steps) -> None:
    h = Harness()
    h.up()
    calls = 0
    for step in steps:
        link = h.core.link
        if step == "audio":
            h.send(ServerAudio(link, b"\x01\x00" * 10, h.t))
        elif step == "model_text":
            h.send(Transcript(link, "model", "words ", h.t))
        elif step == "user_text":
            h.send(Transcript(link, "user", "words", h.t))
        elif step == "generation_complete":
            h.send(GenerationComplete(link, h.t))
        elif step == "turn_complete":
            h.send(TurnComplete(link, h.t))
        elif step == "interrupted":
            h.send(Interrupted(link, h.t))
        elif step == "tool_call":
            calls += 1
            h.send(ToolCallsReceived(link, (ToolCall(f"c{calls}", "f", {}),), h.t))
        elif step == "tool_result" and calls:
            h.send(ToolResult(f"c{calls}", "f", {"ok": True}, "WHEN_IDLE", h.t))
        elif step == "handle":
            h.send(ResumptionUpdate(link, f"h{h.t}", True, h.t))
        elif step == "goaway":
            h.send(GoAway(link, 1.0, h.t))
        elif step == "drop":
            h.send(LinkDown(link, 1011, "reset", h.t))
        elif step == "press":
            h.send(Pressed(h.position, h.t))
        elif step == "release":
            h.send(Released(h.position, h.t))
        elif step == "capture":
            h.capture()
        elif step == "played":
            h.send(PlaybackIdle(h.t))
        elif step == "tick":
            h.tick(1.0)
        if h.core.connection_state is LinkState.CONNECTING:
            h.up(resumed=True)
        if h.core.pending_utterances:
            # A question in the ledger is never shown as "idle".
            assert h.core.status is not None and h.core.status.state is not DeviceState.IDLE
    errors = [a for a in h.actions if isinstance(a, Log) and a.level >= logging.ERROR]
    assert not [a for a in errors if "internal" in a.message]
    # Then the user lets go, the server behaves, and time passes: everything is answered.
    h.send(Released(h.position, h.t))
    h.capture(2)
    for _ in range(40):
        if h.core.idle and h.core.link_up:
            break
        if not h.core.link_up:
            h.up(resumed=True)
        h.send(PlaybackIdle(h.t))
        h.reply()
        h.tick(11.0)
    assert h.core.pending_utterances == 0
    assert h.core.idle
    assert h.core.status is not None and h.core.status.state is DeviceState.IDLE

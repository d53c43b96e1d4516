"""What the real service is known to do, met by a deliberate behaviour of the core."""

from __future__ import annotations

import pytest

from edgevoice.core.events import (
    CancelTools,
    CloseLink,
    Connect,
    DeviceState,
    Earcon,
    EndOfReply,
    GenerationComplete,
    GoAway,
    LinkDown,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    RunTool,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    ServerAudio,
    StopPlayback,
    Tick,
    ToolCall,
    ToolCallsReceived,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.core.families import GEMINI_3_1
from tests.core.test_conversation import Harness, mic

CHUNK = b"\x01\x00" * 100


def test_goaway_with_no_time_left_in_every_reply_backs_off_and_answers_each_question_once() -> None:
    h = Harness()
    h.up()
    started = h.t
    for n in range(12):
        h.utter(1000 + n * 3000, 2000 + n * 3000)
        link = h.core.link
        h.send(ServerAudio(link, CHUNK, h.t))
        h.send(GoAway(link, 0.0, h.t))  # "leave now", in the middle of every answer
        assert h.of(CloseLink)[-1].link == link
        h.up(resumed=True)
        h.send(PlaybackIdle(h.t))  # what was received played out, not cut
    # The heard start of each answer counted: nothing asked again, nothing replayed.
    assert [u.number for u in h.wire] == list(range(1, 13))
    assert len(h.of(PlayAudio)) == 12 and not h.of(StopPlayback)
    # Twelve connections that each died young: later ones waited ever longer.
    assert h.t - started > 8.0


def test_a_connection_closed_at_once_after_setup_is_retried_with_growing_delays() -> None:
    h = Harness()
    gaps = []
    for _ in range(8):
        h.up()
        h.send(LinkDown(h.core.link, 1011, "internal error", h.t))
        gaps.append((h.core.reconnect_at or h.t) - h.t)
    assert gaps[0] == 0.0 and all(g > 0 for g in gaps[1:]) and max(gaps) >= 2.0
    assert "the server closed 8 connections soon after opening" in h.core.status.detail


def test_partial_words_of_a_reply_cut_by_a_drop_are_not_kept() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(Transcript(link, "model", "First ", h.t))
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(LinkDown(link, 1006, "stalled", h.t))
    h.up(resumed=True)
    link = h.core.link
    h.send(Transcript(link, "user", "question", h.t))
    h.send(Transcript(link, "model", "First answer is here.", h.t))
    h.send(GenerationComplete(link, h.t))
    h.send(TurnComplete(link, h.t))
    h.send(LinkDown(link, 1006, "lost", h.t))  # before any handle: the exchange is told in words
    h.up(resumed=True)
    [context] = h.of(SendContext)
    assert "Assistant: First answer is here." in context.text
    assert "First First" not in context.text


def test_a_turn_complete_before_its_audio_keeps_the_device_thinking_then_speaking() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(TurnComplete(link, h.t))  # out of order: the audio is still on its way
    assert h.core.status.state is DeviceState.THINKING
    h.send(ServerAudio(link, CHUNK, h.t + 0.2))
    assert h.core.status.state is DeviceState.SPEAKING
    h.send(GenerationComplete(link, h.t + 0.3))
    assert h.core.pending_utterances == 0
    h.send(PlaybackIdle(h.t + 1.0))
    assert h.core.status.state is DeviceState.IDLE and h.core.idle


def test_a_silent_turn_asks_again_once_then_gives_up_with_an_earcon() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(TurnComplete(link, h.t))  # nothing at all
    h.tick(2.0)
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 5000)] * 2  # asked again, same link
    assert h.core.status.state is DeviceState.THINKING
    h.send(TurnComplete(link, h.t))
    h.tick(2.0)
    assert h.of(PlayEarcon)[-1] == PlayEarcon(Earcon.ERROR)
    assert h.core.pending_utterances == 0 and h.core.status.state is DeviceState.IDLE
    assert len(h.wire) == 2


def test_a_turn_ended_by_generation_complete_alone_does_not_hang_the_device() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(GenerationComplete(link, h.t))  # and never turnComplete
    h.send(PlaybackIdle(h.t))
    h.tick(6.0)
    assert h.core.idle
    h.utter(6000, 9000)
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(GenerationComplete(link, h.t))
    assert h.core.pending_utterances == 0  # the next turn answers the next question
    assert len(h.of(EndOfReply)) == 2


@pytest.mark.parametrize("played", [True, False])
def test_a_question_asked_soon_after_a_turn_without_turn_complete_gets_its_own_answer(played) -> None:
    """No waiting out the old turn's end: the next answer must not be taken for its rest."""
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(GenerationComplete(link, h.t))  # and never turnComplete
    if played:
        h.send(PlaybackIdle(h.t))
    h.utter(6000, 9000)  # at once, well before the old turn's end wait
    assert len(h.wire) == 2 and h.wire[-1].ended
    before = len(h.of(PlayAudio))
    h.send(ServerAudio(link, CHUNK, h.t))
    assert len(h.of(PlayAudio)) == before + 1  # the new answer is heard
    h.send(GenerationComplete(link, h.t))
    h.send(TurnComplete(link, h.t))
    assert h.core.pending_utterances == 0
    assert h.of(Connect) == h.of(Connect)[:1]  # no reconnect to get an answer


def test_a_late_turn_complete_of_a_turn_closed_at_a_press_answers_nothing() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(GenerationComplete(link, h.t))
    h.send(PlaybackIdle(h.t))
    h.utter(6000, 9000)
    h.send(TurnComplete(link, h.t))  # the first turn's, late
    h.tick(2.0)  # not taken for a silent answer to the second question
    assert len(h.wire) == 2
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(TurnComplete(link, h.t))
    assert h.core.pending_utterances == 0


def test_a_goaway_deadline_runs_on_the_timer_when_the_server_goes_silent() -> None:
    h = Harness()
    h.up()
    h.capture(2)
    h.send(Pressed(700, h.t))  # busy: the switch waits for the deadline
    link = h.core.link
    h.send(GoAway(link, 10.0, h.t))
    deadline = h.core.next_deadline()
    assert deadline is not None and deadline <= h.t + 8.0
    h.t = deadline
    h.send(Tick(h.t))  # no server message since the GoAway
    assert h.of(CloseLink)[-1].link == link


def test_the_same_function_call_arriving_twice_runs_once() -> None:
    h = Harness()
    h.up()
    link = h.core.link
    call = ToolCall("c1", "set_light", {"on": True})
    h.send(ToolCallsReceived(link, (call,), h.t))
    h.send(ToolCallsReceived(link, (call,), h.t))  # the same call inside the model's turn
    h.send(ToolResult("c1", "set_light", {"ok": True}, "WHEN_IDLE", h.t))
    h.send(ToolCallsReceived(link, (call,), h.t))  # late duplicate after the result
    assert h.of(RunTool) == [RunTool(call)]
    assert len(h.of(SendToolResponses)) == 1


def test_on_a_synchronous_family_nothing_realtime_goes_out_while_a_call_is_unanswered() -> None:
    h = Harness(family=GEMINI_3_1)
    h.up()
    link = h.core.link
    h.send(ToolCallsReceived(link, (ToolCall("c1", "get_state", {}),), h.t))
    sent_before = len(
        [a for a in h.actions if isinstance(a, SendActivityStart | SendAudio | SendActivityEnd)]
    )
    h.utter(1000, 5000)  # the user speaks meanwhile: recorded, held back
    realtime = [a for a in h.actions if isinstance(a, SendActivityStart | SendAudio | SendActivityEnd)]
    assert len(realtime) == sent_before == 0
    h.send(ToolResult("c1", "get_state", {"state": "on"}, "SILENT", h.t))
    # The response goes at once; the question waits for the end of the model's turn the
    # call was part of (it would cut that answer off), then goes whole.
    assert not h.wire
    h.send(ServerAudio(link, CHUNK, h.t))
    h.send(TurnComplete(link, h.t))
    kinds = [
        type(a) for a in h.actions if isinstance(a, SendToolResponses | SendActivityStart | SendActivityEnd)
    ]
    assert kinds == [SendToolResponses, SendActivityStart, SendActivityEnd]
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 5000)]


def test_a_call_with_no_result_is_answered_as_failed_at_its_deadline() -> None:
    h = Harness(family=GEMINI_3_1, tool_deadline_s=8.0)
    h.up()
    link = h.core.link
    h.send(ToolCallsReceived(link, (ToolCall("c1", "set_cover", {}),), h.t))
    h.tick(7.0)
    assert not h.of(SendToolResponses)
    h.tick(1.5)
    assert h.of(CancelTools) == [CancelTools(("c1",))]
    [response] = h.of(SendToolResponses)
    assert response.results[0].response["status"] == "failed"
    h.send(ToolResult("c1", "set_cover", {"ok": True}, "WHEN_IDLE", h.t))  # too late: nothing more
    assert len(h.of(SendToolResponses)) == 1


def test_a_family_refusing_client_content_mid_session_is_not_sent_any() -> None:
    h = Harness(family=GEMINI_3_1)
    h.up()
    h.utter(1000, 3000)
    h.reply(handle=None)  # answered, but the drop comes before the handle covers it
    link = h.core.link
    h.send(ToolCallsReceived(link, (ToolCall("c1", "set_light", {}),), h.t))
    h.send(LinkDown(link, 1006, "lost", h.t))
    h.send(ToolResult("c1", "set_light", {"ok": True}, "WHEN_IDLE", h.t))
    h.up(resumed=True)
    assert not h.of(SendContext)
    assert h.of(Connect)[-1].link == h.core.link and h.core.link_up


def test_a_fresh_session_of_such_a_family_is_briefed_before_its_first_turn() -> None:
    h = Harness(family=GEMINI_3_1)
    h.up()
    h.utter(1000, 3000)
    h.reply()
    h._record(h.core.new_session(h.t, "settings changed"))
    h.up()
    [context] = h.of(SendContext)
    assert "Assistant: answer" in context.text


def test_a_press_during_a_turn_complete_with_nothing_in_it_moves_on() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    h.send(TurnComplete(h.core.link, h.t))
    h.send(Pressed(h.position, h.t))
    h.capture(3)
    h.send(Released(h.position + 5, h.t))
    h.capture()
    assert h.core.pending_utterances == 1
    h.reply()
    assert h.core.pending_utterances == 0 and h.core.idle


def test_a_silent_turn_while_the_user_talks_again_never_opens_two_activities() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 3000)
    h.send(Pressed(h.position, h.t))  # the user talks again before the server is done
    h.send(TurnComplete(h.core.link, h.t))  # and the server said nothing to the first
    h.tick(2.0)  # the first is asked again, but not inside the second's activity
    h.capture(3)
    h.send(Released(h.position + 5, h.t))
    h.capture()  # the harness fails on an activityStart inside an open activity
    assert [u.number for u in h.wire] == [1, 2, 1]
    h.reply()
    h.reply()
    assert h.core.pending_utterances == 0

"""Nothing said is lost: across restarts, offline queues and drops, each question is
answered once and in order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.core.events import (
    GenerationComplete,
    GoAway,
    LinkDown,
    LinkFailed,
    PersistHandle,
    PersistLedger,
    Pressed,
    SavedLedger,
    SendContext,
    ServerAudio,
    Tick,
    Transcript,
    TurnComplete,
)
from tests.core.test_conversation import Harness, mic


def last_saved(h: Harness) -> SavedLedger:
    """The ledger file as the daemon would have it: the last one written, else the one read."""
    saved = h.of(PersistLedger)
    return saved[-1].ledger if saved else getattr(h, "read_ledger", SavedLedger())


def last_handle(h: Harness) -> str | None:
    handles = h.of(PersistHandle)
    return handles[-1].handle if handles else getattr(h, "read_handle", None)


def restart(h: Harness, **config: object) -> Harness:
    """What the daemon does on SIGTERM and start: stop, keep what was persisted, start anew."""
    h._record(h.core.stop(h.t))
    again = Harness(handle=last_handle(h), ledger=last_saved(h), t=h.t, **config)
    again.read_ledger, again.read_handle = last_saved(h), last_handle(h)  # type: ignore[attr-defined]
    again.position = h.position
    return again


def test_three_questions_asked_offline_are_asked_one_at_a_time_each_after_its_answer() -> None:
    h = Harness()
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 3000)
    h.utter(4000, 6000)
    h.utter(7000, 9000)
    h.up()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000)]
    h.reply()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000), mic(4000, 6000)]
    h.reply()
    h.reply()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000), mic(4000, 6000), mic(7000, 9000)]
    assert h.core.pending_utterances == 0 and h.core.idle


def test_a_question_asked_while_the_backlog_waits_takes_its_place_in_line() -> None:
    h = Harness()
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 3000)
    h.up()
    h.utter(4000, 6000)  # spoken while the first still waits for its answer
    assert len(h.wire) == 1
    h.reply()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000), mic(4000, 6000)]


def test_an_unanswered_utterance_survives_a_restart_and_is_asked_once_on_the_resumed_session() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    assert [len(u.audio) for u in last_saved(h).utterances] == [len(mic(1000, 5000))]
    h = restart(h)
    h.up(resumed=True)
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 5000)]
    h.reply()
    assert last_saved(h).utterances == () and h.core.pending_utterances == 0


def test_sigterm_mid_utterance_ends_it_at_the_signal_and_keeps_it() -> None:
    h = Harness()
    h.up()
    h.capture(3)
    h.send(Pressed(1000, h.t))
    h.capture(10)  # still talking when systemd stops the daemon
    stopped_at = h.position
    h = restart(h)
    h.up(resumed=True)
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, stopped_at)]
    assert all(u.ended for u in h.wire)


def test_the_reply_in_flight_at_a_restart_is_told_to_the_next_session_as_context() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(Transcript(link, "user", "what time is it", h.t))
    h.send(Transcript(link, "model", "It is half", h.t))
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h._record(h.core.stop(h.t))
    assert any("It is half" in line for line in last_saved(h).context)
    h = Harness(handle=last_handle(h), ledger=last_saved(h), t=h.t)
    h.up(resumed=True)
    [context] = h.of(SendContext)
    assert "User: what time is it" in context.text and "It is half" in context.text
    assert len(h.wire) == 1  # and the question itself is asked again


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["speak", "speak", "answer", "answer", "drop", "restart", "goaway_now", "offline_speak"]
        ),
        min_size=1,
        max_size=25,
    )
)
def test_no_utterance_is_lost_and_none_is_answered_twice_whatever_the_drops_and_restarts(plan) -> None:
    patient = {"offline_max_age_s": 1e9}  # the user's questions never expire in this plan
    h = Harness(**patient)
    h.up()
    spoken: list[bytes] = []
    answered: dict[bytes, int] = {}

    def answer() -> None:
        """The server answers the oldest question it has whole on this connection."""
        if not h.core.link_up:
            return
        replied = set(answered_on.get(h.core.link, []))
        for u in h.wire:
            if u.link == h.core.link and u.ended and u.number not in replied:
                audio = bytes(u.audio)
                answered_on.setdefault(h.core.link, []).append(u.number)
                h.reply()
                answered[audio] = answered.get(audio, 0) + 1
                return

    answered_on: dict[int, list[int]] = {}
    for step in plan:
        if step in ("speak", "offline_speak"):
            if step == "offline_speak" and h.core.link_up:
                h.send(LinkDown(h.core.link, 1006, "lost", h.t))
                h.send(LinkFailed(h.core.link, None, "no network", h.t))
            press = h.position + 100
            h.utter(press, press + 1500)
            spoken.append(mic(press, press + 1500))
        elif step == "answer":
            answer()
        elif step == "drop" and h.core.link_up:
            h.send(LinkDown(h.core.link, 1011, "reset", h.t))
        elif step == "restart":
            h = restart(h, **patient)
            answered_on.clear()
        elif step == "goaway_now" and h.core.link_up:
            h.send(GoAway(h.core.link, 0.0, h.t))
        if not h.core.link_up:
            h.up(resumed=True)
    for _ in range(3 * len(spoken) + 3):  # the user waits for every answer
        if h.core.pending_utterances == 0:
            break
        if not h.core.link_up:
            h.up(resumed=True)
        answer()
        h.t += 1.0
        h.send(Tick(h.t))
    assert h.core.pending_utterances == 0
    assert sorted(answered) == sorted(spoken), "every question answered"
    assert all(count == 1 for count in answered.values()), "none answered twice"
    # Each utterance went at most once over each connection.
    pairs = [(u.link, bytes(u.audio)) for u in h.wire if u.ended]
    assert len(pairs) == len(set(pairs))


def test_the_next_question_in_line_waits_for_the_end_of_the_answers_turn() -> None:
    h = Harness()
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 3000)
    h.utter(4000, 6000)
    h.up()
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(GenerationComplete(link, h.t))  # answered, but the server's turn is not over
    assert len(h.wire) == 1
    h.send(TurnComplete(link, h.t))
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000), mic(4000, 6000)]


def test_what_is_left_at_a_stop_is_never_given_up_while_stopping() -> None:
    h = Harness(offline_max_age_s=10.0)
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 3000)
    h._record(h.core.stop(h.t))
    saved = last_saved(h)
    h.tick(60.0)  # a late timer while the daemon shuts down
    assert last_saved(h) == saved and len(saved.utterances) == 1

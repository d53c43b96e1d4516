"""A question asked again never runs its functions twice: the calls an unanswered
utterance's reply already ran are remembered with it (across drops and restarts), and an
identical call gets the stored result instead of running again."""

from __future__ import annotations

import hashlib
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.core.calls import call_key
from edgevoice.core.events import (
    CancelTools,
    LinkDown,
    PersistLedger,
    RunTool,
    SavedCall,
    SendToolResponses,
    ToolCall,
    ToolCallsCancelled,
    ToolCallsReceived,
    ToolResult,
)
from tests.core.test_conversation import Harness
from tests.core.test_ledger import last_saved, restart

TIMER = {"name": "pasta", "seconds": 600}
SET = {"ok": True, "result": "The pasta timer is set for 10 minutes."}


def call(h: Harness, call_id: str, name: str = "set_timer", args: dict | None = None) -> list[object]:
    return h.send(ToolCallsReceived(h.core.link, (ToolCall(call_id, name, dict(args or TIMER)),), h.t))


def responses(h: Harness) -> list[ToolResult]:
    return [result for action in h.of(SendToolResponses) for result in action.results]


def asked_and_cut(h: Harness) -> None:
    """A question whose reply ran set_timer (and got its result) before the link dropped."""
    h.up()
    h.utter(1000, 3000)
    call(h, "c1")
    h.send(ToolResult("c1", "set_timer", SET, "WHEN_IDLE", h.t))


def test_a_question_asked_again_after_a_drop_gets_the_stored_result_not_a_second_run() -> None:
    h = Harness()
    asked_and_cut(h)
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    h.up(resumed=True)
    assert len(h.wire) == 2  # the question went out again, whole
    actions = call(h, "c2", args={"seconds": 600.0, "name": "pasta"})  # same call, other spelling
    assert not [a for a in actions if isinstance(a, RunTool)]
    [again] = [a for a in actions if isinstance(a, SendToolResponses)]
    assert again.link == h.core.link
    assert again.results[0].id == "c2"
    assert again.results[0].response == {**SET, "already_done": True}
    assert again.results[0].scheduling == "WHEN_IDLE"
    # Other arguments are another action: it runs.
    actions = call(h, "c3", args={"name": "eggs", "seconds": 300})
    assert [a.call.id for a in actions if isinstance(a, RunTool)] == ["c3"]


def test_the_calls_survive_a_restart_with_the_question_and_are_forgotten_once_it_is_answered() -> None:
    h = Harness()
    asked_and_cut(h)
    saved = last_saved(h)
    [utterance] = saved.utterances
    assert utterance.calls == (SavedCall("set_timer", call_key("set_timer", TIMER)[1], SET, "WHEN_IDLE"),)
    h = restart(h)
    h.up()
    assert len(h.wire) == 1  # asked on the fresh process's first connection
    actions = call(h, "c9")
    assert not [a for a in actions if isinstance(a, RunTool)]
    assert responses(h)[0].response["already_done"] is True
    h.reply()
    assert last_saved(h).utterances == ()
    # The next question is another question: the same call runs.
    h.utter(h.position + 100, h.position + 2000)
    actions = call(h, "c10")
    assert [a.call.id for a in actions if isinstance(a, RunTool)] == ["c10"]


def test_a_call_still_running_at_a_restart_is_never_run_again() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 3000)
    actions = call(h, "c1")
    # Remembered on disk before it is started, so no crash can make it run twice.
    kinds = [type(a) for a in actions if isinstance(a, PersistLedger | RunTool)]
    assert kinds == [PersistLedger, RunTool]
    h = restart(h)  # before its result came
    h.up()
    actions = call(h, "c2")
    assert not [a for a in actions if isinstance(a, RunTool)]
    [result] = responses(h)
    assert result.id == "c2" and result.response["ok"] is True and result.response["already_done"] is True


def test_a_result_that_comes_while_stopping_is_remembered_for_the_question_asked_again() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 3000)
    call(h, "c1")
    h._record(h.core.stop(h.t))
    assert h.core.calls_running == 1  # the daemon lets it finish before it exits
    h.send(ToolResult("c1", "set_timer", SET, "WHEN_IDLE", h.t))
    assert h.core.calls_running == 0
    assert not h.of(SendToolResponses)  # stopped: nothing goes to the server
    assert last_saved(h).utterances[0].calls[0].response == SET
    h = restart(h)
    h.up()
    call(h, "c2")
    assert responses(h)[-1].response == {**SET, "already_done": True}


def test_a_call_the_server_cancelled_before_its_result_is_run_when_the_question_is_asked_again() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 3000)
    call(h, "c1")
    h.send(ToolCallsCancelled(h.core.link, ("c1",), h.t))  # withdrawn while it ran
    assert h.of(CancelTools)[-1].ids == ("c1",)
    # Not done, so not remembered as done (on disk too, for a restart).
    assert last_saved(h).utterances[0].calls == ()
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    h.up(resumed=True)
    actions = call(h, "c2")
    assert [a.call.id for a in actions if isinstance(a, RunTool)] == ["c2"]
    assert not [r for r in responses(h) if r.response.get("already_done")]


def test_a_call_cancelled_after_its_result_came_still_counts_as_done() -> None:
    h = Harness()
    asked_and_cut(h)  # set_timer ran and its result came
    h.send(ToolCallsCancelled(h.core.link, ("c1",), h.t))
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    h.up(resumed=True)
    actions = call(h, "c2")
    assert not [a for a in actions if isinstance(a, RunTool)]
    assert responses(h)[-1].response == {**SET, "already_done": True}


def test_a_call_with_no_question_behind_it_runs_as_usual() -> None:
    h = Harness()
    h.up()
    call(h, "p1")  # the model acting on a prompt (a timer that ended), no utterance
    call(h, "p2")
    assert [a.call.id for a in h.of(RunTool)] == ["p1", "p2"]


def _key(audio: bytes) -> dict[str, str]:
    return {"question": hashlib.sha1(audio).hexdigest()[:12]}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(["speak", "call", "call", "result", "answer", "drop", "restart"]),
        min_size=1,
        max_size=30,
    )
)
def test_any_pattern_of_drops_and_restarts_runs_each_side_effect_at_most_once(plan) -> None:
    """The server answers the questions it has whole on a connection in order, and its
    reply to each calls a function whose arguments name that question: whatever the drops
    and restarts, each (question, function, arguments) runs at most once."""
    patient = {"offline_max_age_s": 1e9, "tool_deadline_s": 1e9}
    h = Harness(**patient)
    h.up()
    runs: Counter[tuple[str, str]] = Counter()
    running: list[ToolCall] = []
    answered_on: dict[int, int] = {}
    ids = iter(range(10**6))

    def being_answered() -> bytes | None:
        whole = [u for u in h.wire if u.link == h.core.link and u.ended]
        done = answered_on.get(h.core.link, 0)
        return bytes(whole[done].audio) if done < len(whole) else None

    def note_runs(actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, RunTool):
                runs[call_key(action.call.name, action.call.args)] += 1
                running.append(action.call)

    for step in plan:
        if step == "speak":
            press = h.position + 100
            h.utter(press, press + 1500)
        elif step == "call" and h.core.link_up and (audio := being_answered()) is not None:
            note_runs(call(h, f"id{next(ids)}", args=_key(audio)))
        elif step == "result":
            for pending in running:
                note_runs(h.send(ToolResult(pending.id, pending.name, {"ok": True}, "WHEN_IDLE", h.t)))
            running.clear()
        elif step == "answer" and h.core.link_up and being_answered() is not None:
            answered_on[h.core.link] = answered_on.get(h.core.link, 0) + 1
            h.reply()
        elif step == "drop" and h.core.link_up:
            h.send(LinkDown(h.core.link, 1011, "reset", h.t))
        elif step == "restart":
            h = restart(h, **patient)
            running.clear()  # what the old process ran never reports back
        if not h.core.link_up:
            h.up(resumed=True)
    assert max(runs.values(), default=0) <= 1, runs

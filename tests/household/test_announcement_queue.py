"""The queue of things the model must say unasked (no clock, no sleep)."""

from __future__ import annotations

from edgevoice.core.announcements import NoticeKind, NoticeQueue, Queued, Rejected


def test_online_an_announcement_waits_for_a_quiet_moment_and_goes_once() -> None:
    queue = NoticeQueue(max_age_s=60)
    queued = queue.announce("  The washing   machine is done ", 10.0, link_up=True)
    assert isinstance(queued, Queued) and not queued.chime_now
    assert queued.notice.text == "The washing machine is done"
    assert queue.release(11.0, quiet=False, link_up=True) is None  # an answer is playing
    notice = queue.release(12.0, quiet=True, link_up=True)
    assert notice is not None and notice.chime and "word for word" in notice.prompt()
    assert notice.prompt().endswith("\nThe washing machine is done")
    assert queue.release(13.0, quiet=True, link_up=True) is None


def test_offline_the_chime_at_once_the_words_when_the_link_is_back_if_still_young() -> None:
    queue = NoticeQueue(max_age_s=60)
    first = queue.announce("dinner is ready", 0.0, link_up=False)
    assert isinstance(first, Queued) and first.chime_now
    queue.announce("the post has come", 30.0, link_up=False)
    assert queue.release(50.0, quiet=True, link_up=False) is None
    assert queue.next_deadline() == 60.0
    # Back at 70 s: the first is 70 s old (dropped), the second 40 s (said).
    assert [n.text for n in queue.expire(70.0)] == ["dinner is ready"]
    notice = queue.release(70.0, quiet=True, link_up=True)
    assert notice is not None and notice.text == "the post has come"
    assert len(queue) == 0


def test_in_order_one_at_a_time_and_a_released_one_can_go_back_first() -> None:
    queue = NoticeQueue()
    queue.announce("one", 0.0, link_up=True)
    queue.timer_ended(("pasta",), 1.0)
    first = queue.release(2.0, quiet=True, link_up=True)
    assert first is not None and first.text == "one"
    queue.put_back(first)
    assert [n.text for n in queue.items] == ["one", "the pasta timer has ended."]
    queue.release(3.0, quiet=True, link_up=True)
    timer = queue.release(4.0, quiet=True, link_up=True)
    assert timer is not None and timer.kind is NoticeKind.TIMER and not timer.chime
    assert "pasta timer has ended" in timer.prompt()


def test_bad_announcements_are_refused_with_a_reason() -> None:
    queue = NoticeQueue(max_items=1)
    assert isinstance(queue.announce("   ", 0.0, link_up=True), Rejected)
    assert isinstance(queue.announce("x" * 501, 0.0, link_up=True), Rejected)
    queue.announce("ok", 0.0, link_up=True)
    refused = queue.announce("more", 0.0, link_up=True)
    assert isinstance(refused, Rejected) and "already waiting" in refused.reason


def test_several_timers_in_one_notice() -> None:
    notice = NoticeQueue().timer_ended(("pasta", "sauce"), 0.0)
    assert notice.text == "these timers have ended: pasta, sauce."


def test_the_conversation_takes_a_prompt_only_at_a_quiet_moment_and_one_at_a_time() -> None:
    from edgevoice.core.calls import FOLLOW_UP_WAIT_S
    from edgevoice.core.conversation import Conversation
    from edgevoice.core.events import LinkUp, SendContext, Tick, TurnComplete

    conversation = Conversation()
    conversation.start(0.0)
    assert conversation.prompt("say hi", 0.5) == []  # offline
    conversation.handle(LinkUp(1, False, 1.0))
    assert conversation.quiet_moment
    [sent] = conversation.prompt("say hi", 2.0)
    assert sent == SendContext(1, "say hi", turn_complete=True)
    assert not conversation.quiet_moment and conversation.prompt("again", 2.1) == []
    conversation.handle(TurnComplete(1, 3.0))
    assert conversation.quiet_moment
    conversation.prompt("say bye", 4.0)
    assert conversation.next_deadline() == 4.0 + FOLLOW_UP_WAIT_S
    conversation.handle(Tick(4.0 + FOLLOW_UP_WAIT_S))  # the model chose silence
    assert conversation.quiet_moment

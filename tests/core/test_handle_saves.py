"""Which resumption handles go to disk: each after an exchange, idle renewals once a minute,
the newest when its connection ends or the daemon stops."""

from __future__ import annotations

from edgevoice.core.events import Connect, LinkDown, PersistHandle, ResumptionUpdate, SendContext
from edgevoice.core.handle_saves import IDLE_SAVE_EVERY_S
from tests.core.test_conversation import Harness
from tests.core.test_ledger import restart

RENEWAL_EVERY_S = 3.0  # the service's unasked sessionResumptionUpdate while idle


def saved(h: Harness) -> list[str | None]:
    return [a.handle for a in h.of(PersistHandle)]


def renew(h: Harness, count: int, every_s: float = RENEWAL_EVERY_S) -> list[str]:
    """The service renews the handle ``count`` times while nobody speaks (and the
    microphone keeps feeding the pre-roll)."""
    handles = []
    for _ in range(count):
        h.tick(every_s - 0.05)
        h.capture()
        handle = f"renewed-{h.t:.2f}"
        h.send(ResumptionUpdate(h.core.link, handle, True, h.t))
        handles.append(handle)
    return handles


def answered(h: Harness, handle: str) -> Harness:
    h.up()
    h.utter(1000, 4000)
    h.reply(handle=handle)
    return h


def test_idle_renewals_are_saved_once_a_minute_not_each_time() -> None:
    h = answered(Harness(), "after-answer")
    assert saved(h) == ["after-answer"]
    renewals = renew(h, count=int(10 * 60 / RENEWAL_EVERY_S))  # ten idle minutes
    writes = saved(h)[1:]
    assert 9 <= len(writes) <= 10, writes
    assert set(writes) <= set(renewals)
    assert h.core.resume_handle == renewals[-1]  # a reconnect still uses the newest


def test_a_handle_after_an_exchange_is_saved_at_once() -> None:
    h = answered(Harness(), "first")
    renew(h, count=2)
    h.utter(h.position + 1000, h.position + 4000)
    h.reply(handle="second")
    assert saved(h) == ["first", "second"]


def test_a_handle_after_a_spoken_prompt_is_saved_at_once() -> None:
    h = answered(Harness(), "first")
    h.tick(1.0)
    assert [type(a) for a in h._record(h.core.prompt("a timer ended", h.t))] == [SendContext]
    h.send(ResumptionUpdate(h.core.link, "after-prompt", True, h.t))
    assert saved(h)[-1] == "after-prompt"


def test_the_newest_renewal_is_saved_when_the_connection_drops() -> None:
    h = answered(Harness(), "first")
    newest = renew(h, count=4)[-1]
    assert saved(h) == ["first"]
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    assert saved(h) == ["first", newest]
    h.up(resumed=True)
    assert h.of(Connect)[-1].handle == newest


def test_a_restart_resumes_from_the_newest_renewal() -> None:
    h = answered(Harness(), "first")
    newest = renew(h, count=4)[-1]
    again = restart(h)
    assert again.of(Connect) == [Connect(1, newest)]


def test_the_first_handle_of_a_fresh_session_is_saved_at_once() -> None:
    h = answered(Harness(), "old-session")
    h.tick(1.0)
    h._record(h.core.new_session(h.t, "the voice changed"))
    h.up()
    h.send(ResumptionUpdate(h.core.link, "new-session", True, h.t))
    assert saved(h) == ["old-session", None, "new-session"]


def test_a_renewal_a_minute_after_the_last_save_is_saved() -> None:
    h = answered(Harness(), "first")
    h.tick(IDLE_SAVE_EVERY_S - 1.0)
    h.send(ResumptionUpdate(h.core.link, "too-soon", True, h.t))
    h.tick(1.0)
    h.send(ResumptionUpdate(h.core.link, "a-minute-on", True, h.t))
    assert saved(h) == ["first", "a-minute-on"]

"""Why the link went down picks how long to wait: a refused quota, key or model waits
minutes or hours (with a status that says why), a press meanwhile is kept with an error
earcon, and a reload retries at once."""

from __future__ import annotations

from edgevoice.core.connection import LinkState
from edgevoice.core.events import (
    Connect,
    DeviceState,
    DownCause,
    Earcon,
    LinkDown,
    LinkFailed,
    NetworkChanged,
    PlayEarcon,
    Tick,
)
from tests.core.test_conversation import Harness, mic


def refused(h: Harness, cause: DownCause, code: int | None = 429, reason: str = "refused") -> None:
    h.send(LinkFailed(h.core.link, code, reason, h.t, cause))


def connects(h: Harness) -> int:
    return len(h.of(Connect))


def wait(h: Harness, seconds: float, step: float = 1.0) -> None:
    """Let time pass, sending the ticks the core asks for (and one a ``step`` anyway)."""
    end = h.t + seconds
    while h.t < end:
        deadline = h.core.next_deadline()
        h.t = min(end, h.t + step, deadline if deadline is not None and deadline > h.t else end)
        h.send(Tick(h.t))


def test_a_quota_refusal_waits_minutes_says_why_and_does_not_hammer() -> None:
    h = Harness()
    refused(h, DownCause.QUOTA_EXHAUSTED)
    assert 90.0 <= h.core.reconnect_at - h.t <= 120.0
    assert h.core.status.state is DeviceState.OFFLINE
    assert h.core.status.text() == "offline: quota exhausted, retrying in 2 min"
    before = connects(h)
    wait(h, 60.0)
    assert connects(h) == before  # a minute of refusal: no new attempt
    h.send(NetworkChanged(h.t))  # the network is not what is wrong
    assert connects(h) == before
    wait(h, 60.0)
    assert connects(h) == before + 1
    refused(h, DownCause.QUOTA_EXHAUSTED)  # still refused: twice as long
    assert 180.0 <= h.core.reconnect_at - h.t <= 240.0
    h.up()
    assert h.core.status.state is DeviceState.IDLE
    h.t += 60
    before = connects(h)
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    assert connects(h) == before + 1  # an ordinary drop after it: retried at once


def test_a_refused_key_or_a_retired_model_waits_long_even_on_a_resume() -> None:
    h = Harness(handle="old")
    refused(h, DownCause.KEY_REJECTED, 1007, "API key expired")
    # Not taken for a refused resume (which would retry at once, fresh, in a loop).
    assert h.core.connection_state is LinkState.BACKING_OFF
    assert h.core.reconnect_at - h.t >= 675.0
    assert h.core.status.detail.startswith("the Gemini API key was refused, retrying in ")
    m = Harness()
    refused(m, DownCause.MODEL_NOT_FOUND, 1008, "models/x is not found")
    assert m.core.reconnect_at - m.t >= 2700.0
    assert m.core.status.detail in (
        "model not found, retrying in 1 h",
        *(f"model not found, retrying in {n} min" for n in range(45, 61)),
    )


def test_a_press_during_a_long_back_off_plays_the_error_earcon_and_is_kept_for_later() -> None:
    h = Harness(offline_max_age_s=30.0)
    refused(h, DownCause.QUOTA_EXHAUSTED)
    h.utter(1000, 3000)
    assert h.of(PlayEarcon)[-2:] == [PlayEarcon(Earcon.ERROR), PlayEarcon(Earcon.SENT)]
    assert PlayEarcon(Earcon.LISTENING) not in h.of(PlayEarcon)
    wait(h, 100.0)  # far past the ordinary offline limit: still kept
    assert h.core.pending_utterances == 1
    h.up()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 3000)]


def test_a_reload_ends_a_long_back_off_at_once_and_starts_its_count_again() -> None:
    h = Harness()
    for _ in range(3):
        refused(h, DownCause.KEY_REJECTED, 1007, "API key expired")
        h.t = h.core.reconnect_at
        h.send(Tick(h.t))
    refused(h, DownCause.KEY_REJECTED, 1007, "API key expired")
    before = connects(h)
    actions = h._record(h.core.retry_now(h.t + 5, "the configuration was reloaded"))
    assert [a for a in actions if isinstance(a, Connect)] == [Connect(h.core.link, None)]
    assert connects(h) == before + 1
    refused(h, DownCause.KEY_REJECTED, 1007, "API key expired")  # still the old key
    assert 675.0 <= h.core.reconnect_at - h.t <= 900.0  # the first step again
    # An ordinary back-off is not cut short by a reload.
    o = Harness()
    o.send(LinkFailed(o.core.link, None, "no network", o.t))
    assert o.core.retry_now(o.t, "reloaded") == []


def test_a_model_change_while_refused_connects_at_once() -> None:
    h = Harness()
    refused(h, DownCause.MODEL_NOT_FOUND, 1008, "models/x is not found")
    before = connects(h)
    h._record(h.core.new_session(h.t + 1, "the Live settings changed"))
    assert connects(h) == before + 1
    h.up()
    assert h.core.status.state is DeviceState.IDLE


def test_an_oversized_frame_after_setup_is_retried_with_its_own_backoff() -> None:
    h = Harness()
    h.up()
    h.t += 60
    h.send(LinkDown(h.core.link, 1009, "frame too large", h.t, DownCause.FRAME_TOO_LARGE))
    assert 1.0 <= h.core.reconnect_at - h.t <= 2.0
    assert h.core.status.detail.startswith("server sent an oversized frame, retrying in ")

"""The conversation core, driven event by event with no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.core.backoff import Backoff
from edgevoice.core.conversation import Conversation, ConversationConfig
from edgevoice.core.events import (
    CancelTools,
    Captured,
    CloseLink,
    Connect,
    DeviceState,
    Earcon,
    EndOfReply,
    GenerationComplete,
    GoAway,
    Interrupted,
    LinkDown,
    LinkFailed,
    LinkUp,
    Log,
    NetworkChanged,
    PersistHandle,
    PlayAudio,
    PlaybackIdle,
    PlayEarcon,
    Pressed,
    Released,
    ResumptionUpdate,
    RunTool,
    SavedLedger,
    SendActivityEnd,
    SendActivityStart,
    SendAudio,
    SendContext,
    SendToolResponses,
    ServerAudio,
    Status,
    StopPlayback,
    Tick,
    ToolCall,
    ToolCallsCancelled,
    ToolCallsReceived,
    ToolDeclarationsChanged,
    ToolResult,
    Transcript,
    TurnComplete,
)
from edgevoice.core.families import GEMINI_3_8, ModelFamily

PERIOD = 320
MIC = (np.arange(16000 * 60) % 65521).astype("<u2").view("<i2")  # every sample distinguishable


def mic(start: int, end: int) -> bytes:
    return MIC[start:end].tobytes()


@dataclass
class WireUtterance:
    link: int
    number: int
    audio: bytearray = field(default_factory=bytearray)
    ended: bool = False
    # Capture position of each audio frame sent in it.
    positions: list[int] = field(default_factory=list)
    end: int = 0


class Harness:
    """Feeds the core and keeps what went over each connection."""

    def __init__(
        self,
        preroll: int = 0,
        handle: str | None = None,
        family: ModelFamily = GEMINI_3_8,
        ledger: SavedLedger | None = None,
        t: float = 0.0,
        **config: object,
    ) -> None:
        self.core = Conversation(
            ConversationConfig(period_samples=PERIOD, preroll_samples=preroll, **config),  # type: ignore[arg-type]
            Backoff(0.25, 4.0, rng=random.Random(1)),
            handle=handle,
            family=family,
            ledger=ledger,
        )
        self.t = t
        self.position = 0
        self.actions: list[object] = []
        self.wire: list[WireUtterance] = []
        self.open: WireUtterance | None = None
        self._record(self.core.start(self.t))

    def _record(self, actions: list[object]) -> list[object]:
        for action in actions:
            if isinstance(action, SendActivityStart):
                assert self.open is None or self.open.link != action.link, "activityStart inside an utterance"
                self.open = WireUtterance(action.link, action.utterance)
                self.wire.append(self.open)
            elif isinstance(action, SendAudio):
                assert self.open is not None and self.open.link == action.link, "audio outside an utterance"
                if self.open.positions:
                    assert action.position == self.open.end, "frames not contiguous in capture positions"
                self.open.positions.append(action.position)
                self.open.end = action.end
                self.open.audio += action.pcm
            elif isinstance(action, SendActivityEnd):
                assert self.open is not None and self.open.number == action.utterance
                self.open.ended = True
                self.open = None
            elif isinstance(action, Connect):
                self.open = None
        self.actions += actions
        return actions

    def send(self, event: object) -> list[object]:
        return self._record(self.core.handle(event))  # type: ignore[arg-type]

    def tick(self, seconds: float) -> list[object]:
        self.t += seconds
        return self.send(Tick(self.t))

    def capture(self, periods: int = 1) -> None:
        for _ in range(periods):
            self.t += PERIOD / 16000
            self.send(Captured(self.position, mic(self.position, self.position + PERIOD), self.t))
            self.position += PERIOD

    def up(self, resumed: bool = False) -> list[object]:
        """The pending connection attempt succeeds (after any backoff the core asked for)."""
        while self.core.reconnect_at is not None:
            self.t = max(self.t, self.core.reconnect_at)
            self.send(Tick(self.t))
        return self.send(LinkUp(self.core.link, resumed, self.t))

    def utter(self, press: int, release: int) -> None:
        """Press at sample ``press``, release at ``release``, capture past the release."""
        while self.position + PERIOD <= press:
            self.capture()
        self.send(Pressed(press, self.t))
        while self.position + PERIOD <= release:
            self.capture()
        self.send(Released(release, self.t))
        self.capture()

    def reply(self, chunks: int = 3, handle: str | None = "h", played: bool = True) -> None:
        link = self.core.link
        self.send(Transcript(link, "user", "question", self.t))
        for _ in range(chunks):
            self.send(ServerAudio(link, b"\x01\x00" * 100, self.t))
        self.send(Transcript(link, "model", "answer", self.t))
        self.send(GenerationComplete(link, self.t))
        self.send(TurnComplete(link, self.t))
        if handle:
            self.send(ResumptionUpdate(link, handle, True, self.t))
        if played:
            self.send(PlaybackIdle(self.t))

    def of(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]


def test_an_utterance_is_exactly_the_samples_from_press_to_release() -> None:
    h = Harness()
    h.up()
    h.utter(press=1000, release=9137)
    [utterance] = h.wire
    assert utterance.ended
    assert bytes(utterance.audio) == mic(1000, 9137)


def test_preroll_is_sent_after_activity_start_and_never_overlaps_the_previous_utterance() -> None:
    h = Harness(preroll=4800)
    h.up()
    h.utter(press=8000, release=12000)
    h.reply()
    h.utter(press=13000, release=16000)
    first, second = h.wire
    assert bytes(first.audio) == mic(8000 - 4800, 12000)
    # The second pre-roll would reach back to 8200, inside the first utterance: it stops at 12000.
    assert bytes(second.audio) == mic(12000, 16000)


def test_audio_frames_name_their_capture_positions_and_activity_end_its_utterance() -> None:
    h = Harness(preroll=4800)
    h.up()
    h.utter(press=8000, release=9137)
    [utterance] = h.wire
    frames = h.of(SendAudio)
    # The pre-roll from history, then one frame per capture period, up to the release.
    assert [f.position for f in frames] == [3200, 8000, 8320, 8640, 8960]
    assert frames[-1].end == 9137
    assert all(f.pcm == mic(f.position, f.end) for f in frames)
    assert [a.utterance for a in h.of(SendActivityEnd)] == [utterance.number] == [1]


def test_a_press_arriving_after_its_period_takes_the_audio_from_history() -> None:
    h = Harness()
    h.up()
    h.capture(10)  # position 3200
    h.send(Pressed(2900, h.t))  # stamped inside a period the loop already has
    h.capture(2)  # 3840
    h.send(Released(4000, h.t))
    h.capture()
    assert bytes(h.wire[0].audio) == mic(2900, 4000)


def test_a_second_press_before_the_first_tail_arrives_keeps_the_brackets_in_order() -> None:
    h = Harness()
    h.up()
    h.capture(3)  # 960
    h.send(Pressed(1000, h.t))
    h.capture(2)  # 1600
    h.send(Released(1700, h.t))
    h.send(Pressed(1800, h.t))  # same period as the release, before that period arrives
    h.capture(2)  # 2240
    h.send(Released(2300, h.t))
    h.capture()
    kinds = [type(a).__name__ for a in h.actions if isinstance(a, SendActivityStart | SendActivityEnd)]
    assert kinds == ["SendActivityStart", "SendActivityEnd", "SendActivityStart", "SendActivityEnd"]
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 1700), mic(1800, 2300)]


def test_release_waits_for_the_period_holding_it_then_gives_up_if_capture_stalls() -> None:
    h = Harness()
    h.up()
    h.capture(2)
    h.send(Pressed(700, h.t))
    h.send(Released(900, h.t))  # the period [640, 960) has not arrived
    assert not h.of(SendActivityEnd)
    assert h.core.next_deadline() is not None
    h.tick(0.3)  # capture never delivers it
    assert len(h.of(SendActivityEnd)) == 1
    assert bytes(h.wire[0].audio) == b""


def test_two_turns_then_idle() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    assert h.core.status == Status(DeviceState.THINKING)
    h.reply()
    assert h.core.idle
    h.utter(6000, 9000)
    h.reply()
    assert h.core.idle and h.core.pending_utterances == 0
    assert len(h.of(PlayAudio)) == 6 and len(h.of(EndOfReply)) == 2


def test_barge_in_stops_playback_and_drops_the_rest_of_the_old_turn() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(Pressed(h.position, h.t))
    assert isinstance(h.of(StopPlayback)[-1], StopPlayback)
    played = len(h.of(PlayAudio))
    h.send(ServerAudio(link, b"\x02\x00" * 100, h.t))  # the old turn's audio still in flight
    assert len(h.of(PlayAudio)) == played
    h.send(Interrupted(link, h.t))
    h.send(TurnComplete(link, h.t))  # the old turn ends: must not answer the new utterance
    h.capture(5)
    h.send(Released(h.position + 10, h.t))
    h.capture()
    assert h.core.pending_utterances == 1
    h.reply()
    assert h.core.pending_utterances == 0


def test_barge_in_after_generation_complete_while_turn_complete_is_held_back() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(GenerationComplete(link, h.t))  # the answer is fully here, still playing
    h.send(Pressed(h.position, h.t))
    h.capture(3)
    h.send(Released(h.position + 5, h.t))
    h.capture()
    h.send(TurnComplete(link, h.t))  # the first turn's late turnComplete
    assert h.core.pending_utterances == 1


def test_barge_in_on_an_answer_already_complete_still_answers_the_next_question() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    h.reply(played=False)  # fully received (turnComplete too) but still playing
    h.send(Pressed(h.position, h.t))
    assert h.of(StopPlayback)
    h.capture(3)
    h.send(Released(h.position + 5, h.t))
    h.capture()
    h.reply()
    assert h.core.pending_utterances == 0 and h.core.idle


def test_a_drop_mid_utterance_resends_the_whole_utterance_once_on_the_next_link() -> None:
    h = Harness()
    h.up()
    h.capture(3)
    h.send(Pressed(1000, h.t))
    h.capture(10)
    first_link = h.core.link
    h.send(LinkDown(first_link, 1006, "lost", h.t))
    connects = h.of(Connect)
    assert connects[-1].link == first_link + 1  # first retry at once
    h.capture(10)  # still recording while offline
    h.up(resumed=True)
    h.capture(5)
    h.send(Released(h.position + 7, h.t))
    h.capture()
    on_new = [u for u in h.wire if u.link == first_link + 1]
    assert len(on_new) == 1
    assert bytes(on_new[0].audio) == mic(1000, h.position - PERIOD + 7)


def test_a_drop_mid_reply_stops_the_partial_answer_and_asks_again() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(LinkDown(link, 1011, "reset", h.t))
    assert h.of(StopPlayback)
    h.up(resumed=True)
    resent = [u for u in h.wire if u.link == link + 1]
    assert len(resent) == 1 and resent[0].ended and bytes(resent[0].audio) == mic(1000, 5000)
    h.reply()
    assert h.core.pending_utterances == 0


def test_an_answer_not_yet_in_a_handle_reaches_the_resumed_session_as_text() -> None:
    h = Harness()
    h.up()
    h.send(ResumptionUpdate(h.core.link, "before", True, h.t))
    h.utter(1000, 5000)
    h.reply(handle=None)  # the drop comes before the post-turn handle
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    assert h.of(Connect)[-1].handle == "before"
    h.up(resumed=True)
    context = h.of(SendContext)
    assert len(context) == 1 and not context[0].turn_complete
    assert "User: question" in context[0].text and "Assistant: answer" in context[0].text
    assert len([u for u in h.wire if u.link == h.core.link]) == 0  # not asked again


def test_a_rejected_handle_starts_a_fresh_session() -> None:
    h = Harness(handle="stale")
    assert h.of(Connect) == [Connect(1, "stale")]
    h.send(LinkFailed(h.core.link, 1007, "invalid handle", h.t))
    assert h.of(PersistHandle) == [PersistHandle(None)]
    assert h.of(Connect)[-1].handle is None
    [said] = [a.message for a in h.of(Log) if "fresh session" in a.message]
    assert said == "starting a fresh session: the server refused to resume (1007 invalid handle)"


def test_a_resumed_session_closing_1007_at_once_forgets_the_handle() -> None:
    h = Harness()
    h.up()
    h.send(ResumptionUpdate(h.core.link, "h1", True, h.t))
    h.send(LinkDown(h.core.link, 1006, "lost", h.t))
    h.up(resumed=True)
    h.send(LinkDown(h.core.link, 1007, "cannot continue", h.t + 0.1))
    h.tick(1.0)
    assert PersistHandle(None) in h.of(PersistHandle)
    assert h.of(Connect)[-1].handle is None


def test_failed_attempts_back_off_with_a_cap_and_say_offline() -> None:
    h = Harness()
    delays = []
    for _ in range(10):
        h.send(LinkFailed(h.core.link, None, "refused", h.t))
        deadline = h.core.next_deadline()
        assert deadline is not None
        delays.append(deadline - h.t)
        h.t = deadline
        h.send(Tick(h.t))
    assert delays[0] <= 0.25 and max(delays) <= 4.0 and delays[-1] >= 2.0
    assert h.core.status is not None and h.core.status.state == DeviceState.OFFLINE
    assert h.core.status.text() == "offline: retrying (attempt 11)"
    assert h.of(PlayEarcon).count(PlayEarcon(Earcon.OFFLINE)) == 1
    h.up()
    assert PlayEarcon(Earcon.RECONNECTED) in h.of(PlayEarcon)


def test_a_network_change_while_backing_off_reconnects_at_once() -> None:
    h = Harness()
    for _ in range(6):  # the backoff has grown to seconds
        h.send(LinkFailed(h.core.link, None, "network unreachable", h.t))
        h.t = h.core.reconnect_at
        h.send(Tick(h.t))
    h.send(LinkFailed(h.core.link, None, "network unreachable", h.t))
    assert h.core.reconnect_at - h.t > 1.0
    attempts = len(h.of(Connect))
    h.send(NetworkChanged(h.t + 0.01))  # Wi-Fi is back
    assert len(h.of(Connect)) == attempts + 1 and h.core.reconnect_at is None
    h.send(NetworkChanged(h.t + 0.02))  # already connecting: nothing more
    assert len(h.of(Connect)) == attempts + 1


def test_a_link_that_dies_young_is_retried_with_backoff_not_in_a_loop() -> None:
    h = Harness()
    for _ in range(4):
        h.up()
        h.send(LinkDown(h.core.link, 1007, "bad", h.t + 0.01))
        deadline = h.core.next_deadline()
        if deadline is not None:
            h.t = deadline
            h.send(Tick(h.t))
    connects = h.of(Connect)
    assert len(connects) == 5
    assert h.t > 0.5  # time passed between attempts


def test_goaway_waits_for_the_answer_and_its_handle_then_switches() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(GoAway(link, 30.0, h.t))
    assert not h.of(CloseLink)
    h.reply(handle="after-turn")
    assert h.of(CloseLink) == [CloseLink(link, "switching connection before the server's GoAway deadline")]
    assert h.of(Connect)[-1] == Connect(link + 1, "after-turn")
    assert not h.of(StopPlayback)  # the answer was not cut


def test_new_declarations_wait_for_a_quiet_moment_then_a_fresh_session_hears_the_talk() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 5000)
    h.reply(handle="first")
    h.utter(6000, 9000)
    link = h.core.link
    h.send(ServerAudio(link, b"\x01\x00" * 100, h.t))
    h.send(ToolDeclarationsChanged(h.t))
    h.send(ToolCallsReceived(link, (ToolCall("c1", "set_light", {}),), h.t))
    h.reply(handle="second", played=False)
    # Mid-answer, with its audio playing and a tool call running: no switch.
    assert not h.of(CloseLink) and not h.of(StopPlayback)
    h.send(PlaybackIdle(h.t))
    assert not h.of(CloseLink)
    h.send(ToolResult("c1", "set_light", {"ok": True}, "SILENT", h.t))
    h.tick(30.0)  # past any follow-up window
    assert h.of(CloseLink) == [CloseLink(link, "the functions offered to the model changed")]
    # A fresh session (declarations cannot change in a resumed one), told the exchanges.
    assert h.of(Connect)[-1] == Connect(link + 1, None)
    h.up()
    [context] = [a for a in h.of(SendContext) if a.link == link + 1]
    assert "question" in context.text and "answer" in context.text
    assert not h.of(StopPlayback)
    # Once switched, nothing more to do.
    h.tick(5.0)
    assert len(h.of(CloseLink)) == 1


def test_goaway_deadline_forces_the_switch_while_the_user_talks() -> None:
    h = Harness()
    h.up()
    h.capture(2)
    h.send(Pressed(700, h.t))
    h.send(GoAway(h.core.link, 3.0, h.t))
    h.tick(2.0)
    assert h.of(CloseLink)
    h.up(resumed=True)
    h.capture(3)
    h.send(Released(h.position + 1, h.t))
    h.capture()
    assert bytes(h.wire[-1].audio) == mic(700, h.position - PERIOD + 1)


def test_a_server_that_stops_answering_is_declared_dead() -> None:
    h = Harness(reply_timeout_s=5.0)
    h.up()
    h.tick(60)  # idle silence is fine
    assert not h.of(CloseLink)
    h.utter(1000, 2000)
    h.tick(4.0)
    assert not h.of(CloseLink)
    h.tick(1.5)
    assert h.of(CloseLink)[-1].reason == "the server stopped answering"


def test_tool_results_go_back_by_id_or_as_text_after_a_reconnect() -> None:
    h = Harness()
    h.up()
    link = h.core.link
    calls = (ToolCall("a", "set_light", {}), ToolCall("b", "get_state", {}), ToolCall("c", "set_cover", {}))
    h.send(ToolCallsReceived(link, calls, h.t))
    assert [a.call.id for a in h.of(RunTool)] == ["a", "b", "c"]
    h.send(ToolCallsCancelled(link, ("c",), h.t))
    assert h.of(CancelTools) == [CancelTools(("c",))]
    h.send(ToolResult("a", "set_light", {"ok": True}, "WHEN_IDLE", h.t))
    assert h.of(SendToolResponses)[0].results[0].id == "a"
    h.send(ToolResult("c", "set_cover", {"ok": True}, "WHEN_IDLE", h.t))  # cancelled: no response
    assert len(h.of(SendToolResponses)) == 1
    h.send(LinkDown(link, 1006, "lost", h.t))
    h.send(ToolResult("b", "get_state", {"state": "open"}, "SILENT", h.t))
    h.up(resumed=True)
    texts = [c.text for c in h.of(SendContext)]
    assert any("get_state" in t and '"state": "open"' in t for t in texts)
    assert len(h.of(SendToolResponses)) == 1


def test_drops_never_lose_an_utterance_but_one_the_server_keeps_refusing_is_given_up() -> None:
    h = Harness()
    h.up()
    h.utter(1000, 3000)
    for _ in range(10):  # network drops and server resets: re-sent every time
        h.send(LinkDown(h.core.link, 1006 if h.t % 2 else 1011, "lost", h.t))
        h.up(resumed=True)
    assert h.core.pending_utterances == 1
    for _ in range(3):  # "invalid argument" right after sending it, three times
        h.send(LinkDown(h.core.link, 1007, "invalid argument", h.t))
        h.up()
    assert h.core.pending_utterances == 0
    assert PlayEarcon(Earcon.ERROR) in h.of(PlayEarcon)


def test_an_utterance_recorded_offline_is_sent_when_the_link_returns() -> None:
    h = Harness()
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 4000)
    assert not h.wire
    deadline = h.core.next_deadline()
    h.t = deadline
    h.send(Tick(h.t))
    h.up()
    assert [bytes(u.audio) for u in h.wire] == [mic(1000, 4000)]


def test_an_utterance_older_than_the_offline_limit_is_dropped_with_an_earcon() -> None:
    h = Harness(offline_max_age_s=10.0)
    h.send(LinkFailed(h.core.link, None, "no network", h.t))
    h.utter(1000, 4000)
    for _ in range(40):  # every attempt fails until the utterance is too old
        h.t = max(h.t, h.core.next_deadline())
        h.send(Tick(h.t))
        if h.core.pending_utterances == 0:
            break
        h.send(LinkFailed(h.core.link, None, "no network", h.t))
    assert h.core.pending_utterances == 0
    assert h.of(PlayEarcon)[-1] == PlayEarcon(Earcon.OFFLINE)
    h.up()
    assert not h.wire


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=40),  # periods before the press
            st.integers(min_value=0, max_value=PERIOD - 1),  # press offset inside its period
            st.integers(min_value=1, max_value=4000),  # utterance length in samples
            st.sampled_from(["none", "drop_during", "drop_after", "fail_then_up"]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(min_value=0, max_value=6400),
)
def test_every_utterance_reaches_the_server_whole_whatever_the_drops(plan, preroll) -> None:
    h = Harness(preroll=preroll)
    h.up()
    expected = []
    last_end = 0
    for gap, offset, length, fault in plan:
        h.capture(gap)
        press = h.position + offset
        release = press + length
        h.send(Pressed(press, h.t))
        start = max(press - preroll, last_end, 0)
        expected.append(mic(start, release))
        while h.position + PERIOD <= release:
            h.capture()
            if fault == "drop_during" and h.core.link_up:
                h.send(LinkDown(h.core.link, 1006, "lost", h.t))
                h.up(resumed=True)
        h.send(Released(release, h.t))
        h.capture()
        last_end = release
        if fault == "drop_after":
            h.send(LinkDown(h.core.link, 1011, "reset", h.t))
            h.up(resumed=True)
        elif fault == "fail_then_up":
            h.send(LinkDown(h.core.link, 1006, "lost", h.t))
            h.send(LinkFailed(h.core.link, None, "refused", h.t))
            h.t = h.core.next_deadline() or h.t
            h.send(Tick(h.t))
            h.up(resumed=True)
        h.reply()
    # What the server finally holds: for each utterance, its last complete sending.
    final: dict[int, bytes] = {}
    for utterance in h.wire:
        if utterance.ended:
            final[utterance.number] = bytes(utterance.audio)
    assert [final[n] for n in sorted(final)] == expected
    # Each utterance went at most once over each connection.
    pairs = [(u.link, u.number) for u in h.wire]
    assert len(pairs) == len(set(pairs))
    assert h.core.pending_utterances == 0

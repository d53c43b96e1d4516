"""The server's turn as a state machine: from its first output to the speaker falling quiet.

::

    IDLE --content--> OPEN --audio--> GENERATING --generation_complete--> GENERATED
      |                 |                  |                                  |
      | turn_complete   +------------------+---------- turn_complete --------+
      v                                    v                                  v
    EMPTY (a turnComplete with nothing:    PLAYING_OUT --playback_idle--> IDLE
           wait briefly for late audio)
    any open turn --barge_in--> STALE --turn_complete / timeout--> IDLE

A turn answers at most one utterance (the conversation decides which); ``answered`` says
whether it has. A turn the user cut into is STALE: the rest of its output is dropped and
its turnComplete answers nothing. A turn the server interrupted has answered, and stays
open until its turnComplete. Turns that never send
turnComplete (some models end with generationComplete only) and a turnComplete that comes
before its audio are closed by a deadline (``deadline``), never by waiting for a message
that may not come.
"""

from __future__ import annotations

from enum import Enum

from edgevoice.core.machine import Machine


class TurnState(Enum):
    IDLE = "idle"  # no turn open, the speaker quiet
    OPEN = "open"  # the turn began (transcript, tool call), no audio yet
    GENERATING = "generating"  # its audio is arriving
    GENERATED = "generated"  # generationComplete: all audio is here, turnComplete not yet
    PLAYING_OUT = "playing out"  # the server's turn is over, the speaker still plays it
    EMPTY = "empty"  # turnComplete with no content: late audio may still come
    STALE = "stale"  # cut short: its remaining output is dropped


class TurnTrigger(Enum):
    CONTENT = "content"  # a transcript or a tool call
    AUDIO = "audio"
    GENERATION_COMPLETE = "generation_complete"
    TURN_COMPLETE = "turn_complete"
    INTERRUPTED = "interrupted"  # the server cut its own turn short
    BARGE_IN = "barge_in"  # the user pressed while it was being answered
    PLAYBACK_IDLE = "playback_idle"
    TIMEOUT = "timeout"  # the turn's deadline passed with nothing more
    RESET = "reset"  # the connection is gone, the speaker quiet
    RESET_PLAYING = "reset_playing"  # the connection is gone, the speaker still plays


_S, _T = TurnState, TurnTrigger
_ALWAYS = {_T.RESET: _S.IDLE, _T.RESET_PLAYING: _S.PLAYING_OUT}
# The server cut a turn short: the turn stays open (later output of it still plays, and its
# turnComplete closes it) but it has answered; a cut turn never seen is stale.
_INTERRUPTED = {_T.INTERRUPTED: _S.OPEN}
TURN_TRANSITIONS: dict[TurnState, dict[TurnTrigger, TurnState]] = {
    _S.IDLE: {
        _T.CONTENT: _S.OPEN,
        _T.AUDIO: _S.GENERATING,
        _T.TURN_COMPLETE: _S.EMPTY,
        _T.GENERATION_COMPLETE: _S.IDLE,
        _T.INTERRUPTED: _S.OPEN,  # a turn cut before we saw any of it: it answers
        _T.BARGE_IN: _S.IDLE,
        _T.PLAYBACK_IDLE: _S.IDLE,
        **_ALWAYS,
    },
    _S.OPEN: {
        _T.CONTENT: _S.OPEN,
        _T.AUDIO: _S.GENERATING,
        _T.GENERATION_COMPLETE: _S.GENERATED,
        _T.TURN_COMPLETE: _S.PLAYING_OUT,
        _T.BARGE_IN: _S.STALE,
        _T.PLAYBACK_IDLE: _S.OPEN,
        _T.TIMEOUT: _S.PLAYING_OUT,
        **_INTERRUPTED,
        **_ALWAYS,
    },
    _S.GENERATING: {
        _T.CONTENT: _S.GENERATING,
        _T.AUDIO: _S.GENERATING,
        _T.GENERATION_COMPLETE: _S.GENERATED,
        _T.TURN_COMPLETE: _S.PLAYING_OUT,
        _T.BARGE_IN: _S.STALE,
        _T.PLAYBACK_IDLE: _S.GENERATING,
        _T.TIMEOUT: _S.PLAYING_OUT,
        **_INTERRUPTED,
        **_ALWAYS,
    },
    _S.GENERATED: {
        _T.CONTENT: _S.GENERATED,
        _T.AUDIO: _S.GENERATED,  # out of order, but it is this turn's: play it
        _T.GENERATION_COMPLETE: _S.GENERATED,
        _T.TURN_COMPLETE: _S.PLAYING_OUT,
        _T.BARGE_IN: _S.STALE,
        _T.PLAYBACK_IDLE: _S.GENERATED,
        _T.TIMEOUT: _S.PLAYING_OUT,
        **_INTERRUPTED,
        **_ALWAYS,
    },
    _S.PLAYING_OUT: {
        # The next turn may begin while this one still plays.
        _T.CONTENT: _S.OPEN,
        _T.AUDIO: _S.GENERATING,
        _T.TURN_COMPLETE: _S.EMPTY,
        _T.GENERATION_COMPLETE: _S.PLAYING_OUT,
        _T.INTERRUPTED: _S.IDLE,
        _T.BARGE_IN: _S.IDLE,
        _T.PLAYBACK_IDLE: _S.IDLE,
        **_ALWAYS,
    },
    _S.EMPTY: {
        _T.CONTENT: _S.OPEN,
        _T.AUDIO: _S.GENERATING,
        _T.GENERATION_COMPLETE: _S.EMPTY,
        _T.TURN_COMPLETE: _S.EMPTY,
        _T.BARGE_IN: _S.IDLE,
        _T.PLAYBACK_IDLE: _S.EMPTY,
        _T.INTERRUPTED: _S.EMPTY,
        _T.TIMEOUT: _S.IDLE,
        **_ALWAYS,
    },
    _S.STALE: {
        _T.CONTENT: _S.STALE,
        _T.AUDIO: _S.STALE,
        _T.GENERATION_COMPLETE: _S.STALE,
        _T.TURN_COMPLETE: _S.IDLE,
        _T.BARGE_IN: _S.STALE,
        _T.PLAYBACK_IDLE: _S.STALE,
        _T.INTERRUPTED: _S.STALE,
        _T.TIMEOUT: _S.IDLE,
        **_ALWAYS,
    },
}

# States in which the turn has content and has not answered yet may answer an utterance.
ANSWERING = frozenset({TurnState.OPEN, TurnState.GENERATING, TurnState.GENERATED})


class Turn(Machine[TurnState, TurnTrigger]):
    """The current turn's state and the few facts about it that decisions need."""

    name = "turn"

    def __init__(self) -> None:
        super().__init__(TurnState.IDLE, TURN_TRANSITIONS)
        self.answered = False  # this turn has answered its utterance
        self.completed_early = False  # its turnComplete came before its content
        self.speaker_busy = False  # audio was given to the speaker and has not played out
        self.deadline: float | None = None  # no message by then: the turn is over
        self.model_turns = 0  # turns with content on this connection
        self.had_audio = False  # this turn's audio reached the speaker
        # A turn closed at a press after its generationComplete: its turnComplete may still
        # come (or never, on some models) and must not be taken for the next turn's.
        self.owed_turn_complete = False

    def fire(self, trigger: TurnTrigger) -> TurnState:
        before = self.state
        after = super().fire(trigger)
        if before in (TurnState.IDLE, TurnState.PLAYING_OUT, TurnState.EMPTY) and after in ANSWERING:
            # A new turn begins.
            self.answered = False
            self.had_audio = False
            self.completed_early = before is TurnState.EMPTY
            self.model_turns += 1
            self.owed_turn_complete = False
        if after in (TurnState.IDLE, TurnState.PLAYING_OUT):
            self.deadline = None
            self.completed_early = False
        return after

    @property
    def generating(self) -> bool:
        return self.state is TurnState.GENERATING

    @property
    def open(self) -> bool:
        return self.state not in (TurnState.IDLE, TurnState.PLAYING_OUT)

    def reset(self, *, speaker_plays_on: bool = False) -> None:
        """The connection is gone; ``speaker_plays_on``: what was received still plays."""
        keep = speaker_plays_on and self.speaker_busy
        self.fire(TurnTrigger.RESET_PLAYING if keep else TurnTrigger.RESET)
        self.speaker_busy = keep
        self.deadline = None
        self.model_turns = 0
        self.answered = False
        self.completed_early = False
        self.owed_turn_complete = False

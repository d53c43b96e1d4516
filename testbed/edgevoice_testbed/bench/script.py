"""The scripted conversation both clients go through: presses, answers, faults.

Plain data and arithmetic, no I/O: :func:`build_script` turns the lengths of the spoken
texts (measured by the caller) into a press schedule, the emulator scenario and the
moments at which the network is dropped or a GoAway is sent.

The conversation is a series of pairs of exchanges:

- a *tool* exchange: the user asks for the kitchen light; the model calls ``set_light``
  (NON_BLOCKING), answers, and speaks a follow-up once the result is back;
- a *talk* exchange: a longer answer, which every other pair the user interrupts by
  pressing again while the model is still sending it (a barge-in the server answers with
  ``interrupted``, the only barge-in the reference client knows).

A drop or a GoAway is injected in the silence after a fully answered talk exchange. The
scenario's turns alternate tool/talk, so a client that resumes its session (EdgeVoice:
the turn count goes on) and one that starts a new session (the reference: the count
starts again at 1) hear the same answers at the same moments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What the user says and what the emulated model answers.
ASK_TOOL = "Switch on the kitchen light"
ASK_TALK = "Weather tomorrow?"
REPLY_TOOL = "Okay."
FOLLOW_UP_TOOL = "It is on."
REPLY_TALK = "Sunny and mild, with a high of twenty two degrees and a light breeze from the west."
SPOKEN_TEXTS = (ASK_TOOL, ASK_TALK)
REPLY_TEXTS = (REPLY_TOOL, FOLLOW_UP_TOOL, REPLY_TALK)

# Timing of the script (seconds).
LEAD_IN_S = 0.8  # silence before the first press (the link is up before the script starts)
SPEECH_OFFSET_S = 0.15  # the user starts speaking this long after pressing
RELEASE_AFTER_SPEECH_S = 0.2
REPLY_DELAY_MS = 300  # the model's "thinking" time
PACE = 2.0  # reply audio is sent twice as fast as it plays
# The service renews a session's resumption handle unasked every few seconds (resumable:
# false while the model speaks or a call is pending): a client that asked for resumption
# hears it all the time it sits idle, and the idle figure includes what that costs.
HANDLE_RENEWAL_EVERY_S = 3.0
CHUNK_MS = 200
# Answer latency beyond the audio's own length (prebuffer, network, the tool's run).
ANSWER_SLACK_S = 0.5
GAP_S = 0.8  # the user waits this long after an answer before pressing again
# Well inside the sending of the talk answer (delay + length / pace: about 2.6 s).
BARGE_IN_AFTER_RELEASE_S = 1.1
FAULT_AFTER_ANSWER_S = 0.5
# Room after a fault for the reference's close (a GoAway's time left) and reconnect.
FAULT_ROOM_S = 1.9
GOAWAY_TIME_LEFT_S = 1.0
TAIL_S = 1.5

# How the reply audio of the chunk-pattern exchanges arrives: [chunk_ms, ms until the next
# chunk] pairs, repeated (the emulator's turn option ``chunk_pattern``).
CHUNK_PATTERNS: dict[str, list[list[float]]] = {
    # 20-40 ms chunks, irregular gaps (up to 40 ms), a little faster than real time on average.
    "small": [[20, 10], [40, 40], [30, 20], [20, 25]],
    # 400 ms of audio at once every 300 ms.
    "bursts": [[40, 0]] * 9 + [[40, 300]],
    # Twice real time, then half real time for 2 s, then twice again.
    "slow": [[40, 20]] * 5 + [[40, 80]] * 25 + [[40, 20]] * 120,
}

# Pair plans: how each talk exchange ends. B: barged in by the next press; A: answered;
# D / G: answered, then a network drop / a GoAway; X: answered, then a drop, then a GoAway.
QUICK_PLAN = "BBX"
FULL_PLAN = "BABD" "BABG" "BABD" "BABG" "BABD" "BABG"
_FAULTS = {"A": (), "D": ("drop",), "G": (f"goaway:{GOAWAY_TIME_LEFT_S:g}",)}
_FAULTS["X"] = _FAULTS["D"] + _FAULTS["G"]


@dataclass(frozen=True)
class Exchange:
    kind: str  # "tool" | "talk"
    text: str
    press_s: float
    speech_s: float  # when the speech starts in the microphone file
    release_s: float
    barge_in: bool  # this press interrupts the answer before it


@dataclass(frozen=True)
class ScheduledFault:
    at_s: float  # seconds into the microphone timeline
    spec: str  # an emulator fault without a trigger: "drop", "goaway:1"


@dataclass(frozen=True)
class Script:
    plan: str
    exchanges: tuple[Exchange, ...]
    faults: tuple[ScheduledFault, ...]
    duration_s: float
    scenario: dict[str, Any] = field(hash=False)
    # Connected silence at the end (for the idle CPU figure).
    idle_s: float = 0.0
    # The chunk pattern of each exchange's answer (the chunk-pattern script only).
    patterns: tuple[str, ...] = ()

    @property
    def presses(self) -> list[tuple[float, float]]:
        return [(e.press_s, e.release_s) for e in self.exchanges]

    @property
    def barge_ins(self) -> int:
        return sum(e.barge_in for e in self.exchanges)

    def describe(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "duration_s": round(self.duration_s, 3),
            "exchanges": [
                {
                    "kind": e.kind,
                    "press_s": round(e.press_s, 3),
                    "release_s": round(e.release_s, 3),
                    "barge_in": e.barge_in,
                }
                for e in self.exchanges
            ],
            "faults": [{"at_s": round(f.at_s, 3), "fault": f.spec} for f in self.faults],
            "idle_s": self.idle_s,
            "patterns": list(self.patterns),
        }


def build_script(
    plan: str, *, speech_s: dict[str, float], reply_s: dict[str, float], idle_s: float = 0.0
) -> Script:
    """The conversation of ``plan`` (one letter per tool/talk pair, see :data:`QUICK_PLAN`),
    followed by ``idle_s`` of connected silence.

    ``speech_s`` and ``reply_s`` give the length of every text in :data:`SPOKEN_TEXTS` and
    :data:`REPLY_TEXTS` as rendered. A barge-in cannot end the last pair.
    """
    if not plan or set(plan) - {"B", *_FAULTS}:
        raise ValueError(f"bad plan {plan!r}: one letter per pair among B, A, D, G, X")
    if plan[-1] == "B":
        raise ValueError(f"bad plan {plan!r}: the last answer cannot be interrupted")
    exchanges: list[Exchange] = []
    faults: list[ScheduledFault] = []
    t = LEAD_IN_S
    barge_in_next = False
    for ending in plan:
        tool = _exchange("tool", ASK_TOOL, t, speech_s[ASK_TOOL], barge_in_next)
        exchanges.append(tool)
        tool_answer = reply_s[REPLY_TOOL] + reply_s[FOLLOW_UP_TOOL]
        t = tool.release_s + REPLY_DELAY_MS / 1000 + tool_answer + ANSWER_SLACK_S + GAP_S
        talk = _exchange("talk", ASK_TALK, t, speech_s[ASK_TALK], barge_in=False)
        exchanges.append(talk)
        barge_in_next = ending == "B"
        if barge_in_next:
            t = talk.release_s + BARGE_IN_AFTER_RELEASE_S
            continue
        t = talk.release_s + REPLY_DELAY_MS / 1000 + reply_s[REPLY_TALK] + ANSWER_SLACK_S
        for spec in _FAULTS[ending]:
            faults.append(ScheduledFault(t + FAULT_AFTER_ANSWER_S, spec))
            t += FAULT_AFTER_ANSWER_S + FAULT_ROOM_S
        t += GAP_S
    duration = t - GAP_S + TAIL_S + idle_s
    return Script(plan, tuple(exchanges), tuple(faults), duration, scenario_for(len(exchanges)), idle_s)


def _exchange(kind: str, text: str, press_s: float, speech_s: float, barge_in: bool) -> Exchange:
    speech = press_s + SPEECH_OFFSET_S
    return Exchange(kind, text, press_s, speech, speech + speech_s + RELEASE_AFTER_SPEECH_S, barge_in)


def scenario_for(exchanges: int) -> dict[str, Any]:
    """The emulator scenario: turns alternate tool/talk (see the module docstring)."""
    tool_turn = {
        "input_transcript": ASK_TOOL,
        "reply": REPLY_TOOL,
        "reply_delay_ms": REPLY_DELAY_MS,
        "tool_calls": [
            {"name": "set_light", "args": {"entity": "kitchen light", "on": True}, "when": "before_reply"}
        ],
        "follow_up": FOLLOW_UP_TOOL,
    }
    talk_turn = {"input_transcript": ASK_TALK, "reply": REPLY_TALK, "reply_delay_ms": REPLY_DELAY_MS}
    turns = [tool_turn if i % 2 == 0 else talk_turn for i in range(exchanges + 2)]
    return {
        "name": "benchmark",
        "description": "Alternating tool and talk turns for edgevoice bench.",
        "turns": turns,
        "default": talk_turn,
        "voice": "espeak",
        "chunk_ms": CHUNK_MS,
        "pace": PACE,
        "resumption_updates_every_s": HANDLE_RENEWAL_EVERY_S,
    }


def quick_script(speech_s: dict[str, float], reply_s: dict[str, float], idle_s: float = 0.0) -> Script:
    """About 35 s: two barge-ins, three tool calls, a drop and a GoAway (then ``idle_s``)."""
    return build_script(QUICK_PLAN, speech_s=speech_s, reply_s=reply_s, idle_s=idle_s)


def full_script(speech_s: dict[str, float], reply_s: dict[str, float], idle_s: float = 0.0) -> Script:
    """About four minutes: a dozen barge-ins, two dozen tool calls, three drops and three
    GoAways (then ``idle_s``)."""
    return build_script(FULL_PLAN, speech_s=speech_s, reply_s=reply_s, idle_s=idle_s)


# Room for the slowest pattern: its gap outlasts the 2 s slow stretch.
PATTERN_SLACK_S = 3.0


def pattern_script(speech_s: dict[str, float], reply_s: dict[str, float]) -> Script:
    """One talk exchange per :data:`CHUNK_PATTERNS` entry, each answered on its pattern;
    no faults (so both clients' turn counts stay together)."""
    names = tuple(CHUNK_PATTERNS)
    exchanges = []
    t = LEAD_IN_S
    for _ in names:
        talk = _exchange("talk", ASK_TALK, t, speech_s[ASK_TALK], barge_in=False)
        exchanges.append(talk)
        t = talk.release_s + REPLY_DELAY_MS / 1000 + reply_s[REPLY_TALK] + PATTERN_SLACK_S + GAP_S
    turns = [
        {"input_transcript": ASK_TALK, "reply": REPLY_TALK, "reply_delay_ms": REPLY_DELAY_MS,
         "chunk_pattern": CHUNK_PATTERNS[name]}
        for name in names
    ]
    scenario = {**scenario_for(0), "name": "benchmark-chunk-patterns",
                "description": "Talk turns whose audio comes in small chunks, bursts, slowly.",
                "turns": turns}
    duration = t - GAP_S + TAIL_S
    return Script("patterns", tuple(exchanges), (), duration, scenario, 0.0, names)

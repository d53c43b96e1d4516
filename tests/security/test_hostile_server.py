"""Hostile server input: the real daemon (``simulate`` on simulated hardware) against the
emulator sending malformed and out-of-order frames in the middle of its replies.

Each example is a conversation of two utterances: hostile frames are injected into the
reply to the first, the second is clean. The daemon must neither crash nor hang, must log
what it could not use, and must answer the clean utterance. One emulator (in its own
thread) serves every example; replies are unpaced.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from edgevoice_testbed.emulator import EmulatorThread, Scenario
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.security.hostile import FRAMES, REPRESENTATIVE, Hostile, hostile_case

EXAMPLES = 40
REPLY = "Here is the answer."
SCENARIO = Scenario.model_validate(
    {
        "voice": "tone",
        "pace": "fast",
        "chunk_ms": 100,
        "default": {"input_transcript": "a question", "reply": REPLY},
    }
)
OVERRIDES = {
    "audio": {"preroll_ms": 0},
    # A reply owed but silent (a hostile frame ate it) is given up on quickly.
    "live": {"reply_timeout_s": 3.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.5},
    "home": {
        "entities": [{"id": "light.kitchen", "name": "Kitchen light"}],
        "simulated": {"latency_s": 0, "persist": False},
    },
}
# Frames the SDK cannot turn into a message (or that break the connection): each must leave
# a warning in the log. (Other kinds can be well-formed by chance, e.g. {"serverContent": {}}.)
MUST_LOG = {
    "invalid JSON",
    "JSON that is not an object",
    "unknown or snake_case top-level key",
    "invalid base64 audio",
    "deeply nested JSON",
    "huge frame",
}


def ends_a_turn(hostile: Hostile) -> bool:
    """A frame the SDK reads as the end of a turn (turnComplete, generationComplete or
    interrupted) sent in the middle of a reply. The rest of that reply then arrives as a turn
    of its own, and an utterance whose activityEnd goes out before that turn's turnComplete
    takes it as its answer: with the simulator pressing again within milliseconds of an
    answer, the clean question's real answer can come after the run has ended. The protocol
    has no turn ids; docs/security.md describes it. Such cases are held to everything but
    the last transcript line."""
    payload = hostile.inject.get("text")
    if payload is None:
        payload = base64.b64decode(hostile.inject["binary_base64"]).decode("utf-8", "replace")
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    content = message.get("serverContent") if isinstance(message, dict) else None
    return isinstance(content, dict) and any(
        content.get(key) not in (None, False, 0, "", [], {})
        for key in ("turnComplete", "generationComplete", "interrupted")
    )


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def shared_emulator():
    with EmulatorThread(SCENARIO) as emulator:
        yield emulator
        assert not emulator.errors, emulator.errors


def run_example(emulator: EmulatorThread, frames: list[dict[str, str]], out: Path) -> tuple[list[str], list]:
    emulator.arm_injections(frames, replace=True)
    handler = Collect()
    logger = logging.getLogger("edgevoice")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        result = asyncio.run(
            simulate(
                SimulationOptions(
                    presses=[(0.1, 0.5), (0.8, 1.2)],
                    out=out,
                    earcons=False,
                    emulator=emulator,
                    overrides=OVERRIDES,
                    timeout_s=30,
                )
            )
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return result.transcript, handler.records


def test_hostile_frames_never_crash_or_hang_the_daemon(shared_emulator, tmp_path):
    ran: list[list[str]] = []
    kinds: collections.Counter[str] = collections.Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
    @given(case=hostile_case())
    def one_case(case: list[Hostile]) -> None:
        frames = [hostile.inject for hostile in case]
        before = len(shared_emulator.sent)
        utterances_before = len(shared_emulator.utterances)
        transcript, records = run_example(shared_emulator, frames, tmp_path / "out.wav")
        sent = shared_emulator.sent[before:]
        ran.append([hostile.kind for hostile in case])
        kinds.update(hostile.kind for hostile in case)
        messages = [r.getMessage() for r in records]
        # The clean second utterance was answered, and answered last; nothing was given up.
        # (Unless the server ended a turn early: see ends_a_turn.)
        if not any(ends_a_turn(hostile) for hostile in case):
            assert transcript[-1] == f"assistant: {REPLY}", transcript
        assert sum(u.complete for u in shared_emulator.utterances[utterances_before:]) >= 2
        assert not any("gave up on utterance" in m for m in messages), messages
        # No hostile frame made the client deaf (waiting out the reply timeout) or broke a
        # task: it was parsed, ignored, or it dropped the connection.
        assert not any("stopped answering" in m or "failed" in m for m in messages), messages
        # (The watchdog's "capture stalled" is the simulated microphone pausing while the
        # daemon waits for a follow-up that an unknown tool call id never gets: not ours.)
        assert all(r.levelno < logging.ERROR for r in records if r.name != "edgevoice.service.watchdog"), (
            messages
        )
        assert any(frame.message is None for frame in sent)  # the injections went out
        if MUST_LOG & {hostile.kind for hostile in case}:
            assert any(r.levelno == logging.WARNING for r in records), messages

    for kind, frame in REPRESENTATIVE.items():  # every kind, every run
        one_case = example(case=[Hostile(kind, {**frame, "when": "after_chunk:1"})])(one_case)
    one_case()
    print(f"\n{len(ran)} hostile conversations, {sum(kinds.values())} hostile frames: {dict(kinds)}")
    assert len(ran) >= EXAMPLES + len(REPRESENTATIVE)
    assert set(kinds) == set(FRAMES), set(FRAMES) - set(kinds)


def test_an_empty_server_message_is_reported():
    """What the SDK makes of "{}", "[]", "null" or an empty frame: nothing, so say so."""
    from google.genai import types

    from edgevoice.core.events import ServerProblem
    from edgevoice.live.messages import events_from_message

    [problem] = events_from_message(types.LiveServerMessage(), 3, 1.5)
    assert problem == ServerProblem(3, "an empty server message: ignored", 1.5)
    assert (
        events_from_message(types.LiveServerMessage(setup_complete=types.LiveServerSetupComplete()), 3, 1.5)
        == []
    )

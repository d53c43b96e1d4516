"""Announcements through the control socket, heard after the chime, behind a playing answer.

The simulated speaker plays what it is given at once (unpaced), so the output holds each
answer whole; the emulator speaks at real pace, so an announcement can arrive mid-answer."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from edgevoice.audio.earcons import render
from edgevoice.service.control import request
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav

NEWS = "The washing machine is done"
STORY = "Once upon a time there was a kitchen with a light that wanted to shine all night."


def prompts_with(emulator, text: str) -> list[tuple[float, dict]]:
    return [
        (f.t, f.message["clientContent"])
        for f in emulator.received
        if f.message and "clientContent" in f.message and text in json.dumps(f.message)
    ]


def assert_heard_in_order(output: bytes, *sounds: bytes) -> None:
    position = 0
    for sound in sounds:
        found = output.find(sound, position)
        assert found >= position, f"sound {sounds.index(sound)} not heard in order"
        position = found + len(sound)


async def test_an_announcement_through_the_socket_waits_for_the_answer_then_chime_then_words(
    tmp_path: Path, emulator_factory
) -> None:
    noise_wav(tmp_path / "mic.wav", 4.0)
    emulator = await emulator_factory(
        pace=1.0,
        turns=[{"input_transcript": "tell me a story", "reply": STORY}],
        default={"reply": NEWS + "."},
    )
    socket_path = tmp_path / "run" / "control.sock"
    run = asyncio.create_task(
        simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=[(0.2, 0.8)],
                out=tmp_path / "out.wav",
                earcons=False,
                overrides={"audio": {"preroll_ms": 0}, "device": {"control_socket": str(socket_path)}},
                emulator=emulator,
                state_dir=tmp_path / "state",
            )
        )
    )
    # While the story is being told, a shell on the device announces something.
    await emulator.wait_for(lambda e: bool(e.replies) and e.replies[0].chunks >= 2, timeout=30)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    answer = await asyncio.to_thread(request, socket_path, {"command": "announce", "text": NEWS})
    assert answer == {"ok": True}
    bad = await asyncio.to_thread(request, socket_path, {"command": "announce", "text": "  "})
    assert bad["ok"] is False and "needs some text" in bad["error"]
    result = await run
    story, news = emulator.replies
    assert story.finished and not story.interrupted and news.kind == "client"
    # Asked exactly once, word for word, after the story had been told.
    [(asked_t, content)] = prompts_with(emulator, NEWS)
    assert content["turnComplete"] is True and asked_t > story.end_t
    assert NEWS in content["turns"][0]["parts"][0]["text"]
    # Heard: the story, then the chime, then the announcement.
    output = (tmp_path / "out.wav").read_bytes()[44:]
    assert_heard_in_order(output, story.audio, render("chime"), news.audio)
    assert [n.text for n in result.daemon.household.spoken] == [NEWS]
    assert not socket_path.exists()  # removed when the daemon stopped


async def test_offline_an_announcement_chimes_at_once_and_is_spoken_when_back_only_if_young(
    tmp_path: Path, emulator_factory, caplog
) -> None:
    noise_wav(tmp_path / "mic.wav", 2.0)
    emulator = await emulator_factory(
        pace=1.0,
        turns=[{"input_transcript": "hello", "reply": "Hi."}],
        default={"reply": "Dinner is ready."},
    )
    socket_path = tmp_path / "control.sock"
    run = asyncio.create_task(
        simulate(
            SimulationOptions(
                mic=tmp_path / "mic.wav",
                presses=[(0.2, 0.6)],
                out=tmp_path / "out.wav",
                earcons=False,
                overrides={
                    "audio": {"preroll_ms": 0},
                    # The question itself is given up offline, so the link comes back quiet.
                    "live": {"reconnect_initial_s": 0.25, "reconnect_max_s": 0.5, "offline_max_age_s": 2.0},
                    "device": {"control_socket": str(socket_path), "announcement_max_age_s": 3.5},
                },
                emulator=emulator,
                state_dir=tmp_path / "state",
                # The connection drops as the question starts and is refused until the
                # test has made both announcements (ended below).
                faults=["refuse:600@utterance:1:frame:1"],
            )
        )
    )
    await emulator.wait_for(lambda e: bool(e.fired_faults), timeout=30)
    fault_t = emulator.fired_faults[0].t
    # The daemon knows it is offline once it tries again (before that, an announcement
    # would be queued as online and never chimed).
    await emulator.wait_for(lambda e: bool(e.rejected_handshakes), timeout=30)
    old = await asyncio.to_thread(request, socket_path, {"command": "announce", "text": "The post has come"})
    assert old == {"ok": True}
    # More than the maximum age later, still offline: a second one.
    await emulator.wait_for(
        lambda e: any(t > fault_t + 3.6 for t, _path, _status in e.rejected_handshakes), timeout=30
    )
    fresh = await asyncio.to_thread(request, socket_path, {"command": "announce", "text": "Dinner is ready"})
    assert fresh == {"ok": True}
    back_t = emulator.clock()
    emulator.end_refusal()
    result = await run
    assert prompts_with(emulator, "The post has come") == []
    [(asked_t, _content)] = prompts_with(emulator, "Dinner is ready")
    assert asked_t > back_t
    assert [n.text for n in result.daemon.household.spoken] == ["Dinner is ready"]
    assert "not spoken, too old: The post has come" in caplog.text
    # A chime for each announcement when it arrived offline, one more before the words.
    output = (tmp_path / "out.wav").read_bytes()[44:]
    assert output.count(render("chime")) == 3
    news = next(r for r in emulator.replies if r.kind == "client")
    assert_heard_in_order(output, render("chime"), render("chime"), render("chime"), news.audio)

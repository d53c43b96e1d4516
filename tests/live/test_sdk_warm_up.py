"""The SDK's message models are built before the daemon is ready (``sdk.warm_up``) or at
its first connect, so that none is built on the event loop in the middle of a
conversation. Checked in a fresh interpreter: in this one, other tests have built models
already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A conversation with everything the SDK parses or builds for the device: setup, audio,
# transcriptions, a function call and its response, a GoAway and the resumed session.
# (A timer's prompt would add client content: the warm-up builds that too.)
CONVERSATION = """
import asyncio, inspect, json, sys
from pathlib import Path

import pydantic
from google.genai import types

from edgevoice.live import sdk


def built() -> set[str]:
    return {
        name for name, model in inspect.getmembers(types, inspect.isclass)
        if issubclass(model, pydantic.BaseModel) and model.__dict__.get("__pydantic_complete__", False)
    }


# What is built by the time the first connection is open: the warm-up, then the connect.
warmed: set[str] = set()
open_session = sdk.open_session


async def open_and_note(*args, **kwargs):
    session = await open_session(*args, **kwargs)
    if not warmed:
        warmed.update(built())
    return session


sdk.open_session = open_and_note

from edgevoice_testbed.emulator.server import Emulator
from edgevoice_testbed.sim.simulate import SimulationOptions, simulate
from tests.e2e.conftest import noise_wav, scenario

LIGHT_ON = {
    "input_transcript": "turn on the kitchen light",
    "reply": "Turning it on.",
    "tool_calls": [{"name": "set_light", "args": {"entity": "kitchen light", "on": True}}],
    "follow_up": "Done.",
}


async def main() -> None:
    tmp = Path(sys.argv[1])
    noise_wav(tmp / "mic.wav", 5.0)
    emulator = Emulator(scenario=scenario(turns=[LIGHT_ON], pace=4.0))
    await emulator.start()
    try:
        await simulate(SimulationOptions(
            mic=tmp / "mic.wav", presses=[(0.5, 1.5), (3.0, 3.8)], out=tmp / "out.wav",
            earcons=False, emulator=emulator, faults=["goaway:1@reply:1:chunk:2"],
            state_dir=tmp / "state", timeout_s=60,
        ))
    finally:
        await emulator.aclose()
    print(json.dumps({"warmed": sorted(warmed), "built_later": sorted(built() - warmed)}))


asyncio.run(main())
"""


def test_no_sdk_model_is_built_during_a_conversation(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "testbed"), str(REPO)])}
    done = subprocess.run(
        [sys.executable, "-c", CONVERSATION, str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert "LiveServerMessage" in figures["warmed"] and "LiveClientToolResponse" in figures["warmed"]
    assert figures["built_later"] == []

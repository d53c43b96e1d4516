"""EmulatorThread (a loop of its own) and the ``edgevoice emulator`` command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from edgevoice.cli import main
from edgevoice_testbed.emulator import EmulatorThread
from edgevoice_testbed.emulator.voice import ToneVoice
from tests.emulator.helpers import (
    MODEL,
    TEST_KEY,
    audio_of,
    client_for,
    live_config,
    receive_turn,
    scenario,
    speak,
)

ROOT = Path(__file__).resolve().parents[2]


def test_emulator_thread_serves_a_client_on_another_loop():
    sc = scenario(default={"input_transcript": "hi", "reply": "hello there"})
    with EmulatorThread(sc) as emu:

        async def converse() -> bytes:
            async with asyncio.timeout(20):
                client = client_for(emu)
                async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
                    await speak(session)
                    reply = audio_of(await receive_turn(session))
                    emu.inject_fault("close:1012")
                    with pytest.raises(errors.APIError) as raised:
                        await receive_turn(session)
                        await receive_turn(session)
                    assert raised.value.code == 1012
                    return reply

        reply = asyncio.run(converse())
        emu.wait_for(lambda e: e.connections and not e.connections[0].is_open, timeout=10)
        assert reply == emu.replies[0].audio == ToneVoice().render("hello there")
        assert emu.history[0].text == "hi" and emu.errors == []
        with pytest.raises(TimeoutError, match=r"condition not met within 0\.05 s; connections=1"):
            emu.wait_for(lambda e: len(e.replies) > 5, timeout=0.05)
        port = emu.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_bad_scenario_file_is_one_clear_line(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"turns": [{"reply": "x", "tool_calls": [{"name": ""}]}]}))
    assert main(["emulator", "--scenario", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"edgevoice: scenario {path}: turns[0].tool_calls[0].name: String should have at least 1 character"
    )


def test_bad_fault_option_is_a_usage_error(capsys):
    assert main(["emulator", "--fault", "explode@now"]) == 2
    assert "bad fault 'explode@now': unknown kind 'explode'" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_cli_serves_until_sigterm(tmp_path):
    scenario_path = tmp_path / "scenario.json"
    scenario_path.write_text(
        json.dumps({"voice": "tone", "pace": "fast", "default": {"reply": "from the command"}})
    )
    ca_path = tmp_path / "ca.pem"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgevoice",
        "emulator",
        "--scenario",
        str(scenario_path),
        "--ca-out",
        str(ca_path),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            url_line = (await process.stdout.readline()).decode().strip()
            ca_line = (await process.stdout.readline()).decode().strip()
            assert url_line.startswith("url=https://127.0.0.1:")
            assert ca_line == f"ca={ca_path}"
            context = ssl.create_default_context(cafile=str(ca_path))
            client = genai.Client(
                api_key=TEST_KEY,
                http_options=types.HttpOptions(
                    base_url=url_line.removeprefix("url="), async_client_args={"ssl": context}
                ),
            )
            async with client.aio.live.connect(model=MODEL, config=live_config()) as session:
                await speak(session)
                reply = audio_of(await receive_turn(session))
            assert reply == ToneVoice().render("from the command")
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.asyncio
async def test_cli_goaway_without_a_trigger_reaches_a_text_only_session(tmp_path):
    ca_path = tmp_path / "ca.pem"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgevoice", "emulator", "--fault", "goaway:1",
        "--ca-out", str(ca_path), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            url = (await process.stdout.readline()).decode().strip().removeprefix("url=")
            await process.stdout.readline()
            client = genai.Client(api_key=TEST_KEY, http_options=types.HttpOptions(
                base_url=url, async_client_args={
                    "ssl": ssl.create_default_context(cafile=str(ca_path))}))
            config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
            messages = []
            with pytest.raises(errors.APIError) as closed:
                async with client.aio.live.connect(model=MODEL, config=config) as session:
                    await session.send_client_content(
                        turns=types.Content(role="user", parts=[types.Part(text="hi")]))
                    while True:
                        async for message in session.receive():
                            messages.append(message)
            go_away = [m.go_away.time_left for m in messages if m.go_away]
            assert go_away == ["1s"]
            assert any(m.usage_metadata and m.usage_metadata.prompt_token_count for m in messages)
            assert closed.value.code == 1011
            assert "Deadline expired before operation could complete." in str(closed.value)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

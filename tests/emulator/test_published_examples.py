"""Google's published Python examples for the Live API, run against the emulator.

The examples in ``published_examples/`` are the code of Google's guides (``/work/shared/
seeds``: the Live API capabilities, tool use and session management guides and the Live
API skill), indentation restored; fragments the guides give without a session are set in
the guide's own text example, as each file's header says. Each runs unchanged except:

- the address and the certificate, given the way any user would: the SDK's
  ``GOOGLE_GEMINI_BASE_URL`` and ``SSL_CERT_FILE`` environment variables;
- the model id: every example names ``gemini-2.0-flash-live-001``, a model Google has
  retired, which the service (and the emulator) refuses with 1008 "not found" — the first
  test shows it. It becomes a served id: 2.5 native audio where the example asks for TEXT
  (3.8 answers in audio only), 3.8 otherwise;
- where the published code is itself broken, the smallest repair, named in REPAIRS; each
  broken example is also run as published and fails as the test says.

Each test asserts what the guide says the example gives.
"""

from __future__ import annotations

import asyncio
import runpy
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.genai import errors

from edgevoice_testbed.emulator import EmulatorThread, Scenario

EXAMPLES = Path(__file__).parent / "published_examples"
RETIRED = 'model = "gemini-2.0-flash-live-001"'
TEXT_MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"
AUDIO_MODEL = "gemini-3.8-live"
GREETING = "Hello! How can I help?"  # the default scenario's answer to anything else
# The published code's own bugs, and the smallest repair of each.
REPAIRS = {
    # NameError: the loop variable is ``chunk``; ``tool_call`` is never defined.
    "function_calling": [("for fc in tool_call.function_calls:",
                          "for fc in chunk.tool_call.function_calls:")],
    "function_calling_non_blocking": [("for fc in tool_call.function_calls:",
                                       "for fc in chunk.tool_call.function_calls:")],
    # AttributeError: a goAway message has no server_content; the generationComplete
    # fragment reads it from every message.
    "goaway_and_generation_complete": [
        ("if response.server_content.generation_complete is True:",
         "if response.server_content and response.server_content.generation_complete is True:")],
    # 404 NOT_FOUND: auth tokens exist in v1alpha only and the client asks v1beta (Google's
    # ephemeral token guide creates the client with api_version v1alpha).
    "ephemeral_token": [
        ('client = genai.Client(api_key="GEMINI_API_KEY")',
         'client = genai.Client(api_key="GEMINI_API_KEY", '
         'http_options={"api_version": "v1alpha"})'),
        ("client = genai.Client(api_key=sys.argv[2])",
         'client = genai.Client(api_key=sys.argv[2], http_options={"api_version": "v1alpha"})')],
}


def default_scenario(**changes: Any) -> Scenario:
    """The packaged default scenario, fast and exact (tone voice, no pacing)."""
    data = Scenario.default().model_dump(by_alias=True, exclude_defaults=True)
    return Scenario.model_validate({**data, "voice": "tone", "pace": "fast", **changes})


@pytest.fixture
def emulator(tmp_path, monkeypatch, request):
    changes = getattr(request, "param", {})
    with EmulatorThread(default_scenario(**changes)) as emu:
        ca = emu.write_ca(tmp_path / "ca.pem")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emu.base_url)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        monkeypatch.chdir(tmp_path)
        yield emu


def source(name: str, *, model: str | None, repaired: bool = True) -> str:
    text = (EXAMPLES / f"{name}.py").read_text(encoding="utf-8")
    if model is not None:
        assert text.count(RETIRED) == 1
        text = text.replace(RETIRED, f'model = "{model}"')
    for old, new in REPAIRS.get(name, []) if repaired else []:
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


def run_example(name: str, *, model: str | None, repaired: bool = True,
                argv: list[str] | None = None, run_name: str = "__main__") -> dict[str, Any]:
    path = Path.cwd() / f"{name}.py"
    path.write_text(source(name, model=model, repaired=repaired), encoding="utf-8")
    old_argv = sys.argv
    sys.argv = [str(path), *(argv or [])]
    try:
        return runpy.run_path(str(path), run_name=run_name)
    finally:
        sys.argv = old_argv


def write_question(name: str) -> None:
    """A spoken question as the guides' sample files hold it: 16 kHz S16_LE mono PCM,
    speech then the silence that ends it."""
    rate = 16000
    t = np.arange(int(rate * 1.0)) / rate
    speech = (np.sin(2 * np.pi * 220 * t) * 0.3 * 32767).astype("<i2")
    silence = np.zeros(int(rate * 1.5), dtype="<i2")
    Path(name).write_bytes(np.concatenate([silence[:3200], speech, silence]).tobytes())


def test_the_examples_as_published_name_a_retired_model(emulator):
    with pytest.raises(errors.APIError) as closed:
        run_example("text", model=None)
    assert closed.value.code == 1008
    assert "models/gemini-2.0-flash-live-001 is not found" in str(closed.value)


def test_text(emulator, capsys):
    run_example("text", model=TEXT_MODEL)
    assert capsys.readouterr().out == GREETING


def test_text_to_audio_writes_the_spoken_answer(emulator):
    run_example("text_to_audio", model=AUDIO_MODEL)
    with wave.open("audio.wav", "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (24000, 1)
        frames = wav.readframes(wav.getnframes())
    assert frames == emulator.replies[0].audio and len(frames) > 24000


def test_audio_with_automatic_activity_detection_is_answered(emulator, capsys):
    write_question("sample.pcm")
    run_example("automatic_vad", model=TEXT_MODEL)
    assert capsys.readouterr().out.replace("\n", "") == GREETING
    assert emulator.utterances[0].complete


def test_audio_with_manual_activity_detection_is_answered(emulator, capsys):
    write_question("sample.pcm")
    run_example("manual_vad", model=TEXT_MODEL)
    assert capsys.readouterr().out.replace("\n", "") == GREETING


def test_input_transcription(emulator, capsys):
    write_question("16000.pcm")
    run_example("input_transcription", model=TEXT_MODEL)
    assert capsys.readouterr().out == "Transcript: Hello?\n"


def test_output_transcription(emulator, capsys):
    run_example("output_transcription", model=AUDIO_MODEL)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Model turn:") for line in lines)
    transcript = "".join(line.removeprefix("Transcript: ") for line in lines
                         if line.startswith("Transcript:"))
    assert transcript == GREETING


def test_function_calling_as_published_fails_with_a_name_error(emulator):
    with pytest.raises(NameError, match="tool_call"):
        run_example("function_calling", model=TEXT_MODEL, repaired=False)


def test_function_calling_from_a_text_prompt(emulator, capsys):
    run_example("function_calling", model=TEXT_MODEL)
    assert [call.name for call in emulator.tool_calls] == ["turn_on_the_lights"]
    assert emulator.tool_responses[0].known and emulator.tool_responses[0].response == {
        "result": "ok"}
    # The call is synchronous (no behavior): the answer came after the function's result.
    assert capsys.readouterr().out.replace("\n", "") == "Okay, turning on the lights."
    first_words = next(frame.t for frame in emulator.sent if frame.message
                       and "modelTurn" in frame.message.get("serverContent", {}))
    assert first_words >= emulator.tool_responses[0].t


def test_non_blocking_function_calling_with_scheduling(emulator, capsys):
    run_example("function_calling_non_blocking", model=TEXT_MODEL)
    emulator.wait_for(lambda emu: any(r.text == "The lights are on." for r in emu.replies))
    response = emulator.tool_responses[0]
    assert (emulator.tool_calls[0].name, response.scheduling) == ("turn_on_the_lights",
                                                                   "INTERRUPT")
    assert "Okay, turning on the lights." in capsys.readouterr().out.replace("\n", "")


def test_session_resumption(emulator, capsys):
    namespace = run_example("session_resumption", model=AUDIO_MODEL, run_name="example")
    # The published main() reads a global it never defines: the caller gives it.
    namespace["main"].__globals__["previous_session_handle"] = None
    handle = asyncio.run(namespace["main"]())
    assert handle and handle.startswith("emu-")
    namespace["main"].__globals__["previous_session_handle"] = handle
    assert asyncio.run(namespace["main"]())
    first, resumed = emulator.connections[:2]
    assert resumed.resumed_handle == handle and resumed.session_id == first.session_id
    assert capsys.readouterr().out.startswith("Connecting to the service with handle None...")


@pytest.mark.parametrize("emulator", [{"faults": ["goaway:1"],
                                       "default": {"reply": GREETING, "reply_delay_ms": 1500}}],
                         indirect=True)
def test_goaway_as_published_with_generation_complete_fails_on_the_goaway(emulator, capsys):
    with pytest.raises(AttributeError, match="generation_complete"):
        run_example("goaway_and_generation_complete", model=TEXT_MODEL, repaired=False)
    assert capsys.readouterr().out == "1s\n"


@pytest.mark.parametrize("emulator", [{"faults": ["goaway:1"],
                                       "default": {"reply": GREETING, "reply_delay_ms": 1500}}],
                         indirect=True)
def test_goaway_and_generation_complete(emulator, capsys):
    run_example("goaway_and_generation_complete", model=TEXT_MODEL)
    assert capsys.readouterr().out == "1s\ngeneration complete\n"


def test_ephemeral_token_as_published_is_refused_outside_v1alpha(emulator, monkeypatch):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.rest_base_url)
    with pytest.raises(errors.ClientError) as refused:
        run_example("ephemeral_token", model=None, argv=["mint"], repaired=False)
    assert refused.value.code == 404


def test_ephemeral_token(emulator, monkeypatch, capsys):
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.rest_base_url)
    run_example("ephemeral_token", model=None, argv=["mint"])
    token = capsys.readouterr().out.strip()
    assert token.startswith("auth_tokens/")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", emulator.base_url)
    run_example("ephemeral_token", model=TEXT_MODEL, argv=["use", token])
    assert capsys.readouterr().out == GREETING
    assert emulator.connections[-1].auth_scheme is not None

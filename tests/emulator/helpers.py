"""Shared helpers for the emulator tests: scenarios, a real SDK client, speaking, receiving."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from google import genai
from google.genai import types

from edgevoice_testbed.emulator import Scenario

TEST_KEY = "test-api-key-not-secret"
MODEL = "gemini-2.5-flash-native-audio-preview-12-2025"  # a model Google serves (2.5)
FRAME = bytes(range(256)) * 2 + bytes(128)  # 640 bytes = 20 ms of 16 kHz S16_LE
IN_MIME = "audio/pcm;rate=16000"
STEP_TIMEOUT = 10.0

SET_LIGHT = types.FunctionDeclaration(
    name="set_light",
    description="Switch a light.",
    behavior=types.Behavior.NON_BLOCKING,
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={
            "entity": types.Schema(type=types.Type.STRING),
            "on": types.Schema(type=types.Type.BOOLEAN),
        },
        required=["entity", "on"],
    ),
)


def scenario(**fields: Any) -> Scenario:
    """A fast, exact scenario (tone voice, no pacing) with the given fields."""
    data: dict[str, Any] = {"voice": "tone", "pace": "fast"}
    data.update(fields)
    return Scenario.model_validate(data)


def client_for(emu: Any, api_key: str = TEST_KEY, api_version: str | None = None) -> genai.Client:
    return genai.Client(
        api_key=api_key,
        http_options=types.HttpOptions(
            base_url=emu.base_url,
            api_version=api_version,
            async_client_args={"ssl": emu.client_ssl_context()},
        ),
    )


def live_config(
    handle: str | None = None, resumption: bool = True, tools: bool = True
) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
        ),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle) if resumption else None,
        context_window_compression=types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow()),
        tools=[types.Tool(function_declarations=[SET_LIGHT])] if tools else None,
    )


async def speak(session: Any, frames: int = 5, end: bool = True) -> None:
    await session.send_realtime_input(activity_start=types.ActivityStart())
    for _ in range(frames):
        await session.send_realtime_input(audio=types.Blob(data=FRAME, mime_type=IN_MIME))
    if end:
        await session.send_realtime_input(activity_end=types.ActivityEnd())


async def receive_turn(
    session: Any,
    seconds: float = STEP_TIMEOUT,
) -> list[types.LiveServerMessage]:
    """Messages up to and including the next turnComplete (the SDK's receive() stops there)."""
    messages = []
    async with asyncio.timeout(seconds):
        async for message in session.receive():
            messages.append(message)
    return messages


async def receive_until(
    session: Any, predicate: Any, seconds: float = STEP_TIMEOUT
) -> list[types.LiveServerMessage]:
    """Messages until one satisfies ``predicate`` (included), across turn boundaries."""
    messages: list[types.LiveServerMessage] = []
    async with asyncio.timeout(seconds):
        while True:
            async for message in session.receive():
                messages.append(message)
                if predicate(message):
                    return messages


def audio_of(messages: list[types.LiveServerMessage]) -> bytes:
    data = b""
    for message in messages:
        content = message.server_content
        if content and content.model_turn:
            for part in content.model_turn.parts or []:
                if part.inline_data:
                    data += part.inline_data.data
    return data


def transcript_of(messages: list[types.LiveServerMessage]) -> str:
    return "".join(
        m.server_content.output_transcription.text
        for m in messages
        if m.server_content and m.server_content.output_transcription
    )


def handles_of(messages: list[types.LiveServerMessage]) -> list[str]:
    return [
        m.session_resumption_update.new_handle
        for m in messages
        if m.session_resumption_update and m.session_resumption_update.new_handle
    ]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def frame(message: dict[str, Any]) -> str:
    return json.dumps(message)

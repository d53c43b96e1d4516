"""The Live session's setup, built from the configuration.

Push-to-talk means automatic activity detection is off: the button brackets each
utterance with activityStart/activityEnd. Transcriptions are on (they are logged and kept to
brief a new session), session resumption is always on, and the sliding context window is on
by default so a long conversation is never ended by the context limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.genai import types

from edgevoice.config import LiveSettings

INPUT_MIME = "audio/pcm;rate=16000"


def build_connect_config(
    live: LiveSettings,
    *,
    handle: str | None,
    function_declarations: Sequence[types.FunctionDeclaration] = (),
) -> types.LiveConnectConfig:
    speech = types.SpeechConfig(
        voice_config=types.VoiceConfig(
            prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=live.voice)
        ),
        language_code=live.language,
    )
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=speech,
        system_instruction=types.Content(parts=[types.Part(text=live.system_instruction)]),
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=True),
        ),
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle),
    )
    if live.context_window_compression:
        config.context_window_compression = types.ContextWindowCompressionConfig(
            sliding_window=types.SlidingWindow()
        )
    if function_declarations:
        config.tools = [types.Tool(function_declarations=list(function_declarations))]
    return config


def model_name(live: LiveSettings) -> str:
    return live.model if live.model.startswith("models/") else f"models/{live.model}"

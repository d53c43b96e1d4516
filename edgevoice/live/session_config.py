"""The Live session's setup, built from the configuration and the model's family.

Push-to-talk means automatic activity detection is off: the button brackets each
utterance with activityStart/activityEnd. Transcriptions are on (they are logged and kept to
brief a new session), session resumption is always on, and the sliding context window is on
by default so a long conversation is never ended by the context limit.

The setup is plain data in the SDK's ``LiveConnectConfig`` field names; the SDK door
(:mod:`edgevoice.live.sdk`) turns it into the SDK's types. What a family refuses is left
out (sending it closes the connection) and said in ``dropped``, for the journal and for
``check-config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgevoice.config import LiveSettings
from edgevoice.core.families import FamilyMatch, ModelFamily, family_for


@dataclass(frozen=True)
class SessionSetup:
    config: dict[str, Any]
    family: ModelFamily
    exact_family: bool  # False: the model id is unknown and its family was guessed
    dropped: tuple[str, ...] = field(default=())  # settings left out, with why


def build_setup(
    live: LiveSettings,
    *,
    handle: str | None,
    function_declarations: Sequence[Mapping[str, Any]] = (),
) -> SessionSetup:
    match: FamilyMatch = family_for(live.model)
    family = match.family
    dropped: list[str] = []
    speech: dict[str, Any] = {"voice_config": {"prebuilt_voice_config": {"voice_name": live.voice}}}
    if live.language is not None:
        speech["language_code"] = live.language
    config: dict[str, Any] = {
        "response_modalities": ["AUDIO"],
        "speech_config": speech,
        "system_instruction": {"parts": [{"text": live.system_instruction}]},
        "realtime_input_config": {"automatic_activity_detection": {"disabled": True}},
        "input_audio_transcription": {},
        "output_audio_transcription": {},
        "session_resumption": {"handle": handle},
    }
    if live.context_window_compression:
        config["context_window_compression"] = {"sliding_window": {}}

    if live.thinking_budget is not None:
        if family.refuses_thinking_config:
            dropped.append(f"live.thinking_budget (the {family.name} family takes no thinking config)")
        else:
            config["thinking_config"] = {"thinking_budget": live.thinking_budget}
    if live.proactive_audio is not None:
        if family.refuses_proactive_audio_off:
            # Always on in this family, and saying "off" is an error.
            dropped.append(f"live.proactive_audio (always on in the {family.name} family)")
        else:
            config["proactivity"] = {"proactive_audio": live.proactive_audio}
    if live.affective_dialog is not None:
        if family.refuses_affective_dialog:
            dropped.append(f"live.affective_dialog (not offered by the {family.name} family)")
        else:
            config["enable_affective_dialog"] = live.affective_dialog

    if function_declarations:
        config["tools"] = [{"function_declarations": declarations_for(family, function_declarations)}]
    return SessionSetup(config, family, match.exact, tuple(dropped))


def declarations_for(
    family: ModelFamily, declarations: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The declarations with the behaviour the family runs: NON_BLOCKING where it can,
    plain (synchronous) where the family knows nothing else."""
    behavior = None if family.synchronous_functions_only else "NON_BLOCKING"
    result = []
    for declaration in declarations:
        entry = {k: v for k, v in declaration.items() if k != "behavior"}
        if behavior is not None:
            entry["behavior"] = behavior
        result.append(entry)
    return result


def model_notes(live: LiveSettings) -> list[str]:
    """What ``check-config`` says about the model: its family (assumed, for an unknown id)
    and the settings that family will not be sent."""
    setup = build_setup(live, handle=None)
    name = live.model.removeprefix("models/")
    if setup.exact_family:
        notes = [f"live.model {name}: the {setup.family.name} family"]
    else:
        notes = [
            f"live.model {name} is not a model EdgeVoice knows: assuming the "
            f"{setup.family.name} family (nearest by its name)"
        ]
    notes.extend(f"not sent to this model: {what}" for what in setup.dropped)
    return notes

"""The setup frame checked as the real service checks it, and the model family it names.

The field tree is the ``BidiGenerateContentSetup`` message of the Gemini API (what
google-genai can send, after :func:`wire.normalise` made every key camelCase). A field the
tree does not know closes the connection with 1007 naming it, in the words Google's JSON
parser uses; a model id Google does not serve closes with 1008 "not found"; a field the
model's family refuses closes with 1007. Families come from ``edgevoice.core.families``,
the same table the device reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgevoice.core.families import GEMINI_3_1, GEMINI_3_8, KNOWN_MODELS, ModelFamily

REASON_INVALID_ARGUMENT = "Request contains an invalid argument."

# Each known field: None (a leaf, any value) or the tree of its own fields. A list value
# holds objects of that tree. Names are camelCase, as :func:`wire.normalise` leaves them.
_SCHEMA_LEAF = None
_TRANSCRIPTION: dict[str, Any] = {"languageCodes": None, "customVocabulary": None}
_AUTOMATIC_ACTIVITY_DETECTION: dict[str, Any] = {
    "disabled": None, "startOfSpeechSensitivity": None, "endOfSpeechSensitivity": None,
    "prefixPaddingMs": None, "silenceDurationMs": None,
}
SETUP_FIELDS: dict[str, Any] = {
    "model": None,
    "generationConfig": {
        "candidateCount": None, "maxOutputTokens": None, "temperature": None, "topP": None,
        "topK": None, "presencePenalty": None, "frequencyPenalty": None, "seed": None,
        "responseModalities": None, "speechConfig": None, "mediaResolution": None,
        "thinkingConfig": None, "enableAffectiveDialog": None, "translationConfig": None,
        "stopSequences": None, "responseLogprobs": None, "logprobs": None,
    },
    "systemInstruction": None,
    "tools": None,
    "realtimeInputConfig": {
        "automaticActivityDetection": _AUTOMATIC_ACTIVITY_DETECTION,
        "activityHandling": None, "turnCoverage": None,
    },
    "sessionResumption": {"handle": None, "transparent": None},
    "contextWindowCompression": {"triggerTokens": None, "slidingWindow": {"targetTokens": None}},
    "inputAudioTranscription": _TRANSCRIPTION,
    "outputAudioTranscription": _TRANSCRIPTION,
    "proactivity": {"proactiveAudio": None},
    "explicitVadSignal": None,
    "historyConfig": None,
    "avatarConfig": None,
    "safetySettings": None,
}


@dataclass(frozen=True)
class SetupRefusal:
    """Why the service would refuse this setup: the close code and reason."""

    code: int
    reason: str


def _snake(name: str) -> str:
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)


def unknown_field(setup: Mapping[str, Any]) -> SetupRefusal | None:
    """The first field the setup message does not have, as Google's parser words it."""
    return _unknown_in(setup, SETUP_FIELDS, "setup")


def _unknown_in(value: Any, tree: Mapping[str, Any], path: str) -> SetupRefusal | None:
    if not isinstance(value, Mapping):
        return None
    for name, item in value.items():
        if name not in tree:
            return SetupRefusal(
                1007, f'Invalid JSON payload received. Unknown name "{name}" at '
                      f"'{path}': Cannot find field.")
        subtree = tree[name]
        if subtree is not None:
            found = _unknown_in(item, subtree, f"{path}.{_snake(name)}")
            if found is not None:
                return found
    return None


def model_family(model: str, extra_models: Mapping[str, str]) -> ModelFamily | None:
    """The family of a model id Google serves (or the scenario adds); None: not served."""
    name = model.removeprefix("models/")
    if name in KNOWN_MODELS:
        return KNOWN_MODELS[name]
    family_name = extra_models.get(name)
    if family_name is None:
        return None
    return next(family for family in KNOWN_MODELS.values() if family.name == family_name)


def family_names() -> list[str]:
    return sorted({family.name for family in KNOWN_MODELS.values()})


def model_not_found(model: str, api_version: str | None) -> SetupRefusal:
    name = model if model.startswith("models/") else f"models/{model}"
    return SetupRefusal(
        1008, f"{name} is not found for API version {api_version or 'v1beta'}, or is not "
              "supported for bidiGenerateContent")


def family_refusal(setup: Mapping[str, Any], family: ModelFamily, model: str) -> SetupRefusal | None:
    """A field this family refuses (the 3.8 migration guide's list), or None."""
    generation = setup.get("generationConfig") or {}
    name = model.removeprefix("models/")

    def refuse(field_name: str) -> SetupRefusal:
        return SetupRefusal(1007, f"{REASON_INVALID_ARGUMENT} {field_name} is not supported "
                                  f"by models/{name}.")

    if family.refuses_thinking_config and isinstance(generation, Mapping) \
            and "thinkingConfig" in generation:
        return refuse("generation_config.thinking_config")
    if family.refuses_affective_dialog and isinstance(generation, Mapping) \
            and "enableAffectiveDialog" in generation:
        return refuse("generation_config.enable_affective_dialog")
    proactivity = setup.get("proactivity")
    if family.refuses_proactive_audio_off and isinstance(proactivity, Mapping) \
            and proactivity.get("proactiveAudio") is False:
        return refuse("proactivity.proactive_audio=false")
    if family is GEMINI_3_8 and isinstance(generation, Mapping):
        modalities = [str(m).upper() for m in generation.get("responseModalities") or []]
        if "TEXT" in modalities:
            # 3.8 answers in audio only; text comes through output transcription.
            return refuse("response_modalities TEXT")
    return None


def sends_transparent_index(family: ModelFamily) -> bool:
    """3.1 leaves lastConsumedClientMessageIndex out even when asked for it."""
    return family is not GEMINI_3_1

"""Gemini Live model families as data: what each accepts and how it behaves.

The setup builder (what may be sent) and the conversation (what may be done mid-session)
both read this table; nothing else looks at a model id's spelling. The facts come from
Google's model pages and migration guides and from what the real service has been seen to
do (collected, with sources, in the project's reference notes on Live models).

An id that names no known family is matched to the nearest family by its name (the
``gemini-<major>.<minor>`` prefix, then its flavour); :func:`family_for` says whether it
had to guess, so ``check-config`` can tell the user which family it assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class FunctionCalling(Enum):
    """How the family runs declared functions."""

    NON_BLOCKING = "non_blocking"  # the conversation goes on while a call runs
    SYNCHRONOUS_ONLY = "synchronous_only"  # no realtime input until the response is sent


class InterruptTiming(Enum):
    """What ``scheduling=INTERRUPT`` does while the user is speaking."""

    AT_ONCE = "at_once"  # speaks over the user straight away
    AFTER_USER = "after_user"  # waits until the user has finished


@dataclass(frozen=True)
class ModelFamily:
    name: str
    function_calling: FunctionCalling
    # May client_content (context, late tool results as text) be sent after the first model turn?
    client_content_mid_session: bool
    interrupt_timing: InterruptTiming
    # Setup fields this family refuses (sending them closes the connection).
    refuses_thinking_config: bool
    refuses_proactive_audio_off: bool
    refuses_affective_dialog: bool
    sends_usage_metadata: bool

    @property
    def synchronous_functions_only(self) -> bool:
        return self.function_calling is FunctionCalling.SYNCHRONOUS_ONLY


GEMINI_3_8 = ModelFamily(
    name="gemini-3.8-live",
    function_calling=FunctionCalling.NON_BLOCKING,
    client_content_mid_session=True,
    interrupt_timing=InterruptTiming.AFTER_USER,
    refuses_thinking_config=True,
    refuses_proactive_audio_off=True,
    refuses_affective_dialog=True,
    sends_usage_metadata=True,
)
GEMINI_3_1 = ModelFamily(
    name="gemini-3.1-flash-live",
    function_calling=FunctionCalling.SYNCHRONOUS_ONLY,
    client_content_mid_session=False,
    interrupt_timing=InterruptTiming.AT_ONCE,
    refuses_thinking_config=False,
    refuses_proactive_audio_off=False,
    refuses_affective_dialog=False,
    sends_usage_metadata=False,
)
GEMINI_2_5 = ModelFamily(
    name="gemini-2.5-flash-native-audio",
    function_calling=FunctionCalling.NON_BLOCKING,
    client_content_mid_session=True,
    interrupt_timing=InterruptTiming.AT_ONCE,
    refuses_thinking_config=False,
    refuses_proactive_audio_off=False,
    refuses_affective_dialog=False,
    sends_usage_metadata=True,
)

FAMILIES = (GEMINI_3_8, GEMINI_3_1, GEMINI_2_5)
DEFAULT_MODEL = "gemini-3.8-live"

# Known ids, exactly as Google names them (Vertex's GA name for 2.5 included).
KNOWN_MODELS: dict[str, ModelFamily] = {
    "gemini-3.8-live": GEMINI_3_8,
    "gemini-3.8-live-extended-thinking": GEMINI_3_8,
    "gemini-3.1-flash-live-preview": GEMINI_3_1,
    "gemini-2.5-flash-native-audio-preview-09-2025": GEMINI_2_5,
    "gemini-2.5-flash-native-audio-preview-12-2025": GEMINI_2_5,
    "gemini-2.5-flash-native-audio-latest": GEMINI_2_5,
    "gemini-live-2.5-flash-native-audio": GEMINI_2_5,
}


@dataclass(frozen=True)
class FamilyMatch:
    family: ModelFamily
    exact: bool  # False: the id is unknown and the family was guessed from its name


def family_for(model: str) -> FamilyMatch:
    """The family of a model id (``models/`` prefix allowed); unknown ids get the nearest."""
    name = model.removeprefix("models/")
    if name in KNOWN_MODELS:
        return FamilyMatch(KNOWN_MODELS[name], exact=True)
    version = re.search(r"(\d+)\.(\d+)", name)
    if version is None:
        return FamilyMatch(GEMINI_3_8, exact=False)
    major_minor = (int(version.group(1)), int(version.group(2)))
    if major_minor >= (3, 5):
        return FamilyMatch(GEMINI_3_8, exact=False)
    if major_minor >= (3, 0):
        return FamilyMatch(GEMINI_3_1, exact=False)
    return FamilyMatch(GEMINI_2_5, exact=False)

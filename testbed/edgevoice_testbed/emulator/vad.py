"""Automatic activity detection: where speech starts and ends in a stream of PCM.

The Live API detects activity itself unless the setup disables it
(``realtimeInputConfig.automaticActivityDetection.disabled``). Its detector is not
published; this one is energy-based and honours the four documented settings:

- ``startOfSpeechSensitivity`` HIGH (the default) takes quieter sound as speech than LOW;
- ``prefixPaddingMs``: speech must last this long before start-of-speech is committed;
- ``endOfSpeechSensitivity`` HIGH (the default) ends speech more readily than LOW (a
  louder floor counts as silence);
- ``silenceDurationMs``: non-speech must last this long before end-of-speech.

Google documents no numbers for the defaults; :data:`DEFAULTS` says which ones are used.
Sans I/O: feed PCM, get events with their position in the stream (seconds of audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

WINDOW_S = 0.01  # 10 ms analysis windows
START_THRESHOLD_DBFS = {"START_SENSITIVITY_HIGH": -45.0, "START_SENSITIVITY_LOW": -30.0}
END_THRESHOLD_DBFS = {"END_SENSITIVITY_HIGH": -40.0, "END_SENSITIVITY_LOW": -50.0}


@dataclass(frozen=True)
class VadSettings:
    start_sensitivity: str = "START_SENSITIVITY_HIGH"
    end_sensitivity: str = "END_SENSITIVITY_HIGH"
    prefix_padding_ms: float = 20.0
    silence_duration_ms: float = 800.0

    @classmethod
    def from_setup(cls, detection: dict[str, Any]) -> VadSettings:
        """Settings from ``automaticActivityDetection``; unset or unknown values keep the
        defaults (the enum's UNSPECIFIED means the default too)."""
        start = str(detection.get("startOfSpeechSensitivity") or "")
        end = str(detection.get("endOfSpeechSensitivity") or "")
        return cls(
            start_sensitivity=start if start in START_THRESHOLD_DBFS else cls.start_sensitivity,
            end_sensitivity=end if end in END_THRESHOLD_DBFS else cls.end_sensitivity,
            prefix_padding_ms=_non_negative(detection.get("prefixPaddingMs"),
                                            cls.prefix_padding_ms),
            silence_duration_ms=_non_negative(detection.get("silenceDurationMs"),
                                              cls.silence_duration_ms),
        )


DEFAULTS = VadSettings()


def _non_negative(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) and number >= 0 else default


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" | "end"
    at_s: float
    """Position in the stream (seconds of audio fed so far) where it was committed."""


class EnergyVad:
    """Start/end of speech in 16-bit mono PCM, window by window."""

    def __init__(self, settings: VadSettings = DEFAULTS):
        self.settings = settings
        self.speaking = False
        self._position_s = 0.0
        self._run_s = 0.0  # speech (when silent) or silence (when speaking) so far
        self._carry = b""
        self._rate: int | None = None

    @property
    def position_s(self) -> float:
        """Seconds of audio analysed so far."""
        return self._position_s

    def feed(self, pcm: bytes, rate: int) -> list[VadEvent]:
        if rate != self._rate:
            self._carry, self._rate = b"", rate
        data = self._carry + pcm
        window_bytes = max(2, int(rate * WINDOW_S) * 2)
        whole = len(data) - len(data) % window_bytes
        self._carry = data[whole:]
        if not whole:
            return []
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64)
        windows = samples.reshape(-1, window_bytes // 2)
        rms = np.sqrt(np.mean(windows * windows, axis=1))
        levels = 20.0 * np.log10(np.maximum(rms, 1e-9) / 32768.0)
        seconds = window_bytes / 2 / rate
        events = []
        start_at = START_THRESHOLD_DBFS[self.settings.start_sensitivity]
        end_at = END_THRESHOLD_DBFS[self.settings.end_sensitivity]
        for level in levels:
            self._position_s += seconds
            if not self.speaking:
                self._run_s = self._run_s + seconds if level >= start_at else 0.0
                if self._run_s > 0 and self._run_s * 1000.0 >= max(
                        self.settings.prefix_padding_ms, seconds * 1000.0):
                    self.speaking, self._run_s = True, 0.0
                    events.append(VadEvent("start", self._position_s))
            else:
                self._run_s = self._run_s + seconds if level < end_at else 0.0
                if self._run_s * 1000.0 >= self.settings.silence_duration_ms:
                    self.speaking, self._run_s = False, 0.0
                    events.append(VadEvent("end", self._position_s))
        return events

    def flush(self) -> VadEvent | None:
        """``audioStreamEnd``: speech in progress ends now."""
        self._carry = b""
        if not self.speaking:
            self._run_s = 0.0
            return None
        self.speaking, self._run_s = False, 0.0
        return VadEvent("end", self._position_s)

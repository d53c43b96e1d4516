"""asoundrc for the simulated sound card (interim; the audio branch adds fussy devices)."""

from __future__ import annotations

from pathlib import Path


def asoundrc_for(
    mic_raw: Path,
    speaker_raw: Path,
    *,
    capture_rate: int | None = None,
    capture_channels: int | None = None,
    playback_rate: int | None = None,
    playback_channels: int | None = None,
) -> str:
    return f"""
pcm.edgevoice_mic {{
  type file
  slave.pcm "null"
  file "/dev/null"
  infile "{mic_raw}"
  format "raw"
}}
pcm.edgevoice_speaker {{
  type file
  slave.pcm "null"
  file "{speaker_raw}"
  format "raw"
}}
"""

"""How much memory the emulator holds after many turns and resumption handles.

``python -m edgevoice_testbed.emulator.memory_probe --turns 4000`` drives the sans-IO
protocol engine (no sockets, a silent voice) through a long resumed conversation, one
utterance per turn and a reconnect that resumes the newest handle every few turns (as a
long soak does), and prints the Python heap (tracemalloc) and the process RSS at each
quarter. The figure to watch is growth per turn: it must stay flat, not grow with the
number of handles issued so far.
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import tracemalloc
from typing import Any

from edgevoice_testbed.emulator.protocol import EmulatorCore, SendFrame
from edgevoice_testbed.emulator.scenario import Scenario

PATH = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
MODEL = "models/gemini-3.8-live"
FRAME = base64.b64encode(bytes(640)).decode("ascii")


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(handle: str | None) -> str:
    return json.dumps({"setup": {
        "model": MODEL,
        "generationConfig": {"responseModalities": ["AUDIO"]},
        "realtimeInputConfig": {"automaticActivityDetection": {"disabled": True}},
        "inputAudioTranscription": {},
        "outputAudioTranscription": {},
        "sessionResumption": {"handle": handle} if handle else {},
        "tools": [{"functionDeclarations": [{"name": "set_light", "behavior": "NON_BLOCKING"}]}],
    }})


def run(turns: int, turns_per_connection: int, frames: int, top: int = 0) -> list[dict[str, Any]]:
    scenario = Scenario.model_validate({
        "voice": "tone", "pace": "fast",
        "default": {"input_transcript": "a question", "reply": "an answer of a few words"}})
    reply_pcm = bytes(4800)  # the server's voice caches each text's render, as here
    core = EmulatorCore(scenario, lambda text: reply_pcm, record_audio_frames=False)
    now = 0.0
    handle: str | None = None
    samples: list[dict[str, Any]] = []
    checkpoints = {max(1, turns * q // 4) for q in range(1, 5)}
    tracemalloc.start()
    connection = None
    for turn in range(1, turns + 1):
        if connection is None or (turn - 1) % turns_per_connection == 0:
            if connection is not None:
                connection.connection_lost(now, 1000, "", "client")
            connection = core.open_connection(PATH, {"x-goog-api-key": "probe"}, now)
            connection.receive(_setup(handle), now)
        connection.receive('{"realtime_input": {"activityStart": {}}}', now)
        for _ in range(frames):
            connection.receive(json.dumps({"realtime_input": {"audio": {
                "data": FRAME, "mime_type": "audio/pcm;rate=16000"}}}), now)
        connection.receive('{"realtime_input": {"activityEnd": {}}}', now)
        while True:
            for action in connection.poll(now):
                if isinstance(action, SendFrame):
                    update = action.message.get("sessionResumptionUpdate") or {}
                    if update.get("newHandle"):
                        handle = update["newHandle"]
            deadline = connection.next_deadline()
            if deadline is None:
                break
            now = max(now, deadline)
        now += 1.0
        if turn in checkpoints:
            current, peak = tracemalloc.get_traced_memory()
            samples.append({"turns": turn, "handles_issued": _handles_issued(core),
                            "handles_kept": len(core._handles),
                            "heap_mb": round(current / 2**20, 1),
                            "heap_peak_mb": round(peak / 2**20, 1),
                            "rss_mb": round(_rss_mb(), 1)})
    if top:
        for stat in tracemalloc.take_snapshot().statistics("lineno")[:top]:
            print(f"# {stat.size / 2**20:.1f} MB in {stat.count} blocks at {stat.traceback}")
    tracemalloc.stop()
    return samples


def _handles_issued(core: EmulatorCore) -> int:
    return sum(1 for frame in core.sent if frame.message
               and (frame.message.get("sessionResumptionUpdate") or {}).get("newHandle"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=4000)
    parser.add_argument("--turns-per-connection", type=int, default=5)
    parser.add_argument("--frames", type=int, default=10, help="audio frames per utterance")
    parser.add_argument("--top", type=int, default=0, help="print the N biggest allocation sites")
    args = parser.parse_args(argv)
    for sample in run(args.turns, args.turns_per_connection, args.frames, args.top):
        print(json.dumps(sample), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The emulator in a process of its own, for tests that measure the daemon's memory.

The emulator records every utterance and reply and keeps a snapshot per resumption handle;
in the test's own process that would hide (or fake) a leak of the daemon. Here it runs in
a child process; the test injects faults and reads counts through a pipe.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import ssl
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


def _serve(scenario: dict[str, Any], ca_path: str, channel: Connection) -> None:
    from edgevoice_testbed.emulator import EmulatorThread, Scenario

    with EmulatorThread(scenario=Scenario.model_validate(scenario), record_audio_frames=False) as emulator:
        emulator.write_ca(ca_path)
        channel.send(emulator.base_url)
        while True:
            command, argument = channel.recv()
            if command == "stop":
                channel.send(None)
                return
            if command == "inject_when_open":
                # Only into an open connection: a fault with none open would wait for the
                # next one, or (a refusal) strike no connection at all. False if none
                # opened within the timeout.
                kind, timeout = argument
                try:
                    emulator.wait_for(_has_open_connection, timeout)
                except TimeoutError:
                    channel.send(False)
                    continue
                emulator.inject_fault(kind)
                channel.send(True)
            elif command == "end_refusal":
                emulator.end_refusal()
                channel.send(None)
            elif command == "hits":
                channel.send(sum(1 for r in emulator.fired_faults if r.connection_id is not None))
            elif command == "report":
                channel.send(
                    {
                        "hits": sum(1 for r in emulator.fired_faults if r.connection_id is not None),
                        "complete_audio": {u.audio for u in emulator.utterances if u.complete},
                        "errors": list(emulator.errors),
                        "connections": len(emulator.connections),
                    }
                )
            elif command == "record":
                channel.send(_record(emulator))
            elif command == "memory":
                channel.send(_rss_mb())


def _has_open_connection(emulator: Any) -> bool:
    # The newest ones set up: a newer one still opening may never be.
    return any(c.accepted and c.closed_t is None for c in reversed(emulator.connections[-8:]))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _record(emulator: Any) -> dict[str, Any]:
    """What the server heard and answered, compactly (audio as its first bytes, length and
    digest): the soak judges the daemon by it."""
    last_heard: dict[int, float] = {}
    for frame in list(emulator.received):
        last_heard[frame.connection_id] = max(frame.t, last_heard.get(frame.connection_id, frame.t))
    handles = []
    for frame in list(emulator.sent):
        update = (frame.message or {}).get("sessionResumptionUpdate") or {}
        if update.get("newHandle"):
            handles.append((frame.connection_id, frame.t, update["newHandle"]))
    return {
        "utterances": [
            {
                "connection": u.connection_id,
                "turn": u.turn,
                "start_t": u.start_t,
                "head": bytes(u._buffer[:16]),
                "length": len(u._buffer),
                "digest": hashlib.sha1(u._buffer).hexdigest(),
            }
            for u in list(emulator.utterances)
            if u.complete
        ],
        "replies": [
            {
                "connection": r.connection_id,
                "turn": r.turn,
                "kind": r.kind,
                "finished": r.finished,
                "interrupted": r.interrupted,
                "end_t": r.end_t,
            }
            for r in list(emulator.replies)
        ],
        "connections": [
            {
                "id": c.id,
                "accepted": c.accepted,
                "resumed_handle": c.resumed_handle,
                "closed_by": c.closed_by,
                "close_code": c.close_code,
                "close_reason": c.close_reason,
            }
            for c in list(emulator.connections)
        ],
        "handles": handles,
        "last_heard": last_heard,
        "faults": [(f.connection_id, f.fault) for f in list(emulator.fired_faults)],
        "refused_handshakes": len(emulator.rejected_handshakes),
        "open_never_set_up": sum(1 for c in emulator.connections if not c.accepted and c.closed_t is None),
        "handles_kept": emulator._get_core().handles_kept,
        "errors": list(emulator.errors),
        "rss_mb": _rss_mb(),
    }


# How long a command may take, waits included (inject_when_open's timeout must be less).
CALL_TIMEOUT_S = 60.0


class EmulatorProcess:
    def __init__(self, scenario: dict[str, Any]) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="ev-emu-")
        self._ca = Path(self._directory.name) / "ca.pem"
        context = multiprocessing.get_context("spawn")
        self._channel, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(scenario, str(self._ca), child), daemon=True)
        self._process.start()
        if not self._channel.poll(60):
            raise TimeoutError("the emulator process did not start")
        self.base_url: str = self._channel.recv()

    def client_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self._ca))

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate (PEM), as the in-process emulator does."""
        path = Path(path)
        path.write_bytes(self._ca.read_bytes())
        return path

    def call(self, command: str, argument: Any = None) -> Any:
        """Blocking: call it from a thread (asyncio.to_thread) inside a running loop."""
        self._channel.send((command, argument))
        if not self._channel.poll(CALL_TIMEOUT_S):
            raise TimeoutError(f"the emulator process did not answer {command!r}")
        return self._channel.recv()

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self.call("stop")
            except (OSError, EOFError, TimeoutError):
                self._process.kill()
        self._process.join(10)
        self._directory.cleanup()

"""Logging: journal fields through JournalHandler's sender hook and through the real
libsystemd journal socket protocol, stderr lines, transcripts switch, secret redaction."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgevoice.service import logging as evlog
from edgevoice.service.logging import (
    TRANSCRIPT_LOGGER,
    log_context,
    register_secret,
    set_log_fields,
    setup_logging,
    under_journald,
)

SECRET = "AIzaSyD-test-secret-0123456789abcdef"


class JournalRecorder:
    """Stands in for systemd.journal.send: same signature, keeps what would be sent."""

    def __init__(self) -> None:
        self.entries: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def __call__(self, message: str, /, **fields: object) -> None:
        with self.lock:
            self.entries.append({"MESSAGE": message, **fields})

    def messages(self) -> list[str]:
        return [str(entry["MESSAGE"]) for entry in self.entries]


@pytest.fixture(autouse=True)
def clean_logging():
    root = logging.getLogger()
    saved_level = root.level
    # setup_logging quiets the chatty libraries; later tests count their records.
    chatty_levels = {name: logging.getLogger(name).level for name in evlog.CHATTY_LOGGERS}
    evlog.clear_log_fields()
    yield
    for name, level in chatty_levels.items():
        logging.getLogger(name).setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_edgevoice", False):
            root.removeHandler(handler)
    root.setLevel(saved_level)
    logging.getLogger(TRANSCRIPT_LOGGER).setLevel(logging.NOTSET)
    evlog.clear_log_fields()
    evlog.forget_secrets()
    logging.captureWarnings(False)


@pytest.fixture
def journal():
    recorder = JournalRecorder()
    setup_logging("DEBUG", transcripts=True, environ={}, journal_sender=recorder)
    return recorder


def test_journal_entries_carry_state_session_and_turn(journal):
    log = logging.getLogger("edgevoice.core")
    set_log_fields(state="listening", session_id="sess-1")
    with log_context(turn_id=7):
        log.info("press %s", "started")
    log.warning("no turn here")
    first, second = journal.entries
    assert first["MESSAGE"] == "press started"
    assert first["SYSLOG_IDENTIFIER"] == "edgevoice"
    assert first["PRIORITY"] == "6"
    assert first["LOGGER"] == "edgevoice.core"
    assert first["EDGEVOICE_STATE"] == "listening"
    assert first["EDGEVOICE_SESSION_ID"] == "sess-1"
    assert first["EDGEVOICE_TURN_ID"] == "7"
    assert second["PRIORITY"] == "4"
    assert "EDGEVOICE_TURN_ID" not in second
    # Only valid journal field names reach the sender (no msg=, args=, levelname=...).
    for entry in journal.entries:
        assert all(key.isupper() or key[0].isdigit() for key in entry if key != "MESSAGE"), entry


def test_state_set_on_the_loop_is_seen_by_audio_threads_context_is_not(journal):
    set_log_fields(state="speaking")
    with log_context(turn_id=1):
        thread = threading.Thread(
            target=lambda: logging.getLogger("edgevoice.audio").info("xrun"), name="capture"
        )
        thread.start()
        thread.join()
    (entry,) = journal.entries
    assert entry["EDGEVOICE_STATE"] == "speaking"
    assert entry["THREAD_NAME"] == "capture"
    assert "EDGEVOICE_TURN_ID" not in entry  # context fields belong to their own context


def test_log_context_is_per_task(journal):
    log = logging.getLogger("edgevoice.tools")

    async def tool_call(turn: int, started: asyncio.Event, go_on: asyncio.Event) -> None:
        with log_context(turn_id=turn):
            started.set()
            await go_on.wait()
            log.info("tool call for turn %d", turn)

    async def main() -> None:
        events = [(asyncio.Event(), asyncio.Event()) for _ in range(2)]
        tasks = [asyncio.create_task(tool_call(i, *events[i])) for i in range(2)]
        for started, _ in events:
            await started.wait()
        for _, go_on in reversed(events):
            go_on.set()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    turns = {
        entry["MESSAGE"]: entry["EDGEVOICE_TURN_ID"]
        for entry in journal.entries
        if entry["LOGGER"] == "edgevoice.tools"
    }
    assert turns == {"tool call for turn 0": "0", "tool call for turn 1": "1"}


def test_field_names_are_checked():
    with pytest.raises(ValueError):
        set_log_fields(State="x")
    with pytest.raises(ValueError), log_context(**{"turn-id": 1}):
        pass


def test_none_clears_a_field(journal):
    set_log_fields(state="idle", session_id="s")
    set_log_fields(session_id=None)
    logging.getLogger("edgevoice").info("x")
    assert "EDGEVOICE_SESSION_ID" not in journal.entries[0]
    assert journal.entries[0]["EDGEVOICE_STATE"] == "idle"


def test_transcripts_off_silences_that_logger_alone():
    recorder = JournalRecorder()
    setup_logging("DEBUG", transcripts=False, environ={}, journal_sender=recorder)
    logging.getLogger(TRANSCRIPT_LOGGER).info("user: turn on the kitchen light")
    logging.getLogger(TRANSCRIPT_LOGGER + ".model").warning("model: done")
    logging.getLogger("edgevoice.core").info("turn complete")
    assert recorder.messages() == ["turn complete"]

    setup_logging("INFO", transcripts=True, environ={}, journal_sender=recorder)
    logging.getLogger(TRANSCRIPT_LOGGER).info("user: hello")
    assert recorder.messages() == ["turn complete", "user: hello"]


def test_level_filters_and_chatty_websockets_stays_quiet(journal):
    setup_logging("INFO", transcripts=True, environ={}, journal_sender=journal)
    logging.getLogger("edgevoice.x").debug("hidden")
    setup_logging("DEBUG", transcripts=True, environ={}, journal_sender=journal)
    logging.getLogger("edgevoice.x").debug("shown")
    logging.getLogger("websockets.client").debug("> BINARY 7b 22 72 65 [640 bytes]")
    assert journal.messages() == ["shown"]
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_edgevoice", False)]) == 1


def test_bad_level_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("LOUD", transcripts=True, environ={})


# -- secrets -------------------------------------------------------------------------------


def leaks(value: object) -> bool:
    return SECRET in str(value)


def test_secret_never_reaches_the_journal(journal):
    register_secret(SECRET)
    lib = logging.getLogger("google_genai._api_client")
    # The shapes a library might use: in args, in the format string, in extra=, in a
    # dict argument, in an exception message with its traceback.
    lib.debug("> GET /ws HTTP/1.1\n> x-goog-api-key: %s", SECRET)
    lib.debug(f"connecting with key={SECRET}")
    lib.debug("headers %(h)s", {"h": {"x-goog-api-key": SECRET}})
    lib.info("extra", extra={"API_KEY": SECRET, "details": {"key": SECRET}})
    set_log_fields(state=f"weird {SECRET}")
    try:
        raise PermissionError(f"401 for key {SECRET}")
    except PermissionError:
        lib.exception("request failed")
    assert len(journal.entries) == 5
    for entry in journal.entries:
        for key, value in entry.items():
            assert not leaks(value), (key, value)
    assert "x-goog-api-key: [redacted]" in journal.entries[0]["MESSAGE"]
    assert "401 for key [redacted]" in journal.entries[4]["MESSAGE"]
    assert "Traceback" in journal.entries[4]["MESSAGE"]


def test_secret_never_reaches_stderr(capsys):
    setup_logging("DEBUG", transcripts=True, environ={})
    register_secret(SECRET)
    set_log_fields(state="connecting")
    log = logging.getLogger("google_genai.live")
    log.debug("x-goog-api-key: %s", SECRET)
    try:
        raise ValueError(SECRET)
    except ValueError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "DEBUG google_genai.live: x-goog-api-key: [redacted] [state=connecting]" in err
    assert "ValueError: [redacted]" in err


def test_empty_secret_is_ignored(journal):
    register_secret("")
    register_secret("   ")
    register_secret(None)
    logging.getLogger("edgevoice").info("nothing to hide")
    assert journal.messages() == ["nothing to hide"]


# -- stderr format and choosing the handler ------------------------------------------------


def test_stderr_lines(capsys):
    setup_logging("INFO", transcripts=True, environ={})
    log = logging.getLogger("edgevoice.live")
    log.info("connected")
    set_log_fields(state="idle", session_id="abc")
    with log_context(turn_id=2):
        log.warning("slow reply")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "INFO edgevoice.live: connected",
        "WARNING edgevoice.live: slow reply [state=idle session=abc turn=2]",
    ]


def test_under_journald_compares_journal_stream_with_stderr(tmp_path):
    with (tmp_path / "stderr").open("w") as stderr:
        info = os.fstat(stderr.fileno())
        same = f"{info.st_dev}:{info.st_ino}"
        assert under_journald({"JOURNAL_STREAM": same}, stderr.fileno())
        # Inherited by a child whose stderr points elsewhere: not the journal.
        assert not under_journald({"JOURNAL_STREAM": f"{info.st_dev}:1"}, stderr.fileno())
        assert not under_journald({"JOURNAL_STREAM": "garbage"}, stderr.fileno())
    assert under_journald({"INVOCATION_ID": "0123abcd"})
    assert not under_journald({})


# -- the real journal protocol ---------------------------------------------------------------

JOURNAL_CHILD = r"""
import logging, os, socket, sys
os.makedirs("/run/systemd/journal")
server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
server.bind("/run/systemd/journal/socket")
server.settimeout(20)
from edgevoice.service.logging import register_secret, set_log_fields, setup_logging
setup_logging("INFO", transcripts=True, environ={"INVOCATION_ID": "1"})
register_secret(os.environ["TEST_SECRET"])
set_log_fields(state="offline", session_id="s-9")
logging.getLogger("edgevoice.live").warning("no network; key %s", os.environ["TEST_SECRET"])
sys.stdout.buffer.write(server.recv(65536))
"""


def test_journal_native_protocol_through_libsystemd():
    """systemd.journal.send for real, into a journal socket in a private mount namespace
    (journald is not running here; /run is a fresh tmpfs only the child sees)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private /run")
    program = f"mount -t tmpfs tmpfs /run && exec {sys.executable} -c '{JOURNAL_CHILD}'"
    env = {**os.environ, "TEST_SECRET": SECRET, "PYTHONPATH": str(Path.cwd())}
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", program],
        capture_output=True,
        env=env,
        timeout=60,
    )
    if result.returncode != 0 and b"unshare failed" in result.stderr:
        pytest.skip(f"no mount namespaces here: {result.stderr.decode()}")
    assert result.returncode == 0, result.stderr.decode()
    # Native protocol: one FIELD=value per line (values here have no newlines).
    fields = dict(line.split(b"=", 1) for line in result.stdout.split(b"\n") if b"=" in line)
    assert fields[b"MESSAGE"] == b"no network; key [redacted]"
    assert fields[b"PRIORITY"] == b"4"
    assert fields[b"SYSLOG_IDENTIFIER"] == b"edgevoice"
    assert fields[b"EDGEVOICE_STATE"] == b"offline"
    assert fields[b"EDGEVOICE_SESSION_ID"] == b"s-9"
    assert SECRET.encode() not in result.stdout


def test_asyncio_echoes_of_a_lost_connection_are_silenced(journal):
    """Writes to a transport whose connection is gone: asyncio warns on each one after the
    fifth; the loss is reported once by its owner, the echoes not at all."""

    async def write_after_loss() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.abort()
        for _ in range(10):
            writer.write(b"x")
        server.close()
        await server.wait_closed()

    setup_logging("DEBUG", transcripts=False, journal_sender=journal)
    asyncio.run(write_after_loss())
    assert not [m for m in journal.messages() if "socket.send() raised exception" in m]
    # The same writes without the filter do warn: the test above could fail.
    echoes = logging.getLogger("asyncio")
    saved = list(echoes.filters)
    for f in saved:
        echoes.removeFilter(f)
    try:
        asyncio.run(write_after_loss())
    finally:
        for f in saved:
            echoes.addFilter(f)
    assert [m for m in journal.messages() if "socket.send() raised exception" in m]

"""Logging: journald with structured fields under systemd, plain stderr lines elsewhere.

Under systemd every record goes to the journal through systemd-python's
``JournalHandler`` with ``SYSLOG_IDENTIFIER=edgevoice`` and the daemon's context as
fields (``EDGEVOICE_STATE``, ``EDGEVOICE_SESSION_ID``, ``EDGEVOICE_TURN_ID``), so
``journalctl -u edgevoice EDGEVOICE_STATE=offline`` finds what happened while offline.
Elsewhere records are one line on stderr: ``INFO edgevoice.live: connected [state=idle]``.

The context comes from two places, merged per record:

- :func:`set_log_fields`: process-wide values the daemon updates as it goes (state,
  session id). Visible from every thread, so the audio threads' records carry them.
- :func:`log_context`: values for the current task or context only (a turn id while a
  tool call runs), layered over the process-wide ones.

Secrets registered with :func:`register_secret` are replaced in every record before any
handler sees it: in the message, its arguments, the traceback text and any string
attribute. That holds for libraries' records too (websockets logs request headers at
debug level, and the API key travels in one).

Transcripts are logged to :data:`TRANSCRIPT_LOGGER` at INFO; ``transcripts=False``
silences that logger alone.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

TRANSCRIPT_LOGGER = "edgevoice.transcript"
SYSLOG_IDENTIFIER = "edgevoice"
FIELD_PREFIX = "EDGEVOICE_"
REDACTED = "[redacted]"

# Loggers that print every websocket frame (base64 audio, 50 a second) at DEBUG: kept at
# INFO even when the daemon logs at DEBUG, or the journal drowns.
CHATTY_LOGGERS = ("websockets", "websockets.client", "hpack", "httpcore")

JournalSender = Callable[..., Any]

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*")
# journald accepts upper-case letters, digits and underscores, not starting with "_".
_JOURNAL_FIELD = re.compile(r"[A-Z0-9][A-Z0-9_]*")

# Process-wide fields: replaced whole on each update (copy on write) so readers in other
# threads never see a dict changing under them.
_global_fields: dict[str, str] = {}
_global_lock = threading.Lock()
_context_fields: ContextVar[Mapping[str, str] | None] = ContextVar("edgevoice_log_fields", default=None)


def set_log_fields(**fields: object) -> None:
    """Set process-wide context fields (``state=``, ``session_id=``, ``turn_id=`` ...).

    A value of None removes the field. Names are lower-case identifiers; each becomes the
    journal field ``EDGEVOICE_<NAME>``.
    """
    global _global_fields
    _check_names(fields)
    with _global_lock:
        updated = dict(_global_fields)
        for name, value in fields.items():
            if value is None:
                updated.pop(name, None)
            else:
                updated[name] = str(value)
        _global_fields = updated


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Add context fields for the current task/context only, for the ``with`` block."""
    _check_names(fields)
    merged = dict(_context_fields.get() or {})
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = str(value)
    token = _context_fields.set(merged)
    try:
        yield
    finally:
        _context_fields.reset(token)


def current_log_fields() -> dict[str, str]:
    """The fields a record logged here and now would carry."""
    return {**_global_fields, **(_context_fields.get() or {})}


def clear_log_fields() -> None:
    """Forget the process-wide fields (a new daemon run, or a test)."""
    global _global_fields
    with _global_lock:
        _global_fields = {}


def _check_names(fields: Mapping[str, object]) -> None:
    for name in fields:
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"log field name {name!r} must be a lower-case identifier")


# -- secrets -------------------------------------------------------------------------------

_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact ``value`` from every record from now on. Empty values are ignored."""
    global _secrets
    if value is None:
        return
    value = value.strip()
    if not value:
        return
    with _secrets_lock:
        _secrets = _secrets | {value}


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    global _secrets
    with _secrets_lock:
        _secrets = frozenset()


def redact(text: str) -> str:
    """``text`` with every registered secret replaced."""
    # Longest first, so a secret containing another is replaced whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Replaces registered secrets in a record, in place, before any handler formats it.

    The message is rendered and its arguments dropped (an argument may be the secret),
    the traceback is rendered to text and redacted, and every other string attribute is
    redacted too, since JournalHandler sends all of a record's attributes as fields.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets or getattr(record, "_edgevoice_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name in ("msg", "exc_text", "stack_info"):
                continue
            if isinstance(value, str):
                setattr(record, name, redact(value))
            elif isinstance(value, dict):  # e.g. edgevoice_fields, or a dict passed in extra=
                setattr(
                    record,
                    name,
                    {k: redact(v) if isinstance(v, str) else v for k, v in value.items()},
                )
        record._edgevoice_redacted = True
        return True


# -- context fields on records -------------------------------------------------------------


class ContextFieldsFilter(logging.Filter):
    """Copies the current context fields onto the record as ``EDGEVOICE_*`` attributes
    (journal fields) and ``edgevoice_fields`` (for the stderr format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "edgevoice_fields"):
            fields = current_log_fields()
            record.edgevoice_fields = fields
            for name, value in fields.items():
                setattr(record, FIELD_PREFIX + name.upper(), value)
        return True


class StderrFormatter(logging.Formatter):
    """``LEVEL logger: message [state=... session=... turn=...]``; journald and the
    terminal add their own timestamps."""

    _short = {"session_id": "session", "turn_id": "turn"}

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        fields = getattr(record, "edgevoice_fields", None) or {}
        if fields:
            shown = " ".join(f"{self._short.get(k, k)}={v}" for k, v in fields.items())
            text += f" [{shown}]"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text


def _journal_fields_only(sender: JournalSender) -> JournalSender:
    """JournalHandler passes every record attribute (msg, args, levelname...) as a field;
    journald drops the invalid lower-case names. Drop them here instead, so what the
    sender receives is what the journal stores."""

    def send(message: str, /, **fields: Any) -> Any:
        valid = {k: v for k, v in fields.items() if _JOURNAL_FIELD.fullmatch(k) and v is not None}
        return sender(message, **valid)

    return send


# -- setup ---------------------------------------------------------------------------------


def under_journald(environ: Mapping[str, str] = os.environ, stderr_fd: int | None = None) -> bool:
    """Whether to log to the journal: stderr is the journal stream systemd gave us
    (``JOURNAL_STREAM`` names its device:inode), or we run as a systemd service
    (``INVOCATION_ID``) with no journal stream to compare against."""
    stream = environ.get("JOURNAL_STREAM")
    if stream:
        try:
            device, inode = (int(part) for part in stream.split(":"))
            info = os.fstat(sys.stderr.fileno() if stderr_fd is None else stderr_fd)
        except (ValueError, OSError):
            return False
        # Not equal: stderr was redirected (e.g. a shell started from a service's child).
        return (info.st_dev, info.st_ino) == (device, inode)
    return bool(environ.get("INVOCATION_ID"))


class AsyncioEchoFilter(logging.Filter):
    """Drops asyncio's repeats of a loss already reported.

    Writing to a transport whose connection is gone makes asyncio warn "socket.send()
    raised exception." on every write after the fifth; the loss itself is reported once,
    by the part that owned the connection (a soak logged 69 of these lines for a handful
    of losses)."""

    ECHOES = ("socket.send() raised exception.", "SSL connection is closed")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.ECHOES


def setup_logging(
    level: str,
    transcripts: bool,
    environ: Mapping[str, str] = os.environ,
    journal_sender: JournalSender | None = None,
) -> None:
    """Configure the root logger. Safe to call again (a reload replaces the handler).

    ``journal_sender`` forces the journal handler and replaces ``systemd.journal.send``
    (tests pass a recorder with the same signature: ``sender(MESSAGE, **fields)``).
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_edgevoice", False):
            root.removeHandler(handler)
            handler.close()

    handler: logging.Handler
    if journal_sender is not None or under_journald(environ):
        from systemd import journal

        sender = journal_sender if journal_sender is not None else journal.send
        handler = journal.JournalHandler(
            sender_function=_journal_fields_only(sender), SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(StderrFormatter())
    # Context first, so the fields it adds pass through the redaction as well.
    handler.addFilter(ContextFieldsFilter())
    handler.addFilter(RedactingFilter())
    handler._edgevoice = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)

    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    # Transcripts follow the general level when on; off means off at every level.
    logging.getLogger(TRANSCRIPT_LOGGER).setLevel(logging.NOTSET if transcripts else logging.CRITICAL + 1)
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AsyncioEchoFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(AsyncioEchoFilter())
    logging.captureWarnings(True)


__all__ = [
    "REDACTED",
    "SYSLOG_IDENTIFIER",
    "TRANSCRIPT_LOGGER",
    "AsyncioEchoFilter",
    "ContextFieldsFilter",
    "RedactingFilter",
    "clear_log_fields",
    "current_log_fields",
    "forget_secrets",
    "log_context",
    "redact",
    "register_secret",
    "set_log_fields",
    "setup_logging",
    "under_journald",
]

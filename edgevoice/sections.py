"""Settings sections: each room declares its own table of the configuration file.

A room (tools, security, ...) writes a :class:`Section` model and registers it under its
table name with :func:`section`; :mod:`edgevoice.config` assembles the registered sections
into the daemon's ``Settings`` and imports no room. The rooms that make up the device are
imported by the ``edgevoice`` package itself, so every loader sees the same file format.

This module imports nothing from the rest of the device, so any room may import it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """One table of the configuration file: unknown keys are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SectionT = TypeVar("SectionT", bound=type[Section])

_SECTIONS: dict[str, type[Section]] = {}


def section(name: str) -> Callable[[SectionT], SectionT]:
    """Register a section model under its table name (``[name]`` in the file)."""

    def register(model: SectionT) -> SectionT:
        known = _SECTIONS.get(name)
        if known is not None and known.__qualname__ != model.__qualname__:
            raise ValueError(f"two settings sections are called [{name}]: {known} and {model}")
        _SECTIONS[name] = model
        return model

    return register


def registered_sections() -> Mapping[str, type[Section]]:
    """The sections registered so far, in registration order."""
    return MappingProxyType(_SECTIONS)


class ConfigError(Exception):
    """A configuration that cannot be used. ``problems`` holds one sentence per bad key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def read_credential_file(path: Path, environ: Mapping[str, str] | None = None) -> str:
    """Read a secret from a file, refusing one that other users could read.

    A file in systemd's credentials directory (``$CREDENTIALS_DIRECTORY`` of ``environ``,
    default the process's) may be group readable: systemd 257 hands credentials over with
    mode 0440, the group being the service's own, inside a directory only the service can
    enter. Anywhere else a group-readable secret is a careless file and is refused.
    """
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError([f"credential file {path} cannot be read: {exc.strerror}"]) from None
    protected = _in_credentials_directory(path, os.environ if environ is None else environ)
    allowed = stat.S_IRGRP if protected else 0
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO) & ~allowed:
        raise ConfigError(
            [
                f"credential file {path} is readable by other users (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
            ]
        )
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"credential file {path} cannot be read: {exc}"]) from None


def _in_credentials_directory(path: Path, environ: Mapping[str, str]) -> bool:
    """Whether ``path`` is a file systemd placed in this service's credentials directory:
    directly in ``$CREDENTIALS_DIRECTORY``, which nobody but the service can enter."""
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return False
    try:
        info = Path(directory).stat()
        same_directory = path.resolve().parent == Path(directory).resolve()
    except OSError:
        return False
    return same_directory and not info.st_mode & stat.S_IRWXO


__all__ = ["ConfigError", "Section", "read_credential_file", "registered_sections", "section"]

"""The token broker's TOML file: loading with clear errors, and the device enrolment edits.

The file holds no secret: devices appear as ``{id, secret_hash, revoked}``; the Gemini API
key comes from ``GEMINI_API_KEY`` or the systemd credential ``gemini-api-key``. Enrolment
(``add-device``) and revocation rewrite the file atomically and keep its comments.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgevoice.atomic_file import write_atomically
from edgevoice.config import API_KEY_CREDENTIAL, API_KEY_ENV, ConfigError, read_credential_file
from edgevoice.errors import UserError
from edgevoice.security.device_secrets import generate_secret, hash_secret
from edgevoice.security.settings import check_device_id
from edgevoice_broker.settings import BrokerSettings

DEFAULT_BROKER_CONFIG = Path("/etc/edgevoice/token-broker.toml")
BROKER_CONFIG_ENV = "EDGEVOICE_BROKER_CONFIG"

_TABLE_LINE = re.compile(r"^\s*\[")
_DEVICES_HEADER = re.compile(r"^\s*\[\[\s*devices\s*\]\]\s*(#.*)?$")
_REVOKED_LINE = re.compile(r"^\s*revoked\s*=")


@dataclass(frozen=True)
class LoadedBroker:
    settings: BrokerSettings
    path: Path
    signature: tuple[int, int, int]
    """(mtime_ns, size, inode) of the file read: a change means reload."""


def resolve_broker_config(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    if cli_path:
        return Path(cli_path)
    if environ.get(BROKER_CONFIG_ENV):
        return Path(environ[BROKER_CONFIG_ENV])
    return DEFAULT_BROKER_CONFIG


def file_signature(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_mtime_ns, info.st_size, info.st_ino


def load_broker_settings(path: Path) -> LoadedBroker:
    """Read and validate the broker's file; :class:`ConfigError` names each bad key."""
    try:
        signature = file_signature(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"token broker configuration {path} does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"token broker configuration {path} cannot be read: {exc}"]) from None
    return LoadedBroker(parse_broker_settings(text, path), path, signature)


def parse_broker_settings(text: str, path: Path) -> BrokerSettings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path} is not valid TOML: {exc}"]) from None
    _resolve_paths(data, path.parent)
    try:
        return BrokerSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {problem}" for problem in _describe(exc)]) from None


def read_api_key(environ: Mapping[str, str]) -> str:
    """The broker's Gemini API key: GEMINI_API_KEY or $CREDENTIALS_DIRECTORY/gemini-api-key."""
    if environ.get(API_KEY_ENV, "").strip():
        return environ[API_KEY_ENV].strip()
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / API_KEY_CREDENTIAL
        if path.exists():
            key = read_credential_file(path, environ)
            if key:
                return key
            raise ConfigError([f"credential file {path} is empty"])
    raise UserError(
        "the token broker needs the Gemini API key: set GEMINI_API_KEY or install the "
        f"credential (LoadCredential={API_KEY_CREDENTIAL}:... in the systemd unit)"
    )


# -- enrolment edits --------------------------------------------------------------------------


def add_device(path: Path, device_id: str) -> str:
    """Enrol ``device_id``: store a new secret's hash in the file and return the secret
    (the only time it exists outside the device)."""
    try:
        check_device_id(device_id)
    except ValueError as exc:
        raise UserError(f"device id {device_id!r} {exc}", status=2) from None
    loaded = load_broker_settings(path)
    if loaded.settings.device(device_id) is not None:
        raise UserError(f"device {device_id} is already enrolled in {path}; pick another name")
    text = path.read_text(encoding="utf-8")
    secret = generate_secret()
    block = f'\n[[devices]]\nid = "{device_id}"\nsecret_hash = "{hash_secret(secret)}"\nrevoked = false\n'
    new_text = text + ("" if text.endswith("\n") or not text else "\n") + block
    settings = _check_edit(new_text, path)
    if settings.device(device_id) is None:  # pragma: no cover - the block names it
        raise UserError(f"could not add device {device_id} to {path}")
    _replace(path, new_text)
    return secret


def set_revoked(path: Path, device_id: str, revoked: bool = True) -> None:
    """Mark a device revoked (or not). A running broker notices the change at once."""
    loaded = load_broker_settings(path)
    if loaded.settings.device(device_id) is None:
        raise UserError(f"device {device_id} is not enrolled in {path}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start = _device_block(lines, device_id, path)
    end = start + 1
    while end < len(lines) and not _TABLE_LINE.match(lines[end]):
        end += 1
    body = [line for line in lines[start + 1 : end] if not _REVOKED_LINE.match(line)]
    last = max((i for i, line in enumerate(body) if line.strip()), default=-1)
    if body and not body[last].endswith("\n"):
        body[last] += "\n"
    body.insert(last + 1, f"revoked = {'true' if revoked else 'false'}\n")
    new_text = "".join([*lines[: start + 1], *body, *lines[end:]])
    settings = _check_edit(new_text, path)
    device = settings.device(device_id)
    if device is None or device.revoked is not revoked:
        raise UserError(f"could not change device {device_id} in {path}: edit the file by hand")
    _replace(path, new_text)


def _device_block(lines: list[str], device_id: str, path: Path) -> int:
    for index, line in enumerate(lines):
        if not _DEVICES_HEADER.match(line):
            continue
        end = index + 1
        while end < len(lines) and not _TABLE_LINE.match(lines[end]):
            end += 1
        try:
            block = tomllib.loads("".join(lines[index + 1 : end]))
        except tomllib.TOMLDecodeError:
            continue
        if block.get("id") == device_id:
            return index
    raise UserError(
        f"device {device_id} in {path} is not written as its own [[devices]] table; edit the file by hand"
    )


def _check_edit(text: str, path: Path) -> BrokerSettings:
    try:
        return parse_broker_settings(text, path)
    except ConfigError as exc:
        raise UserError(f"refusing to write {path}: the edit would break it ({exc.problems[0]})") from None


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, keeping the file's mode."""
    write_atomically(path, text.encode("utf-8"), mode=path.stat().st_mode & 0o7777)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Relative file names in the file are relative to the file's directory."""
    for section, key in (("server", "tls_cert_file"), ("server", "tls_key_file"), ("gemini", "ca_file")):
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            value = Path(table[key])
            if not value.is_absolute():
                table[key] = str(base / value)


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        location = ""
        for part in error["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {location}")
        elif error["type"] == "missing":
            problems.append(f"{location} is required")
        else:
            problems.append(f"{location or '(top level)'}: {error['msg'].removeprefix('Value error, ')}")
    return problems


__all__ = [
    "BROKER_CONFIG_ENV",
    "DEFAULT_BROKER_CONFIG",
    "LoadedBroker",
    "add_device",
    "file_signature",
    "load_broker_settings",
    "parse_broker_settings",
    "read_api_key",
    "resolve_broker_config",
    "set_revoked",
]

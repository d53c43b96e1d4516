"""Configuration: one TOML file, environment overrides, secrets from systemd credentials.

Precedence (highest first): ``EDGEVOICE_<SECTION>__<KEY>`` environment variables, the TOML
file, the defaults below. Secrets never live in the TOML file: the Gemini API key comes from
``GEMINI_API_KEY`` or ``$CREDENTIALS_DIRECTORY/gemini-api-key``.

A bad value is reported as :class:`ConfigError`, which names every bad key, the value it had
and where that value came from (file and line, or environment variable).

The tables of the file are :class:`~edgevoice.sections.Section` models. This module declares
the device's own (audio, button, led, live, paths, logging); the other rooms register theirs
(``[home]`` in :mod:`edgevoice.tools.settings`, ``[auth]`` in
:mod:`edgevoice.security.settings`) and :data:`Settings` is assembled from all of them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from edgevoice.sections import ConfigError, Section, read_credential_file, registered_sections, section

DEFAULT_CONFIG_PATH = Path("/etc/edgevoice/edgevoice.toml")
CONFIG_PATH_ENV = "EDGEVOICE_CONFIG"
ENV_PREFIX = "EDGEVOICE_"
API_KEY_ENV = "GEMINI_API_KEY"
API_KEY_CREDENTIAL = "gemini-api-key"

# Exit status for a configuration error (sysexits.h EX_CONFIG); systemd shows it by name.
EX_CONFIG = 78


@section("audio")
class AudioSettings(Section):
    """Microphone and speaker. Rates here are what the pipeline works at; the ``*_device_*``
    values describe what the sound card accepts when it differs (the pipeline converts)."""

    capture_device: str = "default"
    playback_device: str = "default"
    capture_rate: Literal[16000] = 16000
    playback_rate: Literal[24000] = 24000
    period_ms: int = Field(20, ge=5, le=100)
    # None: open the card at the pipeline rate / mono and let ALSA tell us if it refuses.
    capture_device_rate: int | None = Field(None, ge=8000, le=192000)
    capture_device_channels: int | None = Field(None, ge=1, le=8)
    # Which channel of a multi-channel microphone to keep: "mix" averages them all.
    capture_channel: Literal["mix"] | int = "mix"
    playback_device_rate: int | None = Field(None, ge=8000, le=192000)
    playback_device_channels: int | None = Field(None, ge=1, le=8)
    # Audio kept from before the press and sent after activityStart, so the first
    # syllable is not clipped.
    preroll_ms: int = Field(300, ge=0, le=2000)
    # The most reply audio the adaptive jitter buffer holds back (it starts with one period
    # and grows only after a gap), to ride out network bursts.
    prebuffer_ms: int = Field(100, ge=0, le=2000)
    fade_ms: float = Field(5.0, ge=0, le=50)
    volume: float = Field(1.0, ge=0.0, le=2.0)
    earcons: bool = True
    # Turn single earcons off. Empty means all enabled.
    disabled_earcons: list[Literal["listening", "sent", "error", "offline", "reconnected"]] = []


@section("button")
class ButtonSettings(Section):
    pin: int = Field(17, ge=0, le=53, description="BCM pin number")
    pull_up: bool = True
    bounce_time_ms: float | None = Field(10.0, ge=0, le=500)


@section("led")
class LedSettings(Section):
    pin: int | None = Field(None, ge=0, le=53, description="BCM pin of an optional status LED")
    pwm: bool = True


@section("live")
class LiveSettings(Section):
    model: str = "gemini-3.8-live"
    voice: str = "Kore"
    language: str | None = None
    system_instruction: str = (
        "You are the voice assistant of a smart home. Answer briefly and naturally; "
        "your answers are spoken aloud."
    )
    # Leave unset for Google's endpoint. Tests and `simulate` point it at the emulator.
    base_url: str | None = None
    api_version: str | None = None
    # A CA certificate (PEM) to trust for base_url, e.g. the one `edgevoice emulator` writes.
    ca_file: Path | None = None
    context_window_compression: bool = True
    # Model options some families refuse (the session setup leaves them out there and
    # check-config says so); unset sends nothing and lets the model decide.
    thinking_budget: int | None = Field(None, ge=-1, le=32768)
    proactive_audio: bool | None = None
    affective_dialog: bool | None = None
    # An utterance spoken while offline is sent when the link returns if it is not older
    # than this; otherwise it is dropped with the "offline" earcon.
    offline_max_age_s: float = Field(30.0, ge=0, le=600)
    # A press held longer than this ends the utterance (a stuck button must not record forever).
    max_utterance_s: float = Field(60.0, ge=1, le=600)
    # Reply owed but nothing heard for this long: treat the connection as dead.
    reply_timeout_s: float = Field(15.0, gt=0, le=300)
    reconnect_initial_s: float = Field(0.25, gt=0, le=60)
    reconnect_max_s: float = Field(5.0, gt=0, le=600)

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not re.fullmatch(r"(models/)?[A-Za-z0-9._-]+", value):
            raise ValueError("must be a Gemini model name such as gemini-3.8-live")
        return value


@section("paths")
class PathsSettings(Section):
    state_dir: Path = Path("/var/lib/edgevoice")


@section("logging")
class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Transcripts are personal data: they go to the log at INFO only when this is on.
    transcripts: bool = True


class SettingsBase(BaseSettings):
    """What every configuration has besides its sections: the API key, and how it is read."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    # Filled from GEMINI_API_KEY or the systemd credential, never from the TOML file.
    gemini_api_key: SecretStr | None = Field(None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment outranks the file, which load_settings() passes as init kwargs;
        # nothing is read implicitly from the working directory (.env) or /run/secrets.
        return (_MappingEnvSource(settings_cls), init_settings)


def _assemble_settings() -> type[SettingsBase]:
    # This module's sections first, in the order above, then the other rooms' (the order of
    # check-config's output and of reload's report).
    own = ("audio", "button", "led", "live", "paths", "logging")
    sections = registered_sections()
    names = [*own, *(name for name in sections if name not in own)]
    fields: dict[str, Any] = {name: (sections[name], sections[name]()) for name in names}
    return create_model(  # type: ignore[no-any-return, call-overload]
        "Settings",
        __base__=SettingsBase,
        __module__=__name__,
        __doc__="The effective configuration of one daemon: one attribute per section.",
        **fields,
    )


# The rooms of the device have registered their sections by now: the ``edgevoice`` package
# imports them before any of its modules.
Settings = _assemble_settings()


# The environment a load_settings() call validates against (os.environ unless a caller,
# such as a test or a SIGHUP reload, hands in its own).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("edgevoice_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _ENVIRON.get()
        if environ is None:
            return super()._load_env_vars()
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


@dataclass(frozen=True)
class LoadedConfig:
    settings: Settings
    path: Path | None
    # Where each (section, key) value came from, for check-config.
    sources: Mapping[tuple[str, ...], str]


def resolve_config_path(cli_path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    if cli_path:
        return Path(cli_path)
    if environ.get(CONFIG_PATH_ENV):
        return Path(environ[CONFIG_PATH_ENV])
    return DEFAULT_CONFIG_PATH


def load_settings(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    require_file: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Load and validate the configuration. Raises :class:`ConfigError`.

    ``path`` None means defaults and environment only (used by ``simulate``).
    ``overrides`` are applied on top of the file (used by ``simulate`` to point the
    devices at the simulated hardware); they are reported as "command line".
    """
    environ = os.environ if environ is None else environ
    file_data: dict[str, Any] = {}
    key_lines: dict[tuple[str, ...], int] = {}
    if path is not None:
        file_data, key_lines = _read_toml(path, require_file=require_file)
    data = deep_merge(file_data, dict(overrides or {}))
    secrets = _read_secrets(environ)
    env_keys = _env_keys(environ)

    def source_of(loc: tuple[str, ...]) -> str:
        for length in range(len(loc), 0, -1):
            prefix = loc[:length]
            if prefix in env_keys:
                return f"environment variable {env_keys[prefix]}"
            if overrides and _has_path(overrides, prefix):
                return "command line"
            if prefix in key_lines:
                return f"{path}, line {key_lines[prefix]}"
        if loc and loc[0] == "gemini_api_key":
            return secrets.get("_source", "secret")
        return "default"

    try:
        settings = _build(data, environ, secrets.get("gemini_api_key"))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source_of)) from None

    sources: dict[tuple[str, ...], str] = {}
    for table, model in settings:
        if isinstance(model, BaseModel):
            for key in type(model).model_fields:
                sources[(table, key)] = source_of((table, key))
    return LoadedConfig(settings=settings, path=path, sources=sources)


def redacted_dump(loaded: LoadedConfig) -> str:
    """The effective configuration as TOML-like text with each value's source. The API key
    is shown only as set/unset."""
    lines: list[str] = []
    settings = loaded.settings
    if loaded.path is not None:
        lines.append(f"# configuration file: {loaded.path}")
    for table, model in settings:
        if not isinstance(model, BaseModel):
            continue
        lines.append(f"\n[{table}]")
        for key, value in model.model_dump(mode="json").items():
            source = loaded.sources.get((table, key), "default")
            if value is None:  # TOML has no null: show the key commented out
                lines.append(f"# {key} is unset    # {source}")
            else:
                lines.append(f"{key} = {_toml_value(value)}    # {source}")
    key = settings.gemini_api_key
    lines.append("\n# secrets")
    lines.append(f"# gemini_api_key: {'set (redacted)' if key else 'not set'}")
    return "\n".join(lines).lstrip("\n") + "\n"


# -- internals -----------------------------------------------------------------------------


def _build(data: dict[str, Any], environ: Mapping[str, str], api_key: str | None) -> SettingsBase:
    init: dict[str, Any] = dict(data)
    if api_key is not None:
        init["gemini_api_key"] = api_key
    token = _ENVIRON.set(environ)
    try:
        return Settings(**init)
    finally:
        _ENVIRON.reset(token)


def _read_toml(path: Path, *, require_file: bool) -> tuple[dict[str, Any], dict[tuple[str, ...], int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not require_file:
            return {}, {}
        raise ConfigError([f"configuration file {path} does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"configuration file {path} is a directory, not a file"]) from None
    except PermissionError:
        raise ConfigError([f"configuration file {path} is not readable by this user"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"configuration file {path} is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path} is not valid TOML: {exc}"]) from None
    return data, _key_lines(text)


_TABLE_RE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"]+(?:\s*\.\s*[A-Za-z0-9_\-\"]+)*)\s*=")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map (table..., key) to its 1-based line. Good enough for error messages: TOML's
    common forms (tables, dotted keys); exotic forms just lose their line number."""
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("[["):
            continue
        if match := _TABLE_RE.match(line):
            table = tuple(part.strip().strip("\"'") for part in match.group(1).split("."))
            lines.setdefault(table, number)
            continue
        if match := _KEY_RE.match(line):
            key = tuple(part.strip().strip("\"'") for part in match.group(1).split("."))
            lines.setdefault(table + key, number)
    return lines


def _read_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    if environ.get(API_KEY_ENV):
        return {
            "gemini_api_key": environ[API_KEY_ENV].strip(),
            "_source": f"environment variable {API_KEY_ENV}",
        }
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / API_KEY_CREDENTIAL
        if path.exists():
            return {"gemini_api_key": read_credential_file(path, environ), "_source": f"credential {path}"}
    return {}


def _env_keys(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    keys: dict[tuple[str, ...], str] = {}
    for name in environ:
        if name.startswith(ENV_PREFIX) and name != CONFIG_PATH_ENV:
            parts = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
            keys[parts] = name
    return keys


def _describe(exc: ValidationError, source_of: Any) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        # Union members add their type name to the location; it means nothing to a user.
        loc = tuple(part for part in loc if not part.startswith(("literal[", "int", "str")) or part == loc[0])
        key = ".".join(loc) if loc else "(top level)"
        source = source_of(loc)
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {key} ({source})")
            continue
        value = error.get("input")
        shown = "(secret)" if loc and loc[0] == "gemini_api_key" else _short(value)
        problems.append(f"{key} = {shown} ({source}): {error['msg']}")
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _has_path(data: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


__all__ = [
    "EX_CONFIG",
    "AudioSettings",
    "ButtonSettings",
    "ConfigError",
    "LedSettings",
    "LiveSettings",
    "LoadedConfig",
    "LoggingSettings",
    "PathsSettings",
    "Section",
    "Settings",
    "SettingsBase",
    "load_settings",
    "read_credential_file",
    "redacted_dump",
    "resolve_config_path",
]

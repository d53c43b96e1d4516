"""Subcommands that run or inspect the daemon: run, check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
from pathlib import Path

from edgevoice.config import (
    ConfigError,
    LoadedConfig,
    Settings,
    load_settings,
    redacted_dump,
    resolve_config_path,
)
from edgevoice.errors import UserError
from edgevoice.service.daemon import Daemon, alsa_hardware
from edgevoice.service.logging import register_secret, setup_logging
from edgevoice.service.watchdog import enable_crash_dumps

log = logging.getLogger("edgevoice")

CONFIG_HELP = "configuration file (default: $EDGEVOICE_CONFIG or /etc/edgevoice/edgevoice.toml)"


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run the assistant on this device's sound card and button")
    run.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    run.set_defaults(handler=run_daemon)

    check = subparsers.add_parser(
        "check-config", help="print the effective configuration (secrets redacted) or its errors"
    )
    check.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    check.set_defaults(handler=check_config)


def check_config(args: argparse.Namespace) -> int:
    loaded = load_settings(resolve_config_path(args.config, os.environ))
    print(redacted_dump(loaded), end="")
    return 0


def run_daemon(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.config, os.environ)
    loaded = load_settings(path)
    settings = loaded.settings
    setup_logging(settings.logging.level, settings.logging.transcripts)
    # A watchdog abort (SIGABRT) or a crash leaves every thread's stack in the journal.
    enable_crash_dumps()
    if settings.gemini_api_key is not None:
        register_secret(settings.gemini_api_key.get_secret_value())
    if settings.auth.mode == "token_broker":
        from edgevoice.security.credentials import read_device_secret

        # A missing secret is reported clearly when the credential source is built.
        with contextlib.suppress(ConfigError):
            register_secret(read_device_secret(os.environ))
    return asyncio.run(_run(path, loaded))


async def _run(path: Path, loaded: LoadedConfig) -> int:
    settings = loaded.settings
    daemon: Daemon
    from edgevoice.security.credentials import credential_source

    # [auth] decides: the API key, or a fresh ephemeral token from the token broker for
    # every connection. Settings are read at every connection: a reload may change them.
    credentials = credential_source(settings, lambda: daemon.settings)

    from edgevoice.tools import ToolBox

    daemon = Daemon(
        settings,
        alsa_hardware(settings),
        credentials=credentials,
        ssl_context=_ssl_context(settings),
        toolbox=ToolBox.from_settings(settings.home, settings.paths.state_dir),
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    reloads: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = loop.create_task(_reload(daemon, path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    return await daemon.run()


async def _reload(daemon: Daemon, path: Path) -> None:
    """SIGHUP: re-read the configuration; a bad one is refused and the old one stays."""
    daemon.notifier.reloading()
    try:
        settings = load_settings(path).settings
        # Built afresh on every reload: live.ca_file, or the file it names, may have changed.
        ssl_context = _ssl_context(settings)
    except (ConfigError, UserError) as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        log.error("configuration reload refused, keeping the running one: %s", "; ".join(problems))
    else:
        setup_logging(settings.logging.level, settings.logging.transcripts)
        if settings.gemini_api_key is not None:
            register_secret(settings.gemini_api_key.get_secret_value())
        changed = await daemon.reload(settings, alsa_hardware(settings), ssl_context=ssl_context)
        log.info("configuration reloaded; changed: %s", ", ".join(changed) or "nothing")
    status = daemon.conversation.status
    daemon.notifier.ready(status.text() if status else None)


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.live.ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(settings.live.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"live.ca_file {settings.live.ca_file} cannot be used: {exc}") from None

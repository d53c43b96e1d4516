"""Subcommands that run or inspect the daemon: run, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import ssl

from edgevoice.config import LoadedConfig, load_settings, redacted_dump, resolve_config_path
from edgevoice.errors import UserError
from edgevoice.live.link import CredentialError
from edgevoice.service.daemon import Daemon, alsa_hardware

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
    loaded = load_settings(resolve_config_path(args.config, os.environ))
    logging.basicConfig(level=loaded.settings.logging.level, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_run(loaded))


async def _run(loaded: LoadedConfig) -> int:
    settings = loaded.settings
    if settings.gemini_api_key is None:
        raise UserError(
            "no Gemini API key: set GEMINI_API_KEY or install the credential "
            "(LoadCredential=gemini-api-key in the systemd unit)"
        )
    api_key = settings.gemini_api_key

    async def credentials() -> str:
        value = api_key.get_secret_value()
        if not value:
            raise CredentialError("the Gemini API key is empty")
        return value

    ssl_context = None
    if settings.live.ca_file is not None:
        try:
            ssl_context = ssl.create_default_context(cafile=str(settings.live.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"live.ca_file {settings.live.ca_file} cannot be used: {exc}") from None
    daemon = Daemon(settings, alsa_hardware(settings), credentials=credentials, ssl_context=ssl_context)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    return await daemon.run()

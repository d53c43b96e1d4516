"""Subcommands that run or inspect the daemon: run, check-config."""

from __future__ import annotations

import argparse
import os

from edgevoice.config import load_settings, redacted_dump, resolve_config_path


def register(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser(
        "check-config", help="print the effective configuration (secrets redacted) or its errors"
    )
    check.add_argument("--config", metavar="FILE", help="configuration file (default: $EDGEVOICE_CONFIG or /etc/edgevoice/edgevoice.toml)")
    check.set_defaults(handler=check_config)


def check_config(args: argparse.Namespace) -> int:
    loaded = load_settings(resolve_config_path(args.config, os.environ))
    print(redacted_dump(loaded), end="")
    return 0

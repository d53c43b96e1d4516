"""The ``edgevoice`` command: one subcommand per user task.

Each room registers its own subcommands through a ``register(subparsers)`` function that
adds a parser and sets ``handler`` (a callable taking the parsed arguments and returning the
exit status). This module only dispatches and turns :class:`UserError` and
:class:`ConfigError` into one clear line and an exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgevoice import __version__
from edgevoice.config import EX_CONFIG, ConfigError
from edgevoice.errors import UserError

COMMAND_ENTRY_POINTS = "edgevoice.commands"


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The device's own commands, plus those other installed packages offer.

    The tools that test the device (``simulate``, ``emulator``, ``bench``) and the token
    broker are separate distributions that register their subcommands under the
    ``edgevoice.commands`` entry point group. They are looked up only when the command is
    not one of the device's own, so ``edgevoice run`` imports none of them.
    """
    parser = argparse.ArgumentParser(
        prog="edgevoice",
        description="Push-to-talk Gemini Live voice assistant for small Linux boards.",
    )
    parser.add_argument("--version", action="version", version=f"edgevoice {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Imported here so `edgevoice --version` stays fast and a broken room names itself.
    from edgevoice.service import commands as service_commands
    from edgevoice.service import control, diagnostics
    from edgevoice.tools import home_cli

    service_commands.register(subparsers)
    diagnostics.register(subparsers)
    control.register(subparsers)
    home_cli.register(subparsers)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command not in subparsers.choices:
        _register_installed_commands(subparsers)
    return parser


def _register_installed_commands(subparsers: argparse._SubParsersAction) -> None:
    from importlib.metadata import entry_points

    for entry_point in sorted(entry_points(group=COMMAND_ENTRY_POINTS), key=lambda ep: ep.name):
        if entry_point.name in subparsers.choices:
            continue
        try:
            register = entry_point.load()
        except ImportError as exc:
            # A half-installed tool must not take the device's own commands down with it.
            print(f"edgevoice: the {entry_point.name!r} command is unavailable: {exc}", file=sys.stderr)
            continue
        register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"edgevoice: configuration error: {problem}", file=sys.stderr)
        return EX_CONFIG
    except UserError as exc:
        print(f"edgevoice: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

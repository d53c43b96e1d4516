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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgevoice",
        description="Push-to-talk Gemini Live voice assistant for small Linux boards.",
    )
    parser.add_argument("--version", action="version", version=f"edgevoice {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Imported here so `edgevoice --help` stays fast and a broken room names itself.
    from edgevoice.bench import cli as bench_cli
    from edgevoice.emulator import cli as emulator_cli
    from edgevoice.security import broker_cli
    from edgevoice.service import commands as service_commands
    from edgevoice.service import diagnostics
    from edgevoice.sim import simulate
    from edgevoice.tools import home_cli

    service_commands.register(subparsers)
    diagnostics.register(subparsers)
    simulate.register(subparsers)
    home_cli.register(subparsers)
    emulator_cli.register(subparsers)
    broker_cli.register(subparsers)
    bench_cli.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
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

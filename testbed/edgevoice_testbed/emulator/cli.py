"""``edgevoice emulator``: run the local Live API emulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

from edgevoice.errors import UserError
from edgevoice_testbed.emulator.faults import parse_fault
from edgevoice_testbed.emulator.scenario import Scenario


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulator", help="run a local Gemini Live API emulator (TLS websocket) for testing",
        description="Serve the Gemini Live API over TLS on loopback, answering from a "
                    "scenario file. Prints the URL and the CA file a client must trust.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--scenario", metavar="FILE",
                        help="scenario JSON (default: the packaged default scenario)")
    parser.add_argument("--ca-out", metavar="FILE",
                        help="where to write the CA certificate (default: a new temporary file)")
    parser.add_argument("--fault", metavar="SPEC", action="append", default=[],
                        help="add a fault, e.g. drop@utterance:2:frame:10 (repeatable)")
    parser.add_argument("--verbose", action="store_true", help="log every connection event")
    parser.set_defaults(handler=run_emulator)


def run_emulator(args: argparse.Namespace) -> int:
    scenario = Scenario.load(args.scenario) if args.scenario else Scenario.default()
    if args.fault:
        try:
            faults = [parse_fault(spec) for spec in args.fault]
        except ValueError as exc:
            raise UserError(str(exc), status=2) from None
        scenario = scenario.model_copy(update={"faults": [*scenario.faults, *faults]})
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: not a port number", status=2)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(_serve(scenario, args.host, args.port, args.ca_out))


async def _serve(scenario: Scenario, host: str, port: int, ca_out: str | None) -> int:
    from edgevoice_testbed.emulator.server import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        emulator = Emulator(scenario, host=host, port=port)
        await emulator.start()
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        if ca_out is None:
            handle, name = tempfile.mkstemp(prefix="edgevoice-emulator-ca-", suffix=".pem")
            os.close(handle)
            ca_path = Path(name)
        else:
            ca_path = Path(ca_out)
        try:
            emulator.write_ca(ca_path)
        except OSError as exc:
            raise UserError(f"cannot write the CA to {ca_path}: {exc.strerror or exc}") from None
        # key=value lines: readable, and easy for a parent process to parse.
        print(f"url={emulator.base_url}", flush=True)
        print(f"ca={ca_path}", flush=True)
        # The REST side (auth_tokens.create), for a token broker's [gemini] base_url.
        print(f"rest_url={emulator.rest_base_url}", flush=True)
        print(f"scenario={scenario.name or '(unnamed)'} voice={scenario.voice} "
              f"pace={scenario.pace}", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await emulator.aclose()
    return 0

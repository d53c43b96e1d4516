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

EPILOG = """\
pointing a client at it:
  google-genai: GOOGLE_GEMINI_BASE_URL=<url> SSL_CERT_FILE=<ca> python your_app.py
  (ephemeral tokens: auth_tokens.create against <rest_url>, api_version v1alpha)
  other clients: wss://HOST:PORT/ws/google.ai.generativelanguage.v1beta.GenerativeService.
  BidiGenerateContent, trusting <ca>; every server message is a binary frame.

what it checks, as the real service does:
  models Google serves only (else 1008 "models/X is not found ..."); unknown setup
  fields (1007 naming the field); fields the model's family refuses (1007); audio
  outside activityStart..activityEnd under manual detection (1007); realtime input
  while a synchronous call is unanswered (2.5: 1008; 3.8 cancels the call; 3.1 cancels
  it 12 s later); client_content after the first model turn on 3.1 (1007).

what it does:
  automatic activity detection unless the setup disables it (energy-based, honouring
  the sensitivity, prefixPaddingMs and silenceDurationMs settings); input and output
  transcription; function calls from spoken and typed prompts, only of functions the
  client declared; each family's calling mode, INTERRUPT timing, usageMetadata and
  resumption; session resumption with handles valid for 2 hours.

faults (KIND[@WHEN]; WHEN is utterance:N:frame:K or reply:N:chunk:K):
  drop  close:CODE  goaway:S[:CODE]  refuse:S  stall  delay:MS
  habits of the real service: quota:S (HTTP 429 at the upgrade)  slow_pong:S
  not_resumable:S (updates every S s)  duplicate_calls  no_turn_complete  silent_turn
  refuse_resume[:CODE] (the next resume closes 1007 at its setup; its session is gone)
  Without WHEN a fault fires when the first session starts; goaway:S S seconds into it;
  refuse_resume refuses the first resume.

The scenario format, every field and fault: docs/scenarios.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emulator", help="run a local Gemini Live API emulator (TLS websocket) for testing",
        description="Serve the Gemini Live API over TLS on loopback for any Live API client "
                    "(this daemon, Google's examples, Pipecat, LiveKit, your own), answering "
                    "from a scenario file as the real service would. Prints the websocket "
                    "URL, the CA file a client must trust and the REST URL (ephemeral "
                    "tokens).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--scenario", metavar="FILE",
                        help="scenario JSON (default: the packaged default scenario)")
    parser.add_argument("--ca-out", metavar="FILE",
                        help="where to write the CA certificate (default: a new temporary file)")
    parser.add_argument("--fault", metavar="SPEC", action="append", default=[],
                        help="add a fault or a habit of the real service, e.g. "
                             "drop@utterance:2:frame:10 or goaway:30 (repeatable; see below)")
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

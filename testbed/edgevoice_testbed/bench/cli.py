"""``edgevoice bench``: EdgeVoice and a quickstart-style reference client, measured side by side.

Both clients run the same scripted conversation (presses, barge-ins, tool calls, a network
drop and a GoAway) against the local Live API emulator, on simulated hardware paced in
real time, each in its own process. The table compares their latencies, CPU, memory and
start-up with the latency and memory goals; ``--json`` keeps every raw sample, the machine and the
configuration; ``--plot`` draws the latency distributions (needs matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from edgevoice.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure latency, CPU and memory against a quickstart-style reference client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every sample and figure as JSON")
    parser.add_argument("--plot", metavar="FILE.png", type=Path, help="draw the latency distributions")
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute), for CI")
    parser.add_argument(
        "--isolated",
        action="store_true",
        help="run the clients one after another instead of side by side (slower, quieter machine)",
    )
    parser.add_argument(
        "--no-probe-overhead",
        action="store_true",
        help="skip the extra EdgeVoice run with its probe off (the measuring's own CPU cost)",
    )
    parser.add_argument(
        "--competitors",
        metavar="N",
        type=int,
        default=2,
        help="CPU-bound processes beside the conversation's second run (default 2; 0 skips that run)",
    )
    parser.add_argument(
        "--idle",
        metavar="SECONDS",
        type=float,
        help="connected silence after the conversation, for the idle CPU (default 60, 10 with --quick)",
    )
    parser.add_argument(
        "--no-patterns", action="store_true", help="skip the servers that send small, bursty or slow chunks"
    )
    parser.add_argument("--keep", metavar="DIR", type=Path, help="keep the workers' files and logs in DIR")
    parser.set_defaults(handler=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    from edgevoice_testbed.bench import report
    from edgevoice_testbed.bench.runner import BenchOptions, run_bench

    if args.competitors < 0 or (args.idle is not None and args.idle < 0):
        raise UserError("--competitors and --idle must not be negative")
    for path in (args.json, args.plot):
        if path is not None and not path.parent.is_dir():
            raise UserError(f"cannot write {path}: the directory {path.parent} does not exist")
    options = BenchOptions(
        quick=args.quick,
        isolated=args.isolated,
        probe_overhead=not args.no_probe_overhead,
        keep_dir=args.keep,
        competitors=args.competitors,
        idle_s=args.idle,
        patterns=not args.no_patterns,
    )

    def log(line: str) -> None:
        print(f"bench: {line}", file=sys.stderr, flush=True)

    document = asyncio.run(run_bench(options, log))
    print(report.table(document))
    if args.json is not None:
        report.write_json(document, args.json)
        print(f"\nJSON: {args.json}")
    if args.plot is not None:
        report.plot(document, args.plot)
        print(f"plot: {args.plot}")
    return 0

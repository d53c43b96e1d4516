"""``edgevoice home``: what the model will see of the home, and why anything is left out.

With Home Assistant discovery it reads the home once (the same way the daemon does) and
prints each entity the model gets (id, name, aliases, area, what it can do) and each
entity left out with the reason; ``--declarations`` adds the function declarations
exactly as they are sent to the Live API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from edgevoice.config import load_settings, resolve_config_path
from edgevoice.tools.model import BackendError, Entity

EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: the home could not be read
CONFIG_HELP = "configuration file (default: $EDGEVOICE_CONFIG or /etc/edgevoice/edgevoice.toml)"


def register(subparsers: argparse._SubParsersAction) -> None:
    home = subparsers.add_parser(
        "home", help="what the model will see of the home, and why entities are left out"
    )
    home.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    home.add_argument(
        "--declarations", action="store_true", help="also print the function declarations"
    )
    home.set_defaults(handler=show_home)


def show_home(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from edgevoice.tools.entities import EntityDirectory

    out = out or sys.stdout  # looked up now: sys.stdout may have been replaced since import
    from edgevoice.tools.toolbox import ToolBox

    settings = load_settings(resolve_config_path(args.config, os.environ)).settings
    home = settings.home
    toolbox = ToolBox.from_settings(home, Path(settings.paths.state_dir))
    backend = toolbox.backend
    left_out: Sequence = ()
    if home.discovers:
        started = time.monotonic()
        try:
            planned = asyncio.run(backend.discover_once())  # type: ignore[attr-defined]
        except BackendError as exc:
            print(f"cannot read the home: {exc}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        took = time.monotonic() - started
        entities: Sequence[Entity] = planned.entities
        left_out = planned.left_out
        print(
            f"Home Assistant at {home.homeassistant.url}: {len(entities)} entities for the "
            f"model, {len(left_out)} left out (read in {took:.2f} s)",
            file=out,
        )
        toolbox.use_entities(entities)
    else:
        entities = tuple(EntityDirectory.from_settings(home))
        print(
            f"{home.backend} backend: {len(entities)} entities listed in the configuration",
            file=out,
        )
    _table(entities, out)
    names = toolbox.registry.declared_names()
    print(f"\nFunctions declared: {', '.join(names) or 'none'}", file=out)
    if not home.allow_locks or not home.allow_alarms:
        withheld = [
            what
            for what, allowed in (("set_lock (home.allow_locks)", home.allow_locks),
                                  ("set_alarm (home.allow_alarms)", home.allow_alarms))
            if not allowed
        ]
        print(f"Not offered by configuration: {', '.join(withheld)}", file=out)
    if left_out:
        print("\nLeft out:", file=out)
        for item in left_out:
            print(f"  {item.entity_id} ({item.name}): {item.reason}", file=out)
    if args.declarations:
        print("\nDeclarations as sent to the model:", file=out)
        for declaration in toolbox.declarations():
            print(f"\n{declaration['name']}:\n{declaration['description']}", file=out)
    return 0


def _table(entities: Sequence[Entity], out: TextIO) -> None:
    rows = [("ENTITY", "NAME", "ALIASES", "AREA", "CAN")]
    for entity in entities:
        area = entity.room or ""
        if entity.room_aliases:
            area += f" (also {', '.join(entity.room_aliases)})"
        if entity.floor:
            area += f", {entity.floor}"
        rows.append(
            (
                entity.id,
                entity.name,
                ", ".join(entity.aliases),
                area,
                ", ".join(entity.abilities) or "-",
            )
        )
    widths = [min(40, max(len(row[i]) for row in rows)) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        print("  ".join([*cells, row[4]]).rstrip(), file=out)


__all__ = ["register", "show_home"]

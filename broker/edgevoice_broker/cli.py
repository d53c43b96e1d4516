"""``edgevoice token-broker``: run the broker, and enrol or revoke devices."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from edgevoice.errors import UserError

CONFIG_HELP = "broker configuration (default: $EDGEVOICE_BROKER_CONFIG or /etc/edgevoice/token-broker.toml)"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "token-broker",
        help="run the ephemeral-token broker for devices (on a home server), or manage its devices",
        description="Without an ACTION: serve short-lived Gemini Live tokens over HTTPS to enrolled "
        "devices. The Gemini API key stays on this machine (GEMINI_API_KEY or the credential "
        "gemini-api-key); devices hold only their own secret.",
    )
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    parser.set_defaults(handler=run_broker)
    actions = parser.add_subparsers(dest="broker_command", metavar="ACTION")

    add = actions.add_parser(
        "add-device", help="enrol a device: print its new secret once and store only its hash"
    )
    add.add_argument("device_id", metavar="NAME", help="the device's id (its auth.device_id)")
    add.add_argument("--config", metavar="FILE", help=CONFIG_HELP, default=argparse.SUPPRESS)
    add.set_defaults(handler=add_device_command)

    revoke = actions.add_parser("revoke-device", help="refuse all further tokens to a device")
    revoke.add_argument("device_id", metavar="NAME")
    revoke.add_argument("--config", metavar="FILE", help=CONFIG_HELP, default=argparse.SUPPRESS)
    revoke.set_defaults(handler=revoke_device_command)

    listing = actions.add_parser("list-devices", help="list the enrolled devices")
    listing.add_argument("--config", metavar="FILE", help=CONFIG_HELP, default=argparse.SUPPRESS)
    listing.set_defaults(handler=list_devices_command)


def run_broker(args: argparse.Namespace) -> int:
    from edgevoice_broker.broker import serve
    from edgevoice_broker.config import load_broker_settings, read_api_key, resolve_broker_config

    loaded = load_broker_settings(resolve_broker_config(args.config, os.environ))
    api_key = read_api_key(os.environ)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await serve(loaded, api_key, stop)
        except OSError as exc:
            server = loaded.settings.server
            raise UserError(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None

    asyncio.run(main())
    return 0


def add_device_command(args: argparse.Namespace) -> int:
    from edgevoice.security.settings import DEVICE_SECRET_CREDENTIAL
    from edgevoice_broker.config import add_device, resolve_broker_config

    path = resolve_broker_config(args.config, os.environ)
    secret = add_device(path, args.device_id)
    # The secret goes to stdout alone, so `... add-device kitchen > secret` captures just it;
    # the instructions go to stderr.
    print(secret, flush=True)
    print(
        f"Enrolled device {args.device_id} in {path}; its secret is above and is shown only once.\n"
        f"On the device: store it as the credential {DEVICE_SECRET_CREDENTIAL} (mode 600, e.g.\n"
        f"/etc/credstore/{DEVICE_SECRET_CREDENTIAL} with LoadCredential= in the unit) and set\n"
        f'[auth] mode = "token_broker", device_id = "{args.device_id}", broker_url = "https://...".\n'
        "A running broker picks the new device up at once.",
        file=sys.stderr,
    )
    return 0


def revoke_device_command(args: argparse.Namespace) -> int:
    from edgevoice_broker.config import resolve_broker_config, set_revoked

    path = resolve_broker_config(args.config, os.environ)
    set_revoked(path, args.device_id, True)
    print(f"device {args.device_id} is revoked; a running broker refuses it from its next request on")
    return 0


def list_devices_command(args: argparse.Namespace) -> int:
    from edgevoice_broker.config import load_broker_settings, resolve_broker_config

    loaded = load_broker_settings(resolve_broker_config(args.config, os.environ))
    for device in loaded.settings.devices:
        print(f"{device.id}\t{'revoked' if device.revoked else 'active'}")
    if not loaded.settings.devices:
        print("no devices enrolled (add one with: edgevoice token-broker add-device NAME)", file=sys.stderr)
    return 0


__all__ = ["register"]

"""Notice when the network comes back, so the device reconnects at once, not at its next
backoff step.

The kernel announces link, address and route changes on a NETLINK_ROUTE socket. Any such
change while the device is offline is worth an immediate connection attempt: the Wi-Fi
reassociated, DHCP handed out an address, the default route returned. Without this, a
device whose backoff had reached its cap would wait up to that cap after the network is
back. Where netlink is not available (a sandbox that forbids AF_NETLINK), the backoff
alone still brings the device back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

# <linux/rtnetlink.h> multicast groups and message types.
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
INTERESTING = frozenset({RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE})
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
# Changes come in bursts (link up, then address, then route): one notice per burst.
SETTLE_S = 0.1


def message_types(datagram: bytes) -> list[int]:
    """The nlmsghdr types in one netlink datagram (malformed tails are ignored)."""
    types = []
    offset = 0
    while offset + _HEADER.size <= len(datagram):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(datagram, offset)
        if length < _HEADER.size:
            break
        types.append(kind)
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return types


class NetworkWatch:
    """Calls ``on_change()`` on the event loop after a burst of network changes."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> bool:
        """Start watching; False (and a debug line) where netlink is not allowed."""
        try:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, socket.NETLINK_ROUTE
            )
            sock.bind(
                (
                    0,
                    RTMGRP_LINK
                    | RTMGRP_IPV4_IFADDR
                    | RTMGRP_IPV4_ROUTE
                    | RTMGRP_IPV6_IFADDR
                    | RTMGRP_IPV6_ROUTE,
                )
            )
        except OSError as exc:
            log.debug("not watching the network (netlink unavailable: %s)", exc)
            return False
        self._socket = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)
        return True

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._socket is not None and self._loop is not None:
            self._loop.remove_reader(self._socket.fileno())
            self._socket.close()
        self._socket = None

    def _readable(self) -> None:
        assert self._socket is not None and self._loop is not None
        interesting = False
        while True:
            try:
                datagram = self._socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ENOBUFS: the kernel dropped some; something changed
                log.debug("netlink: %s", exc)
                interesting = True
                break
            interesting = interesting or any(kind in INTERESTING for kind in message_types(datagram))
        if interesting and self._pending is None:
            self._pending = self._loop.call_later(SETTLE_S, self._notify)

    def _notify(self) -> None:
        self._pending = None
        self._on_change()

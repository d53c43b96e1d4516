"""Waiting on a running daemon without sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from edgevoice.service.daemon import Daemon


class Watch:
    """Wakes a waiting test whenever the daemon has handled an event."""

    def __init__(self, daemon: Daemon) -> None:
        self._changed = asyncio.Event()
        daemon.watchers.append(lambda _event: self._changed.set())

    async def until(self, predicate: Callable[[], bool], within: float = 15.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

"""The Home Assistant backend: one websocket, a live cache, discovery that keeps up.

A background task owns the connection: it connects (retrying with backoff while HA is
unreachable or restarting), subscribes to state changes and registry updates, reads the
home (:mod:`.discovery`) and replans it whenever a registry or an entity's name changes.
Listeners hear about a new plan (``on_home_changed``) and about problems that need a
person (``on_problem``: the token refused; ``None`` once solved or when the problem is one
that retrying solves, like HA restarting).

Commands go over the same websocket (:mod:`.services`); ``read_state`` answers from the
live cache (:mod:`.live_cache`). Nothing here raises into the daemon: failures become
:class:`BackendError` sentences for the model, or problems for the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from edgevoice.core.backoff import Backoff
from edgevoice.tools.backends.homeassistant.connection import (
    CommandFailed,
    ConnectionLost,
    HomeAssistantConnection,
    TokenRejected,
)
from edgevoice.tools.backends.homeassistant.discovery import (
    HomeSnapshot,
    PlannedHome,
    fetch_snapshot,
    plan_home,
)
from edgevoice.tools.backends.homeassistant.live_cache import EntityRemoved, LiveStates
from edgevoice.tools.backends.homeassistant.services import (
    explain_failure,
    service_call,
    target_reached,
)
from edgevoice.tools.backends.homeassistant.state_shapes import from_home_assistant
from edgevoice.tools.model import BackendError, Command, Entity
from edgevoice.tools.settings import EntitySettings, HomeAssistantSettings

log = logging.getLogger(__name__)

REGISTRY_EVENTS = (
    "entity_registry_updated",
    "device_registry_updated",
    "area_registry_updated",
    "floor_registry_updated",
)


class HomeAssistantBackend:
    name = "homeassistant"

    def __init__(
        self,
        listed: Iterable[EntitySettings],
        settings: HomeAssistantSettings,
        token: str,
        *,
        discover: bool,
        temperature_unit: str = "C",
        token_source: str = "the credential homeassistant-token",
    ):
        self._listed = tuple(listed)
        self._settings = settings
        self._token = SecretStr(token)
        self._token_source = token_source
        self.discovers = discover
        self._temperature_unit = temperature_unit
        self.home: PlannedHome | None = (
            None if discover else plan_home(HomeSnapshot({}, {}), self._listed, temperature_unit)
        )
        self.problem: str | None = None
        self.on_home_changed: Callable[[PlannedHome], None] | None = None
        self.on_problem: Callable[[str | None], None] | None = None
        self._states = LiveStates()
        self._connection: HomeAssistantConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Event | None = None
        self._refresh_wanted: asyncio.Event | None = None
        self.discovery_s: float | None = None
        # Set while connected with the home read; cleared when the connection ends.
        self.connected = asyncio.Event()

    def __repr__(self) -> str:
        return f"HomeAssistantBackend(url={self._settings.url!r}, token=SecretStr('**********'))"

    # -- lifetime -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Start connecting; wait (at most ``request_timeout_s``) for the first attempt so the
        first session knows the home. Never raises: an unreachable HA is retried."""
        if self._task is not None:
            return
        self._first_attempt = asyncio.Event()
        self._refresh_wanted = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="home-assistant")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), self._settings.request_timeout_s)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def discover_once(self) -> PlannedHome:
        """Connect, read the home once and disconnect (for ``edgevoice home``)."""
        connection = self._new_connection()
        try:
            await connection.open()
            snapshot = await fetch_snapshot(connection)
        except TokenRejected as exc:
            raise BackendError(self._token_text(exc)) from None
        except (ConnectionLost, CommandFailed, TimeoutError) as exc:
            raise BackendError(str(exc) or "Home Assistant did not answer") from None
        finally:
            await connection.close()
        return plan_home(snapshot, self._listed, self._temperature_unit)

    # -- what the runner calls ----------------------------------------------------------------

    async def execute(self, command: Command) -> Mapping[str, Any]:
        entity = command.entity
        connection = self._usable_connection()
        message = service_call(command)
        try:
            await connection.command(
                "call_service", timeout_s=self._settings.request_timeout_s, **message
            )
        except CommandFailed as exc:
            raise BackendError(explain_failure(exc, command)) from None
        except ConnectionLost:
            raise BackendError(
                f"lost the connection to Home Assistant while asking {entity.name}; "
                "it may or may not have changed"
            ) from None
        except TimeoutError:
            raise BackendError(
                f"Home Assistant did not confirm within {self._settings.request_timeout_s:g} "
                f"seconds; {entity.name} may or may not have changed"
            ) from None
        try:
            raw = await self._states.wait_for(
                entity.id, target_reached(command), self._settings.settle_timeout_s
            )
        except EntityRemoved:
            raise BackendError(f"{entity.name} was removed from Home Assistant") from None
        assert raw is not None
        state = from_home_assistant(entity, raw)
        if str(raw.get("state")) == "jammed":
            raise BackendError(f"Home Assistant reports that {entity.name} is jammed")
        if not target_reached(command)(raw):
            state["pending"] = (
                f"still on its way after {self._settings.settle_timeout_s:g} seconds"
            )
        return state

    async def read_state(self, entity: Entity) -> Mapping[str, Any]:
        if self._connection is None or not self._connection.is_open:
            raise BackendError(self._unreachable_text())
        raw = self._states.get(entity.id)
        if raw is None:
            raise BackendError(f"Home Assistant has no entity {entity.id} ({entity.name})")
        return from_home_assistant(entity, raw)

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        entities = self.home.entities if self.home is not None else ()
        return {
            entity.id: from_home_assistant(entity, raw)
            for entity in entities
            if (raw := self._states.get(entity.id)) is not None
        }

    # -- the connection task ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = Backoff(self._settings.reconnect_initial_s, self._settings.reconnect_max_s)
        failures = 0
        assert self._first_attempt is not None
        while True:
            connection = self._new_connection()
            try:
                await connection.open()
                self._connection = connection
                await self._follow(connection)
                failures = 0
                why = await connection.closed()
                self._set_problem(f"the connection to Home Assistant ended ({why}); reconnecting")
            except TokenRejected as exc:
                self._set_problem(self._token_text(exc), needs_person=True)
            except (ConnectionLost, TimeoutError) as exc:
                self._set_problem(
                    f"Home Assistant is unreachable ({exc or 'no answer'}); retrying"
                )
            except CommandFailed as exc:
                self._set_problem(f"Home Assistant refused to describe the home: {exc.message}")
            finally:
                self.connected.clear()
                self._connection = None
                await connection.close()
                self._first_attempt.set()
            delay = backoff.delay(failures)
            failures += 1
            await asyncio.sleep(delay)

    async def _follow(self, connection: HomeAssistantConnection) -> None:
        """Subscribe, read the home, then keep it current until the connection ends."""
        assert self._refresh_wanted is not None and self._first_attempt is not None
        started = time.monotonic()
        await connection.subscribe("subscribe_events", self._on_state_event, event_type="state_changed")
        for event_type in REGISTRY_EVENTS:
            with contextlib.suppress(CommandFailed):  # floors are newer than some HA versions
                await connection.subscribe(
                    "subscribe_events", self._on_registry_event, event_type=event_type
                )
        await self._refresh(connection)
        self.discovery_s = time.monotonic() - started
        log.info(
            "Home Assistant %s: %d entities for the model, %d left out (read in %.2f s)",
            connection.ha_version or "",
            len(self.home.entities) if self.home else 0,
            len(self.home.left_out) if self.home else 0,
            self.discovery_s,
        )
        self._set_problem(None)
        self.connected.set()
        self._first_attempt.set()
        while connection.is_open:
            closed = asyncio.ensure_future(connection.closed())
            wanted = asyncio.ensure_future(self._refresh_wanted.wait())
            try:
                await asyncio.wait({closed, wanted}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closed.cancel()
                wanted.cancel()
            if not connection.is_open:
                return
            # A burst of registry events (a rename touches several) becomes one refresh.
            await asyncio.sleep(self._settings.refresh_delay_s)
            self._refresh_wanted.clear()
            try:
                await self._refresh(connection)
            except (ConnectionLost, TimeoutError):
                return
            except CommandFailed as exc:
                log.warning("re-reading the home from Home Assistant failed: %s", exc.message)

    async def _refresh(self, connection: HomeAssistantConnection) -> None:
        snapshot = await fetch_snapshot(connection, on_states=self._states.replace_all)
        if not self.discovers:
            return
        home = plan_home(snapshot, self._listed, self._temperature_unit)
        if self.home is None or home != self.home:
            self.home = home
            if self.on_home_changed is not None:
                try:
                    self.on_home_changed(home)
                except Exception:
                    log.exception("applying the new home from Home Assistant failed")

    def _on_state_event(self, event: Mapping[str, Any]) -> None:
        data = event.get("data")
        if not isinstance(data, Mapping):
            return
        applied = self._states.apply_event(data)
        if applied is not None and applied[1] and self.discovers and self._refresh_wanted:
            self._refresh_wanted.set()

    def _on_registry_event(self, _event: Mapping[str, Any]) -> None:
        if self._refresh_wanted is not None:
            self._refresh_wanted.set()

    # -- helpers ------------------------------------------------------------------------------

    def _new_connection(self) -> HomeAssistantConnection:
        return HomeAssistantConnection(
            self._settings.url,
            self._token,
            ssl_context=self._ssl(),
            timeout_s=self._settings.request_timeout_s,
        )

    def _usable_connection(self) -> HomeAssistantConnection:
        connection = self._connection
        if connection is None or not connection.is_open:
            raise BackendError(self._unreachable_text())
        return connection

    def _unreachable_text(self) -> str:
        why = self.problem or f"no answer yet from {self._settings.url}"
        return f"Home Assistant is not reachable right now: {why}"

    def _token_text(self, exc: Exception) -> str:
        return f"{exc}; put a valid long-lived access token in {self._token_source}"

    def _set_problem(self, problem: str | None, *, needs_person: bool = False) -> None:
        """Log a change of problem; tell ``on_problem`` about those a person must solve (the
        token) and when they are over. HA restarting or unreachable is retried quietly."""
        if problem == self.problem:
            return
        self.problem = problem
        if problem is not None:
            log.log(logging.ERROR if needs_person else logging.WARNING, "%s", problem)
        else:
            log.info("Home Assistant is connected")
        if self.on_problem is not None:
            try:
                self.on_problem(problem if needs_person else None)
            except Exception:
                log.exception("reporting a Home Assistant problem failed")

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._settings.ca_file is not None:
            return ssl.create_default_context(cafile=str(self._settings.ca_file))
        return self._settings.verify_tls


__all__ = ["HomeAssistantBackend"]

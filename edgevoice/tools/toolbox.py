"""The smart-home tools as the daemon sees them: declarations in, calls out, outcomes back.

::

    toolbox = ToolBox.from_settings(settings.home, state_dir=settings.paths.state_dir)
    link = LiveLink(..., function_declarations=toolbox.declarations())  # plain data
    async with toolbox:
        toolbox.start(function_call, on_done=lambda outcome: queue.put_nowait(outcome))
        toolbox.cancel(cancellation.ids)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from edgevoice.core.tool_scheduling import Scheduling, SchedulingPolicy
from edgevoice.sections import ConfigError, read_credential_file
from edgevoice.tools.backends.base import HomeBackend
from edgevoice.tools.confirmation import ConfirmationGuard
from edgevoice.tools.entities import EntityDirectory
from edgevoice.tools.functions import FunctionRegistry
from edgevoice.tools.runner import OnDone, ToolRunner
from edgevoice.tools.settings import HomeSettings
from edgevoice.tools.states import describe

log = logging.getLogger(__name__)

CONFIRMATION_CREDENTIAL = "home-confirmation-code"
HOMEASSISTANT_TOKEN_CREDENTIAL = "homeassistant-token"
HOMEASSISTANT_TOKEN_ENV = "HOMEASSISTANT_TOKEN"
MQTT_PASSWORD_CREDENTIAL = "mqtt-password"
MQTT_PASSWORD_ENV = "MQTT_PASSWORD"


class ToolBox:
    """Function declarations, a runner and a backend for one ``[home]`` configuration."""

    def __init__(
        self,
        home: HomeSettings,
        registry: FunctionRegistry,
        backend: HomeBackend,
        runner: ToolRunner,
        guard: ConfirmationGuard | None = None,
    ):
        self._home = home
        self._registry = registry
        self._backend = backend
        self._runner = runner
        self._guard = guard or ConfirmationGuard(None)
        self._open = False
        # Called (on the loop) when the functions to declare have changed: the home learned
        # from Home Assistant changed (a new entity, name or alias, one no longer exposed).
        self.on_declarations_changed: Callable[[], None] | None = None
        # Called with a sentence when the home needs a person (Home Assistant refused the
        # token), and with None once that is over; retrying solves the rest on its own.
        self.on_problem: Callable[[str | None], None] | None = None
        self.problem: str | None = None
        if getattr(backend, "discovers", False):
            backend.on_home_changed = self._home_changed  # type: ignore[attr-defined]
        if hasattr(backend, "on_problem"):
            backend.on_problem = self._problem  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        entities = len(self._registry.directory)
        return f"ToolBox(backend={self._backend.name!r}, entities={entities}, open={self._open})"

    @classmethod
    def from_settings(
        cls,
        home: HomeSettings,
        state_dir: Path,
        environ: Mapping[str, str] | None = None,
    ) -> ToolBox:
        """Build everything from the ``[home]`` section. Secrets (confirmation code, Home
        Assistant token, MQTT password) are read here from ``$CREDENTIALS_DIRECTORY`` or
        the environment. Raises :class:`edgevoice.config.ConfigError` when one is missing
        or unsafe; does no network I/O (that happens in ``async with``)."""
        environ = os.environ if environ is None else environ
        directory = EntityDirectory.from_settings(home)
        code, _ = _secret(environ, CONFIRMATION_CREDENTIAL, None)
        if code is None and home.confirmation_code is not None:
            code = home.confirmation_code.get_secret_value()
        guard = ConfirmationGuard(
            code, max_failures=home.confirmation_max_failures, lockout_s=home.confirmation_lockout_s
        )
        if (home.allow_locks or home.allow_alarms) and not guard.configured:
            log.warning(
                "no confirmation code is set: unlocking and disarming by voice will be refused"
            )
        registry = FunctionRegistry(
            home,
            directory,
            guard,
            unavailable="Home Assistant has not been reached yet" if home.discovers else None,
        )
        backend = _backend(home, directory, Path(state_dir), environ)
        policy = SchedulingPolicy(
            on_success={name: Scheduling(value) for name, value in home.scheduling.items()},
            on_failure={name: Scheduling(value) for name, value in home.failure_scheduling.items()},
        )
        runner = ToolRunner(
            registry,
            backend,
            policy,
            call_timeout_s=home.call_timeout_s,
            function_timeout_s=home.function_timeout_s,
            max_pending_calls=home.max_pending_calls,
        )
        return cls(home, registry, backend, runner, guard)

    @property
    def backend(self) -> HomeBackend:
        return self._backend

    @property
    def registry(self) -> FunctionRegistry:
        return self._registry

    def declarations(self) -> list[dict[str, Any]]:
        """Plain declarations of the functions this configuration offers (the Live door
        makes them NON_BLOCKING where the model's family allows)."""
        return self._registry.declarations()

    async def __aenter__(self) -> ToolBox:
        await self._backend.open()
        self._open = True
        discovered = getattr(self._backend, "home", None) if self._home.discovers else None
        if discovered is not None:
            self.use_entities(discovered.entities)
        if self._home.entities is None and self._home.backend == "simulated" and self._home.enabled:
            log.warning(
                "no home.entities configured: the model controls the simulated demo home; "
                "nothing real will be switched"
            )
        log.info(
            "home control ready: %s backend, %d entities, functions: %s",
            self._backend.name,
            len(self._registry.directory),
            ", ".join(self._registry.declared_names()) or "none",
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        try:
            await self._runner.aclose()
        finally:
            await self._backend.close()

    def _home_changed(self, home: Any) -> None:
        self.use_entities(home.entities)

    def use_entities(self, entities: Iterable[Any]) -> None:
        """Offer the model these entities from now on (calls already running keep theirs);
        ``on_declarations_changed`` hears about it when the declarations differ."""
        before = self.declarations()
        self._registry = FunctionRegistry(self._home, EntityDirectory(entities), self._guard)
        self._runner.use_registry(self._registry)
        if self.declarations() != before:
            log.info(
                "the home changed: %d entities, functions: %s",
                len(self._registry.directory),
                ", ".join(self._registry.declared_names()) or "none",
            )
            if self.on_declarations_changed is not None:
                self.on_declarations_changed()

    def _problem(self, problem: str | None) -> None:
        self.problem = problem
        if self.on_problem is not None:
            self.on_problem(problem)

    def start(self, call: Any, on_done: OnDone) -> None:
        """Run a function call (id, name, args) in the background; ``on_done`` gets its outcome on the
        loop, exactly once unless the call is cancelled. Never blocks, never raises."""
        if not self._open:
            self._runner.reject(call, on_done, "home control is not running")
            return
        self._runner.start(call, on_done)

    def cancel(self, ids: Iterable[str]) -> list[str]:
        return self._runner.cancel(ids)

    @property
    def pending(self) -> frozenset[str]:
        return self._runner.pending

    def describe_state(self) -> str:
        """The home as last known, one line per entity (no I/O)."""
        known = self._backend.known_states()
        lines = [f"Home ({self._backend.name} backend):"]
        for entity in self._registry.directory:
            state = known.get(entity.id)
            text = (
                describe(entity, state)
                if state is not None
                else f"{entity.name}: state not known yet."
            )
            lines.append(f"  {text}" + (f"  [{entity.room}]" if entity.room else ""))
        return "\n".join(lines)


def _secret(
    environ: Mapping[str, str], credential: str, variable: str | None
) -> tuple[str | None, str]:
    """A secret from the environment variable, else from the systemd credential; and where
    it came from, in words (for messages that must name it without showing it)."""
    if variable and environ.get(variable, "").strip():
        return environ[variable].strip(), f"the environment variable {variable}"
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        path = Path(directory) / credential
        if path.exists():
            return read_credential_file(path) or None, f"the credential {credential}"
    return None, f"the credential {credential}"


def _backend(
    home: HomeSettings, directory: EntityDirectory, state_dir: Path, environ: Mapping[str, str]
) -> HomeBackend:
    match home.backend:
        case "simulated":
            from edgevoice.tools.backends.simulated import SimulatedHome

            return SimulatedHome(directory, home.simulated, state_dir / home.simulated.state_file)
        case "homeassistant":
            from edgevoice.tools.backends.homeassistant import HomeAssistantBackend

            token, source = _secret(environ, HOMEASSISTANT_TOKEN_CREDENTIAL, HOMEASSISTANT_TOKEN_ENV)
            if not token:
                raise ConfigError(
                    [
                        "home.backend = homeassistant needs a long-lived access token: put it in "
                        f"the credential {HOMEASSISTANT_TOKEN_CREDENTIAL} (LoadCredential=) or "
                        f"the environment variable {HOMEASSISTANT_TOKEN_ENV}"
                    ]
                )
            return HomeAssistantBackend(
                home.entities or (),
                home.homeassistant,
                token,
                discover=home.discovers,
                temperature_unit=home.temperature_unit,
                token_source=source,
            )
        case "mqtt":
            from edgevoice.tools.backends.mqtt import MqttBackend

            password, _ = _secret(environ, MQTT_PASSWORD_CREDENTIAL, MQTT_PASSWORD_ENV)
            return MqttBackend(directory, home.mqtt, password=password)
    raise AssertionError(home.backend)  # pragma: no cover - Literal exhausts the cases


__all__ = ["ToolBox"]

"""An in-memory home: devices that take time, sometimes fail, and remember their state.

Each call waits the entity's latency (``simulated.entity_latency_s`` or ``latency_s``), then
fails if the entity is in ``always_fail`` or the seeded dice say so (``failure_rate``), else
changes the state. The dice are rolled when the call starts, so a seed gives the same
failures whatever the latencies.

State is kept in ``<state_dir>/home-state.json``, written atomically (temporary file in the
same directory, fsync, rename) off the event loop after every change and read back at
start. An unreadable file is moved aside to ``home-state.json.corrupt`` and the home starts
from defaults; entries of entities no longer configured are kept, not dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgevoice.atomic_file import write_atomically
from edgevoice.tools.model import BackendError, Command, Entity
from edgevoice.tools.settings import SimulatedHomeSettings
from edgevoice.tools.states import WHITE_TEMPERATURES_K, default_state

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1


class SimulatedHome:
    name = "simulated"

    def __init__(
        self,
        entities: Iterable[Entity],
        settings: SimulatedHomeSettings | None = None,
        state_path: Path | None = None,
    ):
        self._settings = settings or SimulatedHomeSettings()
        self._entities = {entity.id: entity for entity in entities}
        self._state_path = state_path if self._settings.persist else None
        self._rng = random.Random(self._settings.seed)
        self._states: dict[str, dict[str, Any]] = {
            entity.id: _initial_state(entity) for entity in self._entities.values()
        }
        self._foreign: dict[str, Any] = {}  # stored entries of entities not configured now
        self._save_lock = asyncio.Lock()
        self._saves: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SimulatedHome(entities={len(self._entities)}, state_path={self._state_path})"

    @property
    def state_path(self) -> Path | None:
        return self._state_path

    async def open(self) -> None:
        if self._state_path is not None:
            await asyncio.to_thread(self._load)

    async def close(self) -> None:
        if self._saves:
            await asyncio.gather(*self._saves, return_exceptions=True)

    async def execute(self, command: Command) -> Mapping[str, Any]:
        entity = self._known(command.entity)
        fails = self._roll(entity)
        await asyncio.sleep(self._latency(entity))
        if fails:
            raise BackendError(f"{entity.name} did not respond (simulated failure)")
        self._states[entity.id] = apply_command(command, self._states[entity.id])
        # Shielded: a call cancelled now has already changed the house; the file must follow.
        await asyncio.shield(self._schedule_save())
        return dict(self._states[entity.id])

    async def read_state(self, entity: Entity) -> Mapping[str, Any]:
        entity = self._known(entity)
        fails = self._roll(entity)
        await asyncio.sleep(self._latency(entity))
        if fails:
            raise BackendError(f"{entity.name} did not answer (simulated failure)")
        return dict(self._states[entity.id])

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        return {entity_id: dict(state) for entity_id, state in self._states.items()}

    # -- internals ----------------------------------------------------------------------------

    def _known(self, entity: Entity) -> Entity:
        if entity.id not in self._entities:
            raise BackendError(f"{entity.name} is not part of the simulated home")
        return self._entities[entity.id]

    def _roll(self, entity: Entity) -> bool:
        if entity.id in self._settings.always_fail:
            return True
        return self._settings.failure_rate > 0 and self._rng.random() < self._settings.failure_rate

    def _latency(self, entity: Entity) -> float:
        return self._settings.entity_latency_s.get(entity.id, self._settings.latency_s)

    def _schedule_save(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._save())
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)
        return task

    async def _save(self) -> None:
        if self._state_path is None:
            return
        # The snapshot is taken under the lock, so a later write never carries older state.
        async with self._save_lock:
            document = {
                "version": STATE_FORMAT_VERSION,
                "entities": {**self._foreign, **{k: dict(v) for k, v in self._states.items()}},
            }
            try:
                await asyncio.to_thread(write_json_atomically, self._state_path, document)
            except OSError as exc:
                log.warning("cannot save the simulated home to %s: %s", self._state_path, exc)

    def _load(self) -> None:
        path = self._state_path
        assert path is not None
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s); the simulated home starts from defaults", path, exc)
            return
        try:
            document = json.loads(raw.decode("utf-8"))
            if not isinstance(document, dict) or document.get("version") != STATE_FORMAT_VERSION:
                raise ValueError(f"expected a version {STATE_FORMAT_VERSION} document")
            stored = document["entities"]
            if not isinstance(stored, dict):
                raise ValueError("'entities' is not an object")
        except (ValueError, KeyError) as exc:
            aside = path.with_name(path.name + ".corrupt")
            log.warning(
                "%s is not a valid home state (%s); moved it to %s and starting from defaults",
                path,
                exc,
                aside,
            )
            with contextlib.suppress(OSError):
                path.replace(aside)
            return
        for entity_id, state in stored.items():
            entity = self._entities.get(entity_id)
            if entity is None:
                self._foreign[entity_id] = state
            elif isinstance(state, dict):
                base = self._states[entity_id]
                kept = {k: v for k, v in state.items() if k in base and _same_kind(v, base[k])}
                refused = sorted(k for k in state if k in base and k not in kept)
                if refused:
                    log.warning(
                        "ignoring stored %s of %s in %s: not the right type; using %s",
                        ", ".join(f"{k}={state[k]!r}" for k in refused),
                        entity_id,
                        path,
                        ", ".join(f"{k}={base[k]!r}" for k in refused),
                    )
                self._states[entity_id] = {**base, **kept}
            else:
                log.warning("ignoring the stored state of %s in %s: not an object", entity_id, path)
        log.info("simulated home state loaded from %s", path)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a stored value can stand where the default stands (a number for a number,
    text for text): a hand-edited or foreign file must not put "bright" in a brightness."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int | float):
        return isinstance(value, int | float) and math.isfinite(value)
    if default is None:
        return value is None or isinstance(value, str)
    return isinstance(value, type(default))


def _initial_state(entity: Entity) -> dict[str, Any]:
    state = default_state(entity)
    if entity.settings is not None:
        state.update(entity.settings.initial_state)
    return state


def apply_command(command: Command, state: Mapping[str, Any]) -> dict[str, Any]:
    """The state after a Home Assistant style service call (pure)."""
    new = dict(state)
    data = command.data
    match command.domain, command.service:
        case "light", "turn_on":
            new["state"] = "on"
            if "brightness_pct" in data:
                new["brightness"] = int(data["brightness_pct"])
            if "color_name" in data:
                new["color"] = data["color_name"]
            elif "color_temp_kelvin" in data:
                kelvin = data["color_temp_kelvin"]
                new["color"] = min(
                    WHITE_TEMPERATURES_K, key=lambda name: abs(WHITE_TEMPERATURES_K[name] - kelvin)
                )
        case "light", "turn_off":
            new["state"] = "off"
        case "switch" | "fan" | "humidifier", "turn_on" | "turn_off":
            new["state"] = "on" if command.service == "turn_on" else "off"
        case "climate", "set_temperature":
            new["target_temperature"] = float(data["temperature"])
            if "hvac_mode" in data:
                new["hvac_mode"] = data["hvac_mode"]
        case "cover", "open_cover":
            new.update(state="open", position=100)
        case "cover", "close_cover":
            new.update(state="closed", position=0)
        case "cover", "stop_cover":
            new["state"] = "stopped"
        case "cover", "set_cover_position":
            position = int(data["position"])
            new.update(state="closed" if position == 0 else "open", position=position)
        case "scene", "turn_on":
            new["state"] = "activated"
        case "media_player", "media_play":
            new["state"] = "playing"
        case "media_player", "media_pause":
            new["state"] = "paused"
        case "media_player", "media_stop":
            new["state"] = "idle"
        case "media_player", "media_next_track" | "media_previous_track":
            new["state"] = "playing"
        case "media_player", "volume_set":
            new["volume"] = round(float(data["volume_level"]) * 100)
        case "lock", "lock":
            new["state"] = "locked"
        case "lock", "unlock":
            new["state"] = "unlocked"
        case "alarm_control_panel", service if service.startswith("alarm_"):
            new["state"] = (
                "disarmed"
                if service == "alarm_disarm"
                else service.removeprefix("alarm_").replace("arm_", "armed_")
            )
        case domain, service:
            raise BackendError(f"the simulated home cannot do {domain}.{service}")
    return new


def write_json_atomically(path: Path, document: Any) -> None:
    """Write ``document`` so that ``path`` holds either the old or the new file, never half."""
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_atomically(path, text.encode("utf-8"))


__all__ = ["STATE_FORMAT_VERSION", "SimulatedHome", "apply_command", "write_json_atomically"]

"""Home Assistant over its REST API (aiohttp, one session per daemon).

A command is ``POST /api/services/<domain>/<service>`` with ``{"entity_id": ..., **data}``;
Home Assistant answers with the states that changed during the call. When the entity is not
among them, its state is read with ``GET /api/states/<entity_id>``, which is also how
``get_state`` works. The long-lived access token travels as ``Authorization: Bearer``; it is
held as a ``SecretStr`` and never logged, put in an error or shown by ``repr``.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from pydantic import SecretStr

from edgevoice.tools.model import BackendError, Command, Entity
from edgevoice.tools.settings import HomeAssistantSettings
from edgevoice.tools.states import nearest_color

log = logging.getLogger(__name__)


class HomeAssistantBackend:
    name = "homeassistant"

    def __init__(self, entities: Iterable[Entity], settings: HomeAssistantSettings, token: str):
        self._entities = {entity.id: entity for entity in entities}
        self._settings = settings
        self._token = SecretStr(token)
        self._session: aiohttp.ClientSession | None = None
        self._known: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"HomeAssistantBackend(url={self._settings.url!r}, token=SecretStr('**********'))"

    async def open(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {self._token.get_secret_value()}"},
            timeout=aiohttp.ClientTimeout(total=self._settings.request_timeout_s),
            connector=aiohttp.TCPConnector(ssl=self._ssl()),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def execute(self, command: Command) -> Mapping[str, Any]:
        entity = command.entity
        changed = await self._request(
            "POST",
            f"/api/services/{command.domain}/{command.service}",
            entity,
            body={"entity_id": entity.id, **command.data},
            what=f"the service {command.domain}.{command.service}",
        )
        if isinstance(changed, list):
            for raw in changed:
                if isinstance(raw, Mapping) and raw.get("entity_id") == entity.id:
                    return self._remember(entity, raw)
        # Not among the changed states (already in that state, or slow to report): read it.
        return await self.read_state(entity)

    async def read_state(self, entity: Entity) -> Mapping[str, Any]:
        raw = await self._request(
            "GET", f"/api/states/{entity.id}", entity, what=f"the entity {entity.id}"
        )
        if not isinstance(raw, Mapping):
            raise BackendError(f"Home Assistant sent an unreadable state for {entity.name}")
        return self._remember(entity, raw)

    def known_states(self) -> Mapping[str, Mapping[str, Any]]:
        return {entity_id: dict(state) for entity_id, state in self._known.items()}

    # -- internals ----------------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        if self._settings.ca_file is not None:
            return ssl.create_default_context(cafile=str(self._settings.ca_file))
        return self._settings.verify_tls

    def _remember(self, entity: Entity, raw: Mapping[str, Any]) -> dict[str, Any]:
        state = from_home_assistant(entity, raw)
        self._known[entity.id] = state
        return state

    async def _request(
        self,
        method: str,
        path: str,
        entity: Entity,
        *,
        body: Mapping[str, Any] | None = None,
        what: str,
    ) -> Any:
        if self._session is None:
            raise BackendError("the connection to Home Assistant is not open")
        url = self._settings.url + path
        where = f"Home Assistant at {self._settings.url}"
        try:
            async with self._session.request(method, url, json=body) as response:
                status = response.status
                text = await response.text()
        except aiohttp.ClientConnectorCertificateError:
            raise BackendError(
                f"cannot verify the TLS certificate of {where}; set home.homeassistant.ca_file"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = (
                exc.os_error.strerror
                if exc.os_error and exc.os_error.strerror
                else str(exc.os_error or exc)
            )
            raise BackendError(f"cannot connect to {where}: {reason}") from None
        except TimeoutError:
            raise BackendError(
                f"{where} did not answer within {self._settings.request_timeout_s:g} seconds"
            ) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"lost the connection to {where} ({type(exc).__name__})") from None

        if status == 401:
            raise BackendError(
                "Home Assistant refused the access token (HTTP 401); "
                "check the homeassistant-token credential"
            )
        if status == 403:
            raise BackendError(f"Home Assistant does not allow {what} (HTTP 403)")
        if status == 404:
            if path.startswith("/api/states/"):
                raise BackendError(f"Home Assistant has no entity {entity.id} ({entity.name})")
            raise BackendError(f"Home Assistant does not know {what} (HTTP 404)")
        if status == 400:
            raise BackendError(
                f"Home Assistant rejected {what} for {entity.name}: {_message(text)}"
            )
        if status >= 500:
            raise BackendError(
                f"Home Assistant had an internal error with {entity.name} (HTTP {status})"
            )
        if status >= 300:
            raise BackendError(f"Home Assistant answered HTTP {status} to {what}")
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise BackendError(
                f"Home Assistant sent an unreadable reply for {entity.name}"
            ) from None


def _message(text: str) -> str:
    try:
        message = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        message = text
    message = " ".join(str(message).split())
    return message if len(message) <= 120 else message[:117] + "..."


def from_home_assistant(entity: Entity, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Home Assistant's state object -> the neutral shape of :mod:`edgevoice.tools.states`."""
    status = str(raw.get("state", "unknown"))
    attributes = raw.get("attributes") if isinstance(raw.get("attributes"), Mapping) else {}
    assert isinstance(attributes, Mapping)
    if status == "unavailable":
        return {"state": "unavailable"}
    match entity.domain:
        case "light":
            brightness = _number(attributes.get("brightness"))
            color = None
            if attributes.get("color_mode") == "color_temp" and _number(
                attributes.get("color_temp_kelvin")
            ):
                color = (
                    "warm white"
                    if _number(attributes.get("color_temp_kelvin")) < 4500
                    else "cool white"
                )
            elif attributes.get("rgb_color") is not None:
                color = nearest_color(attributes.get("rgb_color"))
            return {
                "state": status,
                "brightness": round(brightness * 100 / 255)
                if brightness is not None and status == "on"
                else None,
                "color": color if status == "on" else None,
            }
        case "climate":
            return {
                "hvac_mode": status,
                "target_temperature": _number(attributes.get("temperature")),
                "current_temperature": _number(attributes.get("current_temperature")),
            }
        case "cover":
            position = _number(attributes.get("current_position"))
            return {"state": status, "position": round(position) if position is not None else None}
        case "scene":
            return {"state": "not activated" if status in ("unknown", "") else "activated"}
        case "media_player":
            volume = _number(attributes.get("volume_level"))
            return {"state": status, "volume": round(volume * 100) if volume is not None else None}
        case "sensor":
            return {"state": status, "unit": attributes.get("unit_of_measurement")}
        case _:
            return {"state": status}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


__all__ = ["HomeAssistantBackend", "from_home_assistant"]

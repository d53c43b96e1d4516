"""The ``[device]`` section: the device's own functions (timers, volume, mute),
announcements, its control socket and how it shows itself in Home Assistant."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from edgevoice.sections import Section, section
from edgevoice.tools.settings import MqttSettings, SchedulingName

if TYPE_CHECKING:
    from edgevoice.config import Settings

DeviceFunctionName = Literal["set_timer", "get_timers", "cancel_timer", "set_volume", "mute_microphone"]

_NODE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


@section("device")
class DeviceSettings(Section):
    # Off: the model is offered none of the device's own functions.
    functions: bool = True
    # A timer that ends rings until the button is pressed, at most this long.
    timer_max_ring_s: float = Field(60.0, gt=0, le=3600)
    timer_ring_period_s: float = Field(1.0, ge=0.3, le=10)
    max_timers: int = Field(10, ge=1, le=50)
    # Announcements (and "timer ended" notices) older than this are not spoken any more.
    announcement_max_age_s: float = Field(300.0, gt=0, le=86400)
    # Speaker volume by voice: level 0..10, where 10 plays replies at this gain.
    max_volume: float = Field(1.0, gt=0, le=2.0)
    # Unset: $RUNTIME_DIRECTORY/control.sock (systemd's RuntimeDirectory=), else
    # /run/edgevoice/control.sock.
    control_socket: Path | None = None
    # Home Assistant MQTT discovery of this device (state, volume, mute, announce).
    # Connection: this section's [device.mqtt] when set, else [home.mqtt] when the home is
    # on MQTT, else none (no MQTT for the device).
    mqtt: MqttSettings | None = None
    discovery: bool = True
    discovery_prefix: str = Field("homeassistant", min_length=1)
    node_id: str = Field("edgevoice", min_length=1, max_length=64)
    name: str = Field("EdgeVoice", min_length=1, max_length=64)
    # Overrides of the scheduling policy for the device's own functions.
    scheduling: dict[DeviceFunctionName, SchedulingName] = Field(default_factory=dict)
    failure_scheduling: dict[DeviceFunctionName, SchedulingName] = Field(default_factory=dict)

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, value: str) -> str:
        if not _NODE_ID.match(value):
            raise ValueError("may hold only letters, digits, _ and -")
        return value

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if re.search(r"[#+\x00]", value):
            raise ValueError("must be an MQTT topic without wildcards (# or +)")
        return value.rstrip("/")


def device_mqtt_settings(settings: Settings) -> MqttSettings | None:
    """The broker the device shows itself on, or None.

    Decided here, from the settings alone, so a device without MQTT never imports the
    MQTT client (:mod:`edgevoice.service.device_mqtt` and aiomqtt).
    """
    if settings.device.mqtt is not None:
        return settings.device.mqtt
    if settings.home.enabled and settings.home.backend == "mqtt":
        return settings.home.mqtt
    return None


__all__ = ["DeviceFunctionName", "DeviceSettings", "device_mqtt_settings"]

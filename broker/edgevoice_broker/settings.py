"""Settings of the token broker's own file (``broker.toml``): server, tokens, rates, devices."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from edgevoice.security.device_secrets import parse_hash
from edgevoice.security.settings import _Section, check_device_id, check_https_url


class BrokerServerSettings(_Section):
    """``[server]``: where the broker listens. TLS is not optional: devices send secrets."""

    host: str = "0.0.0.0"
    port: int = Field(8443, ge=0, le=65535)
    tls_cert_file: Path
    tls_key_file: Path


class BrokerTokenSettings(_Section):
    """``[tokens]``: what every token allows."""

    # Sessions opened with a token may be closed by the service once it expires: longer than
    # the service's connection lifetime (about 10-15 min), so expiry never cuts a conversation.
    expire_s: float = Field(900.0, ge=60, le=20 * 3600)
    # The window in which the token may open its connection; the device connects at once.
    new_session_s: float = Field(60.0, ge=10, le=20 * 3600)
    uses: int = Field(1, ge=1, le=100)

    @model_validator(mode="after")
    def _window_inside_lifetime(self) -> BrokerTokenSettings:
        if self.new_session_s > self.expire_s:
            raise ValueError("new_session_s must not exceed expire_s")
        return self


class BrokerLiveSettings(_Section):
    """``[live]``: the Live settings locked into every token. A device cannot use a token
    for another model, for text output or with the server's voice activity detection.

    Only the fields set here are locked (``lock_additional_fields = []`` in the SDK's
    terms), so each device still sends its own tools and resumption handle."""

    model: str = "gemini-2.5-flash-native-audio-preview-09-2025"
    voice: str | None = None
    system_instruction: str | None = None
    # Push-to-talk devices bracket utterances with activityStart/activityEnd.
    lock_manual_activity: bool = True

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not re.fullmatch(r"(models/)?[A-Za-z0-9._-]+", value):
            raise ValueError("must be a Gemini model name such as gemini-2.5-flash-native-audio")
        return value


class BrokerRateSettings(_Section):
    """``[rate_limit]``: token buckets. A device needs one token per connection."""

    burst: int = Field(10, ge=1, le=1000)
    per_minute: float = Field(6.0, gt=0, le=6000)
    # Failed authentications per client address (each costs a deliberately slow hash).
    failed_burst: int = Field(10, ge=1, le=1000)
    failed_per_minute: float = Field(10.0, gt=0, le=6000)


class BrokerGeminiSettings(_Section):
    """``[gemini]``: the upstream service. Unset base_url means Google's endpoint; tests
    point it at the local emulator."""

    base_url: str | None = None
    api_version: str = "v1alpha"
    ca_file: Path | None = None
    timeout_s: float = Field(10.0, gt=0, le=120)


class DeviceEntry(_Section):
    """One ``[[devices]]`` entry: the broker keeps only the secret's hash."""

    id: str
    secret_hash: str = Field(min_length=1)
    revoked: bool = False

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return check_device_id(value)

    @field_validator("secret_hash")
    @classmethod
    def _hash(cls, value: str) -> str:

        parse_hash(value)  # raises ValueError naming what is wrong
        return value


class BrokerSettings(_Section):
    server: BrokerServerSettings
    tokens: BrokerTokenSettings = BrokerTokenSettings()
    live: BrokerLiveSettings = BrokerLiveSettings()
    rate_limit: BrokerRateSettings = BrokerRateSettings()
    gemini: BrokerGeminiSettings = BrokerGeminiSettings()
    devices: list[DeviceEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_devices(self) -> BrokerSettings:
        ids = [device.id for device in self.devices]
        repeated = sorted({device_id for device_id in ids if ids.count(device_id) > 1})
        if repeated:
            raise ValueError(f"device ids must be unique; repeated: {', '.join(repeated)}")
        return self

    def device(self, device_id: str) -> DeviceEntry | None:
        for device in self.devices:
            if device.id == device_id:
                return device
        return None


__all__ = [
    "BrokerGeminiSettings",
    "BrokerLiveSettings",
    "BrokerRateSettings",
    "BrokerServerSettings",
    "BrokerSettings",
    "BrokerTokenSettings",
    "DeviceEntry",
    "check_device_id",
    "check_https_url",
]

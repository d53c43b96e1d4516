"""Smart-home backends: simulated (in memory), Home Assistant (REST), MQTT."""

from edgevoice.tools.backends.base import BackendError, HomeBackend

__all__ = ["BackendError", "HomeBackend"]

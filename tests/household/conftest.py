"""Fixtures of the household tests: the emulator (end to end) and Mosquitto (MQTT)."""

from tests.e2e.conftest import emulator_factory  # noqa: F401
from tests.tools.conftest import mosquitto  # noqa: F401

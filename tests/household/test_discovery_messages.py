"""What the device tells Home Assistant about itself, and over which broker (no I/O)."""

from __future__ import annotations

from edgevoice.config import load_settings
from edgevoice.service.device_mqtt import DeviceTopics, device_mqtt_settings, discovery_messages


def settings(**sections: object):
    return load_settings(None, require_file=False, overrides=sections).settings


LAMP = [{"id": "light.lamp", "name": "Lamp"}]


def test_no_broker_no_mqtt_and_the_home_broker_when_the_home_is_on_mqtt() -> None:
    assert device_mqtt_settings(settings()) is None
    home = settings(home={"backend": "mqtt", "mqtt": {"host": "broker.lan"}, "entities": LAMP})
    chosen = device_mqtt_settings(home)
    assert chosen is not None and chosen.host == "broker.lan"
    own = settings(
        home={"backend": "mqtt", "mqtt": {"host": "broker.lan"}, "entities": LAMP},
        device={"mqtt": {"host": "other.lan"}},
    )
    chosen = device_mqtt_settings(own)
    assert chosen is not None and chosen.host == "other.lan"


def test_transcript_sensors_only_when_transcripts_are_enabled() -> None:
    on = settings(device={"mqtt": {"host": "b"}, "node_id": "hall"})
    off = settings(device={"mqtt": {"host": "b"}, "node_id": "hall"}, logging={"transcripts": False})
    for loaded, expected in ((on, True), (off, False)):
        mqtt = device_mqtt_settings(loaded)
        assert mqtt is not None
        topics = DeviceTopics(loaded, mqtt)
        messages = discovery_messages(loaded, topics)
        has = "homeassistant/sensor/hall/last_heard/config" in messages
        assert has is expected
        assert ("homeassistant/sensor/hall/last_said/config" in messages) is expected
        volume = messages["homeassistant/number/hall/volume/config"]
        assert volume["command_topic"] == "edgevoice/device/hall/volume/set"
        unique = [m["unique_id"] for m in messages.values()]
        assert len(set(unique)) == len(unique)

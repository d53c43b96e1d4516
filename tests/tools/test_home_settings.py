"""The [home] section: defaults, the demo home, and bad values reported with key and source."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgevoice.config import ConfigError, load_settings, redacted_dump
from edgevoice.tools.settings import EntitySettings, HomeSettings, default_simulated_home

EXAMPLE = Path(__file__).parent / "data" / "home-example.toml"


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None):
    path = tmp_path / "edgevoice.toml"
    path.write_text(text)
    return load_settings(path, environ or {})


def test_defaults_give_the_demo_home_on_the_simulated_backend():
    home = HomeSettings()
    assert home.enabled and home.backend == "simulated"
    ids = [entity.id for entity in home.effective_entities]
    assert ids[:6] == [
        "light.kitchen",
        "light.living_room",
        "climate.thermostat",
        "cover.garage_door",
        "scene.movie_night",
        "media_player.living_room_speaker",
    ]
    assert home.effective_entities == default_simulated_home()


def test_the_example_snippet_loads():
    loaded = load_settings(EXAMPLE, {})
    home = loaded.settings.home
    assert home.effective_entities[0].id == "light.kitchen"
    assert home.function_timeout_s == {"set_cover": 30.0}
    assert home.scheduling == {"get_state": "WHEN_IDLE"}
    assert loaded.sources[("home", "backend")].endswith("line 5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[home]\nbackend = "zigbee"\n', "home.backend = 'zigbee'"),
        ("[home]\ncall_timeout_s = 0\n", "home.call_timeout_s = 0"),
        ('[home]\nscheduling = { set_light = "LOUD" }\n', "home.scheduling.set_light = 'LOUD'"),
        ('[home]\nscheduling = { dance = "SILENT" }\n', "home.scheduling.dance"),
        ("[home.simulated]\nfailure_rate = 1.5\n", "home.simulated.failure_rate = 1.5"),
        ("[home]\nlights = 3\n", "unknown key home.lights"),
        ('[home.mqtt]\nbase_topic = "home/#"\n', "home.mqtt.base_topic"),
        ('[home.homeassistant]\nurl = "homeassistant.local"\n', "home.homeassistant.url"),
    ],
)
def test_bad_values_name_key_and_source(tmp_path, text, expected):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    problem = "\n".join(caught.value.problems)
    assert expected in problem
    assert "edgevoice.toml, line" in problem


def test_bad_entity_id_names_its_key(tmp_path):
    # (The loader gives no line for keys inside [[arrays of tables]], so no source check.)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, '[[home.entities]]\nid = "lamp"\nname = "Lamp"\n')
    assert "home.entities.0.id = 'lamp'" in caught.value.problems[0]
    assert "must look like light.kitchen" in caught.value.problems[0]


def test_mqtt_needs_an_entity_list_and_home_assistant_discovers_without_one(tmp_path):
    with pytest.raises(ConfigError, match=r"the mqtt backend needs home\.entities"):
        load(tmp_path, '[home]\nbackend = "mqtt"\n')
    home = load(tmp_path, '[home]\nbackend = "homeassistant"\n').settings.home
    assert home.discovers and home.effective_entities == ()
    listed = '[home]\nbackend = "homeassistant"\n[[home.entities]]\nid = "light.a"\nname = "A"\n'
    assert not load(tmp_path, listed).settings.home.discovers
    both = listed.replace("[[home", "[home.homeassistant]\ndiscover = true\n[[home", 1)
    assert load(tmp_path, both).settings.home.discovers
    with pytest.raises(ConfigError, match=r"discover = false needs home\.entities"):
        load(tmp_path, '[home]\nbackend = "homeassistant"\n[home.homeassistant]\ndiscover = false\n')
    with pytest.raises(ConfigError, match=r"settle_timeout_s must be below home\.call_timeout_s"):
        load(tmp_path, '[home]\nbackend = "homeassistant"\ncall_timeout_s = 5\n')


def test_environment_overrides_reach_the_home_section(tmp_path):
    loaded = load(tmp_path, "[home]\n", {"EDGEVOICE_HOME__CALL_TIMEOUT_S": "3.5"})
    assert loaded.settings.home.call_timeout_s == 3.5
    assert loaded.sources[("home", "call_timeout_s")] == "environment variable EDGEVOICE_HOME__CALL_TIMEOUT_S"


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ([{"id": "light.a", "name": "A"}, {"id": "light.a", "name": "B"}], "repeated: light.a"),
        (
            [{"id": "light.a", "name": "Lamp"}, {"id": "light.b", "name": "the lamp "}],
            "is used by both",
        ),
        (
            [{"id": "light.a", "name": "A", "aliases": ["b"]}, {"id": "light.b", "name": "B"}],
            "is used by both",
        ),
        ([{"id": "light.a", "name": "A", "min_temperature": 5}], "only apply to climate"),
        (
            [{"id": "climate.a", "name": "A", "min_temperature": 25, "max_temperature": 20}],
            "must be below",
        ),
    ],
)
def test_entity_list_consistency(entities, message):
    with pytest.raises(ValidationError, match=message):
        HomeSettings(entities=entities)


def test_same_name_in_two_domains_is_fine():
    home = HomeSettings(
        entities=[
            {"id": "light.kitchen", "name": "Kitchen"},
            {"id": "climate.kitchen", "name": "Kitchen"},
        ]
    )
    assert len(home.effective_entities) == 2


def test_simulated_references_must_be_configured_entities():
    with pytest.raises(
        ValidationError, match=r"always_fail names entities that are not configured: light\.nope"
    ):
        HomeSettings(simulated={"always_fail": ["light.nope"]})
    with pytest.raises(ValidationError, match="entity_latency_s names"):
        HomeSettings(simulated={"entity_latency_s": {"light.nope": 1}})


def test_confirmation_code_is_redacted_in_the_dump(tmp_path):
    loaded = load(tmp_path, '[home]\nconfirmation_code = "4711"\nallow_locks = true\n')
    assert loaded.settings.home.confirmation_code.get_secret_value() == "4711"
    assert "4711" not in redacted_dump(loaded)
    assert "4711" not in repr(loaded.settings.home)


def test_entity_settings_are_frozen():
    entity = EntitySettings(id="light.a", name="A")
    with pytest.raises(ValidationError):
        entity.name = "B"  # type: ignore[misc]

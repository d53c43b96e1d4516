"""How spoken names find configured entities."""

import pytest

from edgevoice.tools.entities import EntityDirectory, EntityNotFound
from edgevoice.tools.settings import EntitySettings, HomeSettings


def directory(*entities: EntitySettings) -> EntityDirectory:
    return EntityDirectory.from_settings(HomeSettings(entities=list(entities)))


HOME = directory(
    EntitySettings(id="light.kitchen", name="Kitchen light", aliases=["worktop lamp"], room="kitchen"),
    EntitySettings(id="light.hall", name="Hall light", room="hallway"),
    EntitySettings(id="light.hall_spots", name="Hall spots", room="hallway"),
    EntitySettings(id="climate.kitchen", name="Kitchen", room="kitchen"),
    EntitySettings(id="cover.garage_door", name="Garage door", room="garage"),
)


@pytest.mark.parametrize(
    "spoken",
    [
        "Kitchen light",
        "kitchen light",
        "  the KITCHEN   light ",
        "worktop lamp",
        "light.kitchen",
        "kitchen lights",
    ],
)
def test_name_alias_id_case_and_plural(spoken):
    assert HOME.resolve(spoken, {"light"}).id == "light.kitchen"


def test_room_finds_the_only_device_of_its_kind_there():
    assert HOME.resolve("the kitchen", {"light"}).id == "light.kitchen"
    assert HOME.resolve("garage", {"cover"}).id == "cover.garage_door"


def test_same_name_in_another_domain_is_picked_by_domain():
    assert HOME.resolve("kitchen", {"climate"}).id == "climate.kitchen"


def test_ambiguous_room_is_refused_not_guessed():
    with pytest.raises(EntityNotFound) as caught:
        HOME.resolve("hallway", {"light"})
    assert "could mean" in caught.value.message
    assert "Hall light" in caught.value.message and "Hall spots" in caught.value.message


def test_unknown_name_lists_what_exists():
    with pytest.raises(EntityNotFound) as caught:
        HOME.resolve("bedroom light", {"light"})
    assert caught.value.message == "there is no light called 'bedroom light'"
    assert caught.value.allowed == "Kitchen light (kitchen), Hall light (hallway), Hall spots (hallway)"


def test_wrong_domain_names_the_right_function():
    with pytest.raises(EntityNotFound) as caught:
        HOME.resolve("garage door", {"light"})
    assert caught.value.message == "Garage door is a door or blind, not a light; use set_cover"


def test_empty_name():
    with pytest.raises(EntityNotFound, match="no light was named"):
        HOME.resolve("  the ", {"light"})

"""Property: whatever the model sends, checking a call returns a plan or a rejection and
never raises; a rejection is always short plain text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from edgevoice.tools.confirmation import ConfirmationGuard
from edgevoice.tools.entities import EntityDirectory
from edgevoice.tools.functions import FunctionRegistry, Rejection
from edgevoice.tools.model import Command, StateQuery
from edgevoice.tools.settings import FUNCTION_NAMES, HomeSettings

HOME = HomeSettings(
    allow_locks=True,
    allow_alarms=True,
    confirmation_code="4711",
    entities=[
        {"id": "light.kitchen", "name": "Kitchen light", "room": "kitchen"},
        {"id": "climate.hall", "name": "Hall", "room": "hall"},
        {"id": "cover.garage", "name": "Garage door"},
        {"id": "scene.evening", "name": "Evening"},
        {"id": "media_player.radio", "name": "Radio"},
        {"id": "lock.front", "name": "Front door"},
        {"id": "alarm_control_panel.house", "name": "House alarm"},
        {"id": "sensor.outdoor", "name": "Outdoor temperature"},
    ],
)
REGISTRY = FunctionRegistry(HOME, EntityDirectory.from_settings(HOME), ConfirmationGuard("4711"))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
known_keys = st.sampled_from(
    [
        "entity",
        "scene",
        "on",
        "brightness",
        "color",
        "target_temperature",
        "hvac_mode",
        "action",
        "position",
        "volume",
        "locked",
        "mode",
        "confirmation",
    ]
)
spoken = st.sampled_from(
    [
        "kitchen light",
        "hall",
        "garage door",
        "evening",
        "radio",
        "front door",
        "house alarm",
        "outdoor temperature",
        "the moon",
        "",
    ]
)
arguments = st.dictionaries(known_keys, json_values | spoken, max_size=5) | json_values


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(FUNCTION_NAMES) | st.text(max_size=20),
    args=arguments,
    now=st.floats(0, 1e6),
)
def test_prepare_never_raises(name, args, now):
    plan = REGISTRY.prepare(name, args, now)
    assert isinstance(plan, Command | StateQuery | Rejection)
    if isinstance(plan, Rejection):
        response = plan.response()
        assert response["ok"] is False
        assert 0 < len(response["error"]) < 400
        # The confirmation code is never echoed (unless the model itself said those digits).
        if "4711" not in repr(args) + repr(name):
            assert "4711" not in str(response)

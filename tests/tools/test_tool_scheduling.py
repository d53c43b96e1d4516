"""The sans-IO scheduling policy: documented defaults and per-function overrides."""

from hypothesis import given
from hypothesis import strategies as st

from edgevoice.core.tool_scheduling import (
    DEFAULT_SCHEDULING,
    OutcomeKind,
    Scheduling,
    SchedulingPolicy,
)
from edgevoice.tools.settings import FUNCTION_NAMES


def test_documented_defaults():
    policy = SchedulingPolicy()
    assert policy.choose("set_light", OutcomeKind.COMPLETED) is Scheduling.WHEN_IDLE
    assert policy.choose("get_state", OutcomeKind.STATE_READ) is Scheduling.SILENT
    for failure in (OutcomeKind.BACKEND_FAILURE, OutcomeKind.TIMEOUT, OutcomeKind.REFUSED):
        assert policy.choose("set_light", failure) is Scheduling.INTERRUPT
    assert policy.choose("set_light", OutcomeKind.INVALID_REQUEST) is Scheduling.WHEN_IDLE
    assert set(DEFAULT_SCHEDULING) == set(OutcomeKind)


def test_override_applies_to_its_function_and_outcome_class_only():
    policy = SchedulingPolicy(on_success={"get_state": Scheduling.WHEN_IDLE})
    assert policy.choose("get_state", OutcomeKind.STATE_READ) is Scheduling.WHEN_IDLE
    # A failed state read is still something the user must hear.
    assert policy.choose("get_state", OutcomeKind.BACKEND_FAILURE) is Scheduling.INTERRUPT
    assert policy.choose("set_light", OutcomeKind.COMPLETED) is Scheduling.WHEN_IDLE


@given(
    function=st.sampled_from(FUNCTION_NAMES),
    kind=st.sampled_from(list(OutcomeKind)),
    success=st.dictionaries(st.sampled_from(FUNCTION_NAMES), st.sampled_from(list(Scheduling))),
    failure=st.dictionaries(st.sampled_from(FUNCTION_NAMES), st.sampled_from(list(Scheduling))),
)
def test_choice_is_override_else_default(function, kind, success, failure):
    chosen = SchedulingPolicy(on_success=success, on_failure=failure).choose(function, kind)
    overrides = success if kind.ok else failure
    assert chosen is overrides.get(function, DEFAULT_SCHEDULING[kind])

"""The confirmation code guard: spoken forms, wrong codes, lockout (time passed in)."""

import pytest

from edgevoice.tools.confirmation import ConfirmationGuard, Verdict, normalize_code


@pytest.mark.parametrize("spoken", ["1234", "1 2 3 4", "one two three four", "12-34", " One, two, 3, FOUR. "])
def test_spoken_forms_of_the_same_code_match(spoken):
    assert ConfirmationGuard("1234").check(spoken, now=0).verdict is Verdict.ACCEPTED


def test_phrases_ignore_case_and_punctuation():
    guard = ConfirmationGuard("Open Sesame!")
    assert guard.check("open sesame", now=0).accepted
    assert not guard.check("open sesami", now=1).accepted


def test_missing_and_unconfigured():
    assert ConfirmationGuard("1234").check(None, 0).verdict is Verdict.MISSING
    assert ConfirmationGuard("1234").check("  ", 0).verdict is Verdict.MISSING
    assert ConfirmationGuard(None).check("1234", 0).verdict is Verdict.NOT_CONFIGURED
    # A code of punctuation only would match anything once normalised: it counts as unset.
    assert ConfirmationGuard("----").check("!!", 0).verdict is Verdict.NOT_CONFIGURED


def test_lockout_after_repeated_wrong_codes_then_recovery():
    guard = ConfirmationGuard("1234", max_failures=3, lockout_s=60)
    assert guard.check("1111", 0).verdict is Verdict.WRONG
    assert guard.check("2222", 1).verdict is Verdict.WRONG
    third = guard.check("3333", 2)
    assert third.verdict is Verdict.LOCKED_OUT and third.retry_after_s == 60
    # Even the right code is refused during the lockout.
    locked = guard.check("1234", 30)
    assert locked.verdict is Verdict.LOCKED_OUT and locked.retry_after_s == pytest.approx(32)
    assert guard.check("1234", 62.5).accepted


def test_success_resets_the_failure_count():
    guard = ConfirmationGuard("1234", max_failures=2)
    assert guard.check("0000", 0).verdict is Verdict.WRONG
    assert guard.check("1234", 1).accepted
    assert guard.check("0000", 2).verdict is Verdict.WRONG


def test_repr_never_shows_the_code():
    assert "1234" not in repr(ConfirmationGuard("1234"))
    assert normalize_code("Nine-8 seven") == "987"

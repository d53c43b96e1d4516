import random

from edgevoice.core.backoff import Backoff


def test_first_retry_at_once_then_exponential_with_jitter_and_a_cap() -> None:
    backoff = Backoff(initial_s=0.5, max_s=8.0, jitter=0.5, rng=random.Random(7))
    assert backoff.delay(0) == 0.0
    delays = [backoff.delay(n) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        base = min(8.0, 0.5 * 2 ** (n - 1))
        assert base * 0.5 <= delay <= base
    assert max(delays) <= 8.0


def test_days_of_failures_stay_at_the_cap() -> None:
    backoff = Backoff(initial_s=0.25, max_s=5.0, rng=random.Random(1))
    assert 2.5 <= backoff.delay(10**6) <= 5.0


def test_jitter_spreads_devices_that_failed_together() -> None:
    delays = {round(Backoff(rng=random.Random(seed)).delay(4), 6) for seed in range(20)}
    assert len(delays) == 20

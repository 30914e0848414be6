"""Retry timing: the delivery policy (consumers, sinks) and the reconnect backoff (sender,
listener, consumer readers)."""

from __future__ import annotations

import pytest

from mozaiks_bus import ConfigError, RetryPolicy
from mozaiks_bus.retry import Backoff


def test_retry_policy_backs_off_with_full_jitter() -> None:
    policy = RetryPolicy(base_s=1.0, max_s=8.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    delays = [policy.delay(4) for _ in range(200)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2  # spread, not lockstep
    assert policy.delay(1, retry_after=5.0) == 5.0
    assert policy.delay(1, retry_after=3600) == 16.0  # a hostile Retry-After is capped


def test_backoff_doubles_to_its_cap_from_the_upper_half_and_resets() -> None:
    backoff = Backoff(min_s=0.1, max_s=0.8)
    ceilings = [0.1, 0.2, 0.4, 0.8, 0.8]
    for ceiling in ceilings:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 0.1


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (2.0, 1.0), (-1.0, 1.0)])
def test_a_backoff_needs_a_positive_range(low: float, high: float) -> None:
    with pytest.raises(ConfigError, match="backoff"):
        Backoff(min_s=low, max_s=high)

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.errors import DefinitionError
from ordersaga.saga.retry import ACTION_POLICY, RetryPolicy


@given(attempt=st.integers(min_value=1, max_value=10_000), seed=st.integers())
def test_backoff_is_full_jitter_within_the_capped_exponential(attempt: int, seed: int) -> None:
    policy = RetryPolicy(initial_interval=0.01, backoff_coefficient=2, maximum_interval=1.0)
    cap = min(1.0, 0.01 * 2 ** min(attempt - 1, 64))
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0.0 <= delay <= cap


def test_backoff_spreads_concurrent_retries() -> None:
    policy = RetryPolicy(initial_interval=0.1, maximum_interval=0.1)
    rng = random.Random(1)
    delays = {round(policy.backoff(3, rng), 6) for _ in range(100)}
    assert len(delays) > 90  # full jitter: no two sagas retry in lockstep


def test_attempts_and_deadline_bound_retries() -> None:
    policy = RetryPolicy(maximum_attempts=3, deadline=5.0)
    assert policy.may_retry(2, 0.0)
    assert not policy.may_retry(3, 0.0)
    assert not policy.may_retry(1, 5.0)
    forever = RetryPolicy(maximum_attempts=None, deadline=None)
    assert forever.unlimited and forever.may_retry(10**9, 10**9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_interval": 0},
        {"backoff_coefficient": 0.5},
        {"initial_interval": 1.0, "maximum_interval": 0.5},
        {"maximum_attempts": 0},
        {"deadline": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(DefinitionError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_default_budget_makes_spurious_failures_rarer_than_one_in_ten_million() -> None:
    # At --fault-rate 0.1 an attempt fails when the request or the response is lost.
    attempt_failure = 1 - (1 - 0.1) ** 2
    assert ACTION_POLICY.maximum_attempts is not None
    assert attempt_failure**ACTION_POLICY.maximum_attempts < 1e-7

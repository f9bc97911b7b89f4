import asyncio

from ordersaga.saga.breaker import BreakerSettings, BreakerState, CircuitBreaker
from ordersaga.saga.testing import FakeClock


async def test_opens_after_threshold_and_callers_wait_instead_of_calling() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("inventory", clock, BreakerSettings(threshold=3, cooldown=2.0))
    for _ in range(3):
        await breaker.acquire()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened == 1
    before = clock.now
    await breaker.acquire()  # waits out the cooldown, then is the half-open trial
    assert clock.now - before >= 2.0
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_lets_one_trial_through_and_others_wait() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("payment", clock, BreakerSettings(threshold=1, cooldown=1.0))
    await breaker.acquire()
    breaker.record_failure()
    await breaker.acquire()  # the trial
    waiter = asyncio.create_task(breaker.acquire())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiter.done()  # a second caller does not get through while the trial runs
    breaker.record_success()
    await asyncio.wait_for(waiter, 1)
    assert breaker.state is BreakerState.CLOSED


async def test_failed_trial_reopens() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("shipping", clock, BreakerSettings(threshold=2, cooldown=1.0))
    for _ in range(2):
        await breaker.acquire()
        breaker.record_failure()
    await breaker.acquire()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2


async def test_a_success_resets_the_consecutive_count() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock, BreakerSettings(threshold=3, cooldown=1.0))
    for _ in range(10):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.opened == 0

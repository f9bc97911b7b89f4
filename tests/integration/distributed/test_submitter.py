"""The Submitter against a real PostgreSQL saga log, a test playing the workers' part.

A decision (``start``, ``record_failed``) waits for the saga's summed-up outcome; the order API's
``wait`` for its whole record. Each waiter has its own future: one that gives up (cancelled)
leaves the others waiting for the same saga undisturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ordersaga.cluster.submit import SubmitSettings, Submitter
from ordersaga.protocol.messages import Phase
from ordersaga.saga.executor import MISMATCH_REASON, SagaResult
from ordersaga.saga.store import PostgresSagaStore, SagaStatus, StepRecord, StepStatus

pytestmark = pytest.mark.pg

S = SagaStatus
FAST = SubmitSettings(poll=0.01, poll_unnotified=0.01)


@pytest.fixture
async def submitter(store: PostgresSagaStore) -> AsyncIterator[Submitter]:
    opened = Submitter(store, FAST)
    yield opened
    await opened.close()


async def _until_created(store: PostgresSagaStore, saga_id: str) -> None:
    for _ in range(500):
        if await store.load(saga_id) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{saga_id} was never created")


async def _fail(store: PostgresSagaStore, saga_id: str) -> None:
    """What a worker writes for an order whose payment was refused after a retried reserve."""
    steps = [
        StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {}, None, 3, 1.0, 1.1),
        StepRecord("pay", Phase.ACTION, StepStatus.REFUSED, {}, "declined", 1, 2.0, 2.1),
        StepRecord("reserve", Phase.COMPENSATE, StepStatus.SUCCEEDED, {}, None, 1, 3.0, 3.1),
    ]
    await store.update(saga_id, steps=steps, status=S.COMPENSATING, reason="declined")
    await store.update(saga_id, status=S.FAILED)


async def test_a_decision_reports_the_workers_outcome_then_replays_it(
    store: PostgresSagaStore, submitter: Submitter
) -> None:
    started = asyncio.create_task(submitter.start("order", "o1", {"n": 1}, "fp1"))
    await _until_created(store, "o1")
    assert not started.done()
    await _fail(store, "o1")
    expected = SagaResult(
        "o1", S.FAILED, "declined", 2, 1, False, False, "fp1", step="pay", cause="business"
    )
    assert await asyncio.wait_for(started, 10) == expected
    replay = await submitter.start("order", "o1", {"n": 1}, "fp1")
    assert replay == SagaResult(
        "o1", S.FAILED, "declined", 2, 1, True, False, "fp1", step="pay", cause="business"
    )
    other = await submitter.start("order", "o1", {"n": 2}, "fp2")
    assert (other.mismatch, other.reason, other.cause) == (True, MISMATCH_REASON, "input")
    invalid = await submitter.record_failed("order", "o2", {}, "fp-o2", "no items")
    assert (invalid.status, invalid.reason, invalid.cause, invalid.replayed) == (
        S.FAILED,
        "no items",
        "input",
        False,
    )


async def test_a_waiter_giving_up_leaves_the_others_waiting(
    store: PostgresSagaStore, submitter: Submitter
) -> None:
    first = asyncio.create_task(submitter.start("order", "o1", {"n": 1}, "fp1"))
    await _until_created(store, "o1")
    again = asyncio.create_task(submitter.start("order", "o1", {"n": 1}, "fp1"))
    record = asyncio.create_task(submitter.wait("o1"))
    impatient = asyncio.create_task(submitter.wait("o1"))
    await asyncio.sleep(0.05)
    first.cancel()
    impatient.cancel()
    await store.update("o1", status=S.CONFIRMING)
    await store.update("o1", status=S.CONFIRMED)
    assert (await asyncio.wait_for(again, 10)).status is S.CONFIRMED
    assert (await asyncio.wait_for(record, 10)).status is S.CONFIRMED
    for gave_up in (first, impatient):
        with pytest.raises(asyncio.CancelledError):
            await gave_up

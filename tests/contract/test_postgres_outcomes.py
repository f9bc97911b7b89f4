"""PostgresSagaStore.outcomes (a finished saga's outcome summed up by the server) and
create_or_existing: what a submitter reads and writes.

What a submitter reports of a saga (:meth:`SagaResult.of_record`) must read the same from the
summary as from the saga's full record (:meth:`PostgresSagaStore.finished`), whatever its steps.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from ordersaga.protocol.messages import Phase
from ordersaga.saga.executor import SagaResult
from ordersaga.saga.outcome import CANCELLED_REASON, compacted_of
from ordersaga.saga.store import PostgresSagaStore, SagaStatus, StepRecord, StepStatus, open_store
from ordersaga.saga.store.base import Compacted
from ordersaga.saga.testing import TickClock

pytestmark = pytest.mark.pg

S = SagaStatus


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresSagaStore]:
    store = await open_store(pg_url, clock=TickClock())
    assert isinstance(store, PostgresSagaStore)
    yield store
    await store.close()


def _step(
    name: str,
    status: StepStatus,
    phase: Phase = Phase.ACTION,
    *,
    attempts: int = 1,
    at: float = 1.0,
    reason: str | None = None,
) -> StepRecord:
    return StepRecord(name, phase, status, {"n": 1}, reason, attempts, at, at + 0.5)


def _random_steps(rng: random.Random) -> list[StepRecord]:
    steps = []
    for name in rng.sample(["reserve", "ship", "pay", "commit"], rng.randint(0, 4)):
        for phase in rng.sample(list(Phase), rng.randint(1, 3)):
            steps.append(
                _step(
                    name,
                    rng.choice(list(StepStatus)),
                    phase,
                    attempts=rng.randint(0, 4),
                    at=float(rng.randint(1, 4)),  # ties: the insertion order decides
                    reason=rng.choice([None, "no stock", CANCELLED_REASON]),
                )
            )
    return steps


async def _finish(
    store: PostgresSagaStore, saga_id: str, steps: list[StepRecord], status: SagaStatus
) -> None:
    await store.create(saga_id, "order", {"order_id": saga_id}, f"fp-{saga_id}")
    via = S.COMPENSATING if status is S.FAILED else S.CONFIRMING
    await store.update(saga_id, steps=steps, status=via)
    await store.update(saga_id, status=status, reason="why" if status is S.FAILED else None)


async def test_a_summary_reports_what_the_full_record_reports(
    pg_store: PostgresSagaStore,
) -> None:
    cases: dict[str, tuple[list[StepRecord], SagaStatus]] = {
        "confirmed": (
            [
                _step("reserve", StepStatus.SUCCEEDED, attempts=3),
                _step("commit", StepStatus.SUCCEEDED, Phase.CONFIRM, attempts=2, at=2.0),
            ],
            S.CONFIRMED,
        ),
        "refused": (
            [
                _step("reserve", StepStatus.SUCCEEDED),
                _step("pay", StepStatus.REFUSED, at=2.0, reason="card declined"),
                _step("reserve", StepStatus.SUCCEEDED, Phase.COMPENSATE, attempts=2, at=3.0),
            ],
            S.FAILED,
        ),
        "cancelled": ([_step("pay", StepStatus.UNKNOWN, reason=CANCELLED_REASON)], S.FAILED),
        "unknown": ([_step("ship", StepStatus.UNKNOWN, attempts=5, reason="lost")], S.FAILED),
        "undelivered": ([_step("ship", StepStatus.UNDELIVERED, attempts=0)], S.FAILED),
        "first failure wins": (
            [
                _step("ship", StepStatus.REFUSED, at=2.0),
                _step("reserve", StepStatus.UNKNOWN, at=1.0),
                _step("pay", StepStatus.UNKNOWN, Phase.COMPENSATE, at=0.5),
            ],
            S.FAILED,
        ),
        "no step ran": ([], S.FAILED),
        "failed compensation": (
            [_step("reserve", StepStatus.UNKNOWN, Phase.COMPENSATE, attempts=4)],
            S.FAILED,
        ),
    }
    rng = random.Random(15)
    for n in range(40):
        cases[f"random {n}"] = (_random_steps(rng), rng.choice([S.CONFIRMED, S.FAILED]))
    for saga_id, (steps, status) in cases.items():
        await _finish(pg_store, saga_id, steps, status)
    await pg_store.create("running", "order", {}, "fp-running")

    full = {r.saga_id: r for r in await pg_store.finished([*cases, "running", "nope"])}
    summed = {r.saga_id: r for r in await pg_store.outcomes([*cases, "running", "nope"])}
    assert set(summed) == set(full) == set(cases)
    for saga_id, record in full.items():
        summary = summed[saga_id]
        assert summary.compacted == compacted_of(record), saga_id
        assert SagaResult.of_record(summary) == SagaResult.of_record(record), saga_id
        assert (summary.status, summary.reason, summary.fingerprint) == (
            record.status,
            record.reason,
            record.fingerprint,
        )
        assert (summary.input, summary.steps) == ({}, ())
    assert await pg_store.outcomes([]) == []


async def test_a_compacted_saga_keeps_its_summary(pg_store: PostgresSagaStore) -> None:
    steps = [
        _step("pay", StepStatus.REFUSED, attempts=2),
        _step("reserve", StepStatus.SUCCEEDED, Phase.COMPENSATE, at=2.0),
    ]
    await _finish(pg_store, "old", steps, S.FAILED)
    assert (await pg_store.prune(1e12)).sagas == 1
    [summary] = await pg_store.outcomes(["old"])
    assert summary.compacted == Compacted("pay", "business", 1, 1)
    assert SagaResult.of_record(summary).cause == "business"


async def test_create_or_existing_creates_once_then_reads_the_saga_back(
    pg_store: PostgresSagaStore,
) -> None:
    assert await pg_store.create_or_existing("o1", "order", {"n": (1, 2)}, "fp1") is None
    created = await pg_store.load("o1")
    assert created is not None
    assert (created.status, created.input, created.fingerprint) == (S.RUNNING, {"n": [1, 2]}, "fp1")
    existing = await pg_store.create_or_existing("o1", "order", {"n": 3}, "fp2")
    assert existing == created  # the first one's, left as it was

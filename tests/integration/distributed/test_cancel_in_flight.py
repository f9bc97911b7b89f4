"""`sagas cancel` of a saga an executor is driving at that very moment.

The executor is held at the payment call (a gate) when the operator cancels. A run-like engine
(no lease) finds its next write refused, reads the log and compensates; a worker is fenced off
and another worker compensates. Either way the payment the held call authorizes once released
is voided, and the audit passes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ordersaga.errors import OwnershipLost
from ordersaga.ops.repair import cancel
from ordersaga.orders.order_saga import ORDER_SAGA
from ordersaga.protocol.messages import Phase
from ordersaga.proving.audit import audit
from ordersaga.saga.executor import SagaEngine, SagaResult
from ordersaga.saga.store import PostgresSagaStore, SagaStatus
from ordersaga.services.factory import Services, data_dir_urls
from ordersaga.transport.inprocess import InProcessTransport

from .conftest import Gate, create_order

pytestmark = pytest.mark.pg


async def _held(
    store: PostgresSagaStore, services: Services, order_id: str, owner: str | None
) -> tuple[Gate, asyncio.Task[SagaResult]]:
    await create_order(store, order_id)
    gate = Gate(InProcessTransport(services.by_name()), "payment")
    engine = SagaEngine(store, gate, [ORDER_SAGA], owner=owner)
    if owner is None:
        record = await store.load(order_id)
    else:
        (record,) = await store.claim(owner, lease_s=30)
    assert record is not None
    task = asyncio.create_task(engine.resume(record))
    await asyncio.wait_for(gate.reached.wait(), 5)
    return gate, task


async def test_a_run_compensates_the_saga_cancelled_under_it(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    gate, task = await _held(store, services, "x1", None)
    entry = await cancel(store, "x1", "alice", "customer withdrew")
    assert entry.record.status is SagaStatus.COMPENSATING
    gate.open.set()  # the payment is authorized after all; the next write is refused
    result = await asyncio.wait_for(task, 10)
    assert result.status is SagaStatus.FAILED and result.cause == "operator"
    record = await store.load("x1")
    assert record is not None and record.status is SagaStatus.FAILED
    compensated = {s.step for s in record.steps if s.phase is Phase.COMPENSATE}
    assert compensated == {"reserve", "ship", "pay"}
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations


async def test_a_worker_is_fenced_off_and_another_compensates(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    gate, task = await _held(store, services, "x2", "w-a")
    await cancel(store, "x2", "bob", None)
    gate.open.set()
    with pytest.raises(OwnershipLost):
        await asyncio.wait_for(task, 10)
    (record,) = await store.claim("w-b", lease_s=30)  # the cancel released the lease
    engine = SagaEngine(store, InProcessTransport(services.by_name()), [ORDER_SAGA], owner="w-b")
    result = await engine.resume(record)
    assert result.status is SagaStatus.FAILED and result.cause == "operator"
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations

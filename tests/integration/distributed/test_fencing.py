"""A worker paused past its lease cannot harm the saga another worker took over.

Two engines with different owners share one PostgreSQL saga log and in-process services. Worker A
claims a saga with a short lease and is held at the payment call (as if paused); its lease
lapses; worker B claims the saga and resumes it from the log. When A wakes up, its payment call
replays the same idempotency key, and its next log write is fenced off: A stops, and the audit
shows every operation applied at most once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ordersaga.errors import OwnershipLost
from ordersaga.proving.audit import audit
from ordersaga.saga.executor import SagaEngine, SagaResult
from ordersaga.saga.store import PostgresSagaStore, SagaStatus
from ordersaga.services.factory import Services, data_dir_urls
from ordersaga.transport.base import Transport
from ordersaga.transport.inprocess import InProcessTransport

from .conftest import ORDER_SAGA, Gate, create_order

pytestmark = pytest.mark.pg


def _engine(store: PostgresSagaStore, transport: Transport, owner: str) -> SagaEngine:
    return SagaEngine(store, transport, [ORDER_SAGA], owner=owner)


async def _paused_at_payment(
    store: PostgresSagaStore, services: Services, order_id: str
) -> tuple[Gate, asyncio.Task[SagaResult]]:
    """Worker A: claims ``order_id`` for 0.2 s and is held at the payment call."""
    await create_order(store, order_id)
    gate = Gate(InProcessTransport(services.by_name()), "payment")
    (record,) = await store.claim("a", lease_s=0.2)
    task: asyncio.Task[SagaResult] = asyncio.create_task(_engine(store, gate, "a").resume(record))
    await asyncio.wait_for(gate.reached.wait(), 5)
    await asyncio.sleep(0.3)  # A's lease lapses while it is paused
    return gate, task


async def test_a_paused_worker_replays_and_stops_once_another_finished_the_saga(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    gate_a, worker_a = await _paused_at_payment(store, services, "f1")
    (record,) = await store.claim("b", lease_s=30)
    # Nothing logged before the decision (reserve's and ship's results ride in it): B re-sends
    # them under their keys and gets the stored replies.
    assert record.steps == ()
    result_b = await _engine(store, InProcessTransport(services.by_name()), "b").resume(record)
    assert result_b.status is SagaStatus.CONFIRMED
    gate_a.open.set()  # A wakes up: its payment replays; its decision write is refused
    result_a = await asyncio.wait_for(worker_a, 5)
    assert result_a.status is SagaStatus.CONFIRMED and result_a.replayed
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations


async def test_a_paused_worker_stops_when_the_saga_is_held_by_another(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    gate_a, worker_a = await _paused_at_payment(store, services, "f2")
    (record,) = await store.claim("b", lease_s=30)
    gate_b = Gate(InProcessTransport(services.by_name()), "payment")
    worker_b = asyncio.create_task(_engine(store, gate_b, "b").resume(record))
    await asyncio.wait_for(gate_b.reached.wait(), 5)
    gate_a.open.set()  # A gets the payment through first, but may not log it: B holds the saga
    with pytest.raises(OwnershipLost):
        await asyncio.wait_for(worker_a, 5)
    gate_b.open.set()  # B's payment replays the stored reply; B decides and confirms
    assert (await asyncio.wait_for(worker_b, 5)).status is SagaStatus.CONFIRMED
    stored = await store.load("f2")
    assert stored is not None and stored.status is SagaStatus.CONFIRMED
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations

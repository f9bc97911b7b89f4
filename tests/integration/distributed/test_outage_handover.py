"""Sagas held up by an outage go back to the pool (issue 9), in process on a real saga log.

Worker A cannot reach the payment service (every connection is refused); worker B can. A's
sagas, stalled at the payment step, are not renewed: B takes them over and confirms them, and
A stops driving them. Alone, A keeps its stalled sagas and finishes them when payment answers
again: the outage by itself fails nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.cluster.worker import Worker, WorkerSettings
from ordersaga.errors import ServiceUnreachable
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.proving.audit import audit
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.store import PostgresSagaStore, SagaStatus
from ordersaga.services.factory import Services, data_dir_urls
from ordersaga.transport.base import Transport
from ordersaga.transport.inprocess import InProcessTransport

from .conftest import ORDER_SAGA, create_order

pytestmark = pytest.mark.pg

LEASE = 0.6


class Cut(Transport):
    """Refuses every connection to ``service`` while :attr:`cut` is set."""

    def __init__(self, inner: Transport, service: str) -> None:
        self.inner = inner
        self.service = service
        self.cut = True

    async def send(self, command: Command) -> Reply:
        if self.cut and command.service == self.service:
            raise ServiceUnreachable(f"{self.service}: connection refused (test)")
        return await self.inner.send(command)

    async def probe(self, service: str, key: str) -> Probe:
        if self.cut and service == self.service:
            raise ServiceUnreachable(f"{service}: connection refused (test)")
        return await self.inner.probe(service, key)


def _worker(store: PostgresSagaStore, transport: Transport, pg_url: str, name: str) -> Worker:
    config = WorkerSettings(pg_url, {}, worker_id=name, poll=0.05, lease=LEASE, data_key=bytes(32))
    engine = SagaEngine(store, transport, [ORDER_SAGA], owner=name)
    return Worker(config, store, engine, log=lambda m: print(f"{name}: {m}"))


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # 20 s at most
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def _statuses(store: PostgresSagaStore, ids: list[str]) -> set[SagaStatus]:
    records = [await store.load(saga_id) for saga_id in ids]
    return {record.status for record in records if record is not None}


async def test_a_worker_that_cannot_reach_a_service_leaves_its_sagas_to_one_that_can(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    ids = [f"h{n}" for n in range(4)]
    for saga_id in ids:
        await create_order(store, saga_id)
    cut = Cut(InProcessTransport(services.by_name()), "payment")
    a = _worker(store, cut, pg_url, "a")
    running_a = asyncio.create_task(a.run())
    await _until(lambda: a.counts.claimed == 4 and a.counts.let_go == 4)
    assert len(a.engine.caller.stalled) == 4
    b = _worker(store, InProcessTransport(services.by_name()), pg_url, "b")
    running_b = asyncio.create_task(b.run())
    await _until(lambda: b.counts.confirmed == 4)
    await _until(lambda: a.running == 0)  # A's renewal found them taken and stopped them
    assert a.counts.lost == 4 and a.counts.confirmed == a.counts.failed == 0
    assert await _statuses(store, ids) == {SagaStatus.CONFIRMED}

    # Alone, A keeps a stalled saga (nobody else reaches payment) and finishes it once it can.
    b.stop()
    await asyncio.wait_for(running_b, 10)
    await create_order(store, "solo")
    await _until(lambda: "solo" in a._tasks and bool(a.engine.caller.stalled))
    await asyncio.sleep(3 * LEASE)  # several renewals pass while the service is unreachable
    assert "solo" in a._tasks and a.counts.lost == 4
    cut.cut = False
    await _until(lambda: a.counts.confirmed == 1)
    assert await _statuses(store, ["solo"]) == {SagaStatus.CONFIRMED}
    a.stop()
    await asyncio.wait_for(running_a, 10)
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations

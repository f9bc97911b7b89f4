"""The worker's lease handling, in process: hand back on stop, stop on a lost lease.

A :class:`Worker` runs against a real PostgreSQL saga log and in-process services whose payment
calls are held (the sagas stay in flight as long as a test wants).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.cluster.worker import Worker, WorkerSettings
from ordersaga.proving.audit import audit
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.store import PostgresSagaStore, SagaStatus
from ordersaga.services.factory import Services, data_dir_urls
from ordersaga.transport.inprocess import InProcessTransport

from .conftest import ORDER_SAGA, Gate, create_order

KEY = bytes(32)  # the in-process engine holds the vault; the settings only need a key

pytestmark = pytest.mark.pg


def _worker(
    store: PostgresSagaStore, gate: Gate, pg_url: str, *, lease: float, grace: float
) -> Worker:
    config = WorkerSettings(
        pg_url, {}, worker_id="w1", poll=0.05, lease=lease, grace=grace, data_key=KEY
    )
    engine = SagaEngine(store, gate, [ORDER_SAGA], owner="w1")
    return Worker(config, store, engine)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_a_stopping_worker_hands_its_sagas_back_at_once(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    for n in range(3):
        await create_order(store, f"g{n}")
    gate = Gate(InProcessTransport(services.by_name()), "payment")
    worker = _worker(store, gate, pg_url, lease=30.0, grace=0.1)
    running = asyncio.create_task(worker.run())
    await _until(lambda: worker.running == 3 and gate.reached.is_set())
    worker.stop()
    counts = await asyncio.wait_for(running, 5)
    assert counts.released == 3 and counts.claimed == 3
    # No 30 s wait for the leases: another worker takes the sagas over at once.
    claimed = await store.claim("w2", lease_s=30)
    assert sorted(record.saga_id for record in claimed) == ["g0", "g1", "g2"]
    engine = SagaEngine(store, InProcessTransport(services.by_name()), [ORDER_SAGA], owner="w2")
    results = [await engine.resume(record) for record in claimed]
    assert {result.status for result in results} == {SagaStatus.CONFIRMED}
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations


async def test_a_worker_stops_driving_a_saga_whose_lease_it_lost(
    store: PostgresSagaStore, services: Services, pg_url: str
) -> None:
    await create_order(store, "t1")
    gate = Gate(InProcessTransport(services.by_name()), "payment")
    worker = _worker(store, gate, pg_url, lease=0.3, grace=0.0)
    running = asyncio.create_task(worker.run())
    await _until(lambda: worker.running == 1 and gate.reached.is_set())
    # Another worker took it over (as after a pause of ours longer than the lease).
    await store.database.fetchone(
        "UPDATE sagas SET owner = 'thief', lease_until = lease_until + 60 WHERE saga_id = 't1'"
        " RETURNING saga_id"
    )
    await _until(lambda: worker.running == 0)  # the next renewal cancelled it
    assert worker.counts.lost == 1
    worker.stop()
    counts = await asyncio.wait_for(running, 5)
    assert counts.released == 0
    record = await store.load("t1")
    assert record is not None and record.status is SagaStatus.RUNNING  # the thief's to finish

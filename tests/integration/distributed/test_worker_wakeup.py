"""A worker wakes up when a submitter announces a saga (LISTEN/NOTIFY), not at its next poll.

The worker polls once an hour here: a saga submitted after its first (empty) claim can only be
picked up because the submitter's notification woke it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.cluster.submit import Submitter
from ordersaga.cluster.worker import Worker, WorkerSettings
from ordersaga.orders.intake import saga_request
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from ordersaga.orders.parse import Parsed, parse_line
from ordersaga.proving.audit import audit
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.store import PostgresSagaStore, SagaStatus
from ordersaga.saga.store.signals import WORK_CHANNEL, Wakeup
from ordersaga.services.factory import Services, data_dir_urls
from ordersaga.transport.inprocess import InProcessTransport

from .conftest import ORDER_SAGA, TEST_VAULT

pytestmark = pytest.mark.pg

AN_HOUR = 3600.0


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_notified_worker_claims_new_work_without_polling(
    store: PostgresSagaStore, services: Services, tmp_path: Path, pg_url: str
) -> None:
    config = WorkerSettings(
        pg_url, {}, worker_id="w1", poll=AN_HOUR, lease=30.0, data_key=bytes(32)
    )
    engine = SagaEngine(store, InProcessTransport(services.by_name()), [ORDER_SAGA], owner="w1")
    wakeup = await Wakeup.open(pg_url, [WORK_CHANNEL])
    worker = Worker(config, store, engine, wakeup=wakeup)
    running = asyncio.create_task(worker.run())
    submitter = Submitter(store)
    try:
        await _until(lambda: worker.counts.claims >= 1, "the first claim")
        assert worker.counts.claimed == 0  # nothing yet: the worker now waits up to an hour
        line = b"Order n1, User 456, Items: [{A, 2}], Payment: PayPal, Address: X, US"
        parsed = parse_line(line)
        assert isinstance(parsed, Parsed)
        saga = saga_request(TEST_VAULT, parsed)
        _, created = await submitter.submit(ORDER_SAGA_NAME, "n1", saga.input, saga.fingerprint)
        assert created
        await _until(lambda: worker.counts.confirmed == 1, "the notified saga to be driven")
        record = await store.load("n1")
        assert record is not None and record.status is SagaStatus.CONFIRMED
    finally:
        await submitter.close()
        worker.stop()
        await asyncio.wait_for(running, 10)
        await wakeup.close()
    assert worker.counts.claimed == 1
    report = await audit(pg_url, data_dir_urls(tmp_path))
    assert report.ok, report.violations

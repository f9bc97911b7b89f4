"""Worker liveness in a real PostgreSQL saga log: registration, heartbeat, the submitter's
warning while no worker lives."""

from __future__ import annotations

import asyncio
import sys

import pytest

from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.registry import STALE_AFTER, WorkerRegistry
from tests.integration.http.conftest import ordersaga_env

from .conftest import create_order, order

pytestmark = pytest.mark.pg


async def test_register_beat_hold_stop_and_silence(store: PostgresSagaStore) -> None:
    registry = WorkerRegistry(store)
    assert await registry.workers() == []
    await registry.register("w-a", "host-a", 101)
    await registry.register("w-b", "host-b", 202)
    await create_order(store, "live-1")
    await store.claim("w-a", 30.0)
    infos = {w.worker_id: w for w in await registry.workers()}
    assert infos["w-a"].live and infos["w-a"].held == 1 and infos["w-a"].pid == 101
    assert infos["w-b"].live and infos["w-b"].held == 0

    await registry.stopped("w-b")
    # w-a stops beating: its last heartbeat ages past the limit (as if killed long ago).
    await store.database.fetchone(
        "UPDATE workers SET heartbeat_at = heartbeat_at - ? WHERE worker_id = 'w-a'"
        " RETURNING worker_id",
        STALE_AFTER + 1,
    )
    infos = {w.worker_id: w for w in await registry.workers()}
    assert (infos["w-a"].state, infos["w-b"].state) == ("silent", "stopped")
    assert await registry.workers(include_gone=False) == []
    await registry.register("w-a", "host-a", 303)  # restarted under the same id
    assert [w.pid for w in await registry.workers(include_gone=False)] == [303]


async def test_submit_only_warns_while_no_worker_lives(pg_url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ordersaga", "run", "--submit-only", "--store", pg_url,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ordersaga_env(),
    )  # fmt: skip
    try:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write((order("lonely-1", 830_001, "A") + "\n").encode())
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"no live worker on this saga log" in line, line
        assert proc.returncode is None  # it waits for a worker, and says so
    finally:
        proc.kill()
        await proc.wait()

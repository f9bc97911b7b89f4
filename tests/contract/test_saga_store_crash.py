"""Durability is real: a writer killed with SIGKILL loses no acknowledged write (SQLite)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from ordersaga.saga.store import SagaStatus, open_store

# Fifty coroutines create sagas and move them on, with group commit; every line is printed only
# after the awaited write returned, i.e. after the commit that carried it.
WRITER = """
import asyncio, sys
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import SagaStatus, StepRecord, StepStatus, open_store

async def worker(store, w):
    n = 0
    while True:
        saga_id = f"w{w}-{n}"
        await store.create(saga_id, "order", {"n": n}, "fp")
        print("created", saga_id, flush=True)
        step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"n": n})
        await store.update(saga_id, steps=[step], status=SagaStatus.CONFIRMING)
        print("confirming", saga_id, flush=True)
        n += 1

async def main():
    store = await open_store(sys.argv[1])
    await asyncio.gather(*(worker(store, w) for w in range(50)))

asyncio.run(main())
"""

ACKS_BEFORE_KILL = 3000


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'saga.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < ACKS_BEFORE_KILL:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: writes are in flight
        lines += proc.stdout.readlines()  # whatever it acknowledged before dying
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    acked = [line.split() for line in lines if line.endswith("\n")]
    asyncio.run(_check(url, acked))


async def _check(url: str, acked: list[list[str]]) -> None:
    store = await open_store(url)
    try:
        records = {r.saga_id: r async for r in store.scan()}
    finally:
        await store.close()
    created = {saga_id for what, saga_id in acked if what == "created"}
    confirming = {saga_id for what, saga_id in acked if what == "confirming"}
    assert len(created) >= ACKS_BEFORE_KILL // 2
    assert created <= records.keys()
    for saga_id in confirming:
        record = records[saga_id]
        assert record.status is SagaStatus.CONFIRMING, saga_id
        assert record.step("reserve") is not None, saga_id

"""Recovery: finish every saga that the log shows unfinished, before new work is admitted.

Why running it is safe — also twice, also after a crash in the middle of recovery itself:

* It reads only the saga log, where every decision was written before it was acted on.
* A ``running`` saga goes forward from its first step without a logged result, re-sending that
  step under the same idempotency key: if the service applied it before the crash, it returns the
  stored reply instead of applying it again; if it never saw it, it applies it now.
* A ``compensating`` saga re-runs every compensation, and a ``confirming`` saga every
  confirmation. Both are idempotent in the services (a repeat returns the stored reply; a
  compensation of something never applied leaves a tombstone), so repeating those that already
  happened before the crash changes nothing.
* The terminal status is written in the same write as the last step records and a finished saga
  can never change again (the store refuses), so a saga's outcome is decided exactly once.
* Within a process the engine runs one runner per saga id: a second recovery of the same saga
  waits for the first. Across processes, ownership comes from outside: one executing process per
  SQLite data dir (a ``flock``, :mod:`ordersaga.local.lock`); on PostgreSQL one ``run`` or any
  number of workers, fenced by an epoch checked in every write (:mod:`.store.fencing`), and
  among workers a lease per saga.
"""

from __future__ import annotations

import asyncio

from ordersaga.saga.executor import SagaEngine, SagaResult


async def recover(engine: SagaEngine, *, concurrency: int = 64) -> list[SagaResult]:
    """Resume every unfinished saga in ``engine.store``; return their results."""
    records = await engine.store.unfinished()
    if not records:
        return []
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(record_index: int) -> SagaResult:
        async with gate:
            return await engine.resume(records[record_index])

    return list(await asyncio.gather(*(one(i) for i in range(len(records)))))

"""Worker liveness: a worker registers and heartbeats in the saga log; others look at it.

* :func:`registered` — a worker's registration for as long as the block runs: its row is
  written at start, its heartbeat every :data:`HEARTBEAT_EVERY` seconds, and it is marked
  stopped on the way out (a worker killed outright simply stops beating and goes silent).
  A failing heartbeat is retried at the next beat: liveness informs people, it never stops work.
* :func:`warn_without_workers` — what ``run --submit-only`` runs beside its pipeline: a warning
  on stderr while no live worker exists, once when that starts and once again when one is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable

from ordersaga.errors import StorageError
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.registry import HEARTBEAT_EVERY, STALE_AFTER, WorkerRegistry

__all__ = ["registered", "warn_without_workers"]


@contextlib.asynccontextmanager
async def registered(
    store: PostgresSagaStore,
    worker_id: str,
    log: Callable[[str], None],
    every: float = HEARTBEAT_EVERY,
) -> AsyncIterator[WorkerRegistry]:
    registry = WorkerRegistry(store)
    await registry.register(worker_id, socket.gethostname(), os.getpid())
    beating = asyncio.create_task(_beat(registry, worker_id, log, every), name="heartbeat")
    try:
        yield registry
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        with contextlib.suppress(StorageError):
            await registry.stopped(worker_id)


async def _beat(
    registry: WorkerRegistry, worker_id: str, log: Callable[[str], None], every: float
) -> None:
    failing = False
    while True:
        await asyncio.sleep(every)
        try:
            await registry.beat(worker_id)
        except StorageError as exc:
            if not failing:
                log(f"heartbeat failed (retrying every {every:g} s): {exc}")
            failing = True
        else:
            failing = False


async def warn_without_workers(
    store: PostgresSagaStore, warn: Callable[[str], None], every: float = HEARTBEAT_EVERY
) -> None:
    """Until cancelled: warn while the log has no live worker (see the module doc)."""
    registry = WorkerRegistry(store)
    alone = False
    while True:
        with contextlib.suppress(StorageError):
            live = await registry.workers(include_gone=False)
            if not live and not alone:
                warn(
                    "no live worker on this saga log (none heartbeat in the last"
                    f" {STALE_AFTER:g} s): the orders wait until one runs ('ordersaga worker')"
                )
            elif live and alone:
                warn(f"{len(live)} live workers again: the orders proceed")
            alone = not live
        await asyncio.sleep(every)

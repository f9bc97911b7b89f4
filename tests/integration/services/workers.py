"""Code that runs in separate OS processes for the concurrency tests (spawned: importable).

Each process opens the service on its own connection (SQLite) or pool (PostgreSQL), waits at a
barrier so all start together, then runs its commands. Half of them are private to the process;
the other half are *shared*: every process sends the very same command under the same key, so
duplicates race across processes too.
"""

from __future__ import annotations

import asyncio
import random
import traceback
from collections.abc import Callable
from typing import Any

from ordersaga.db import open_database
from ordersaga.participant.kit import RunnerOptions
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from tests.integration.services.helpers import (
    TODAY,
    authorize,
    capture,
    commit,
    release,
    reserve,
    void,
)

HOT_ITEM = "HOT"
HOT_USER = 77
AMOUNT = 300


def run_worker(kind: str, url: str, index: int, count: int, barrier: Any, queue: Any) -> None:
    """Process entry point: put a result dict (or an ``error`` traceback) on ``queue``."""
    try:
        queue.put(asyncio.run(_work(kind, url, index, count, barrier)))
    except BaseException:
        queue.put({"index": index, "error": traceback.format_exc()})


async def _open(kind: str, url: str, index: int) -> KitService:
    db = await open_database(url, durable=False, pool_size=2)
    rng = random.Random(index)

    async def pause() -> None:
        # Up to 1 ms between read and write, like a slower service: on two cores, eight
        # processes mostly take turns, and this makes their read-write windows overlap.
        await asyncio.sleep(rng.random() / 1000)

    options = RunnerOptions(rng=random.Random(index), pause=pause)
    if kind == "inventory":
        return await InventoryService.open(db, options=options)
    return await PaymentService.open(db, options=options, today=lambda: TODAY)


async def _work(kind: str, url: str, index: int, count: int, barrier: Any) -> dict[str, Any]:
    service = await _open(kind, url, index)
    action: Callable[[str], Command]
    compensate: Callable[[str], Command]
    confirm: Callable[[str], Command]
    if kind == "inventory":
        action, compensate, confirm = (lambda s: reserve(s, (HOT_ITEM, 1))), release, commit
    else:
        action, compensate, confirm = (lambda s: authorize(s, AMOUNT, user=HOT_USER)), void, capture
    barrier.wait(timeout=60)
    refusals: list[str] = []
    shared: dict[str, Any] = {}
    try:
        for n in range(count):
            own = f"p{index}-{n}"
            reply = await service.handle(action(own))
            if reply.ok and n % 4 == 3:
                assert (await service.handle(compensate(own))).ok
            elif reply.ok and n % 4 == 2:
                assert (await service.handle(confirm(own))).ok
            elif not reply.ok:
                refusals.append(str(reply.reason))
            shared[f"shared-{n}"] = (await service.handle(action(f"shared-{n}"))).to_json()
        stats = service.stats
        return {
            "index": index,
            "refusals": refusals,
            "shared": shared,
            "conflicts": stats.conflicts,
            "commits": stats.commits,
            "replays": stats.replays,
        }
    finally:
        await service.close()

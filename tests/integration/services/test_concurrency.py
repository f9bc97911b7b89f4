"""Optimistic locking under real concurrency: no oversell, no lost update, nothing twice.

"Real" means independent connections: eight service instances, each with its own connection
(SQLite) or pool (PostgreSQL), and for the strongest tests eight separate OS processes. A single
connection would serialise everything and prove nothing, so every test also asserts that
version conflicts were actually hit (``stats.conflicts > 0``) and survived.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from decimal import Decimal
from typing import Any

import pytest

from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import ReplyStatus
from ordersaga.services.config import InventoryConfig, ItemSpec, PaymentConfig
from tests.integration.services.helpers import (
    assert_credit_consistent,
    assert_stock_conserved,
    authorize,
    capture,
    commit,
    interleaving_options,
    items,
    open_inventory,
    open_payment,
    release,
    reserve,
    void,
)
from tests.integration.services.workers import AMOUNT, HOT_ITEM, HOT_USER, run_worker

WRITERS = 8
STOCK = 40
LIMIT = 10_000  # room for 33 authorizations of 3.00
HOT_INVENTORY = InventoryConfig(
    {HOT_ITEM: ItemSpec(price_cents=100, stock=STOCK, weight_kg=Decimal("1"))}
)
HOT_PAYMENT = PaymentConfig(frozenset({"CreditCard"}), 100_000, {HOT_USER: LIMIT})


async def _writers(opener: Any, url: str, config: Any) -> list[KitService]:
    await (await opener(url, config)).close()  # seed once, then open without config
    return [
        await opener(url, None, options=interleaving_options(seed), pool_size=2)
        for seed in range(WRITERS)
    ]


async def _hammer(services: list[KitService], action: Any, undo: Any, done: Any) -> list[Any]:
    """Every writer acts 12 times at once; some actions are then compensated or confirmed."""

    async def writer(index: int, service: KitService) -> list[Any]:
        rng = random.Random(index)
        replies = []
        for n in range(12):
            saga = f"w{index}-{n}"
            reply = await service.handle(action(saga))
            replies.append(reply)
            if reply.ok and rng.random() < 0.3:
                assert (await service.handle(undo(saga))).ok
            elif reply.ok and rng.random() < 0.3:
                assert (await service.handle(done(saga))).ok
        return replies

    results = await asyncio.gather(*(writer(i, s) for i, s in enumerate(services)))
    return [reply for replies in results for reply in replies]


async def test_concurrent_reservations_never_oversell(db_url: str) -> None:
    services = await _writers(open_inventory, db_url, HOT_INVENTORY)
    try:
        replies = await _hammer(services, lambda s: reserve(s, (HOT_ITEM, 1)), release, commit)
        db = services[0].db
        await assert_stock_conserved(db)
        hot = (await items(db))[HOT_ITEM]
        assert hot["available"] >= 0 and hot["initial_stock"] == STOCK
        refused = [r for r in replies if r.status is ReplyStatus.REFUSED]
        assert refused, "demand (96) exceeds stock (40): some reservations must be refused"
        assert all(str(r.reason).startswith("insufficient stock") for r in refused)
        ok = [r for r in replies if r.ok]
        rows = await db.fetchall("SELECT state FROM reservations")
        assert len(rows) == len(ok)  # each success is exactly one reservation
        assert sum(s.stats.conflicts for s in services) > 0
    finally:
        for service in services:
            await service.close()


async def test_concurrent_authorizations_never_exceed_the_limit(db_url: str) -> None:
    services = await _writers(open_payment, db_url, HOT_PAYMENT)
    try:
        replies = await _hammer(
            services, lambda s: authorize(s, AMOUNT, user=HOT_USER), void, capture
        )
        db = services[0].db
        await assert_credit_consistent(db)
        account = await db.fetchone("SELECT * FROM accounts WHERE user_id = ?", HOT_USER)
        assert account is not None
        assert account["authorized_cents"] + account["captured_cents"] <= LIMIT
        refused = [r for r in replies if r.status is ReplyStatus.REFUSED]
        assert refused and all(str(r.reason).startswith("credit limit") for r in refused)
        declined = await db.fetchall("SELECT * FROM payments WHERE state = 'declined'")
        assert len(declined) == len(refused)
        assert sum(s.stats.conflicts for s in services) > 0
    finally:
        for service in services:
            await service.close()


@pytest.mark.parametrize("kind", ["inventory", "payment"])
async def test_separate_processes(db_url: str, kind: str) -> None:
    """Eight OS processes, each with its own connection, act on one row at once."""
    if kind == "inventory":
        await (await open_inventory(db_url, HOT_INVENTORY)).close()
    else:
        await (await open_payment(db_url, HOT_PAYMENT)).close()
    count = 10
    results = await asyncio.to_thread(_run_processes, kind, db_url, count)
    service = await (open_inventory if kind == "inventory" else open_payment)(db_url, None)
    try:
        if kind == "inventory":
            await assert_stock_conserved(service.db)
        else:
            await assert_credit_consistent(service.db)
        # Shared commands: every process got the same reply for each key, and it applied once.
        for n in range(count):
            replies = {repr(r["shared"][f"shared-{n}"]) for r in results}
            assert len(replies) == 1, replies
        assert sum(r["replays"] for r in results) >= (WRITERS - 1) * count
        refusals = [reason for r in results for reason in r["refusals"]]
        expected = "insufficient stock" if kind == "inventory" else "credit limit"
        assert refusals and all(reason.startswith(expected) for reason in refusals)
        assert sum(r["conflicts"] for r in results) > 0, "no conflict: nothing really raced"
    finally:
        await service.close()


def _run_processes(kind: str, url: str, count: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    queue = ctx.Queue()
    processes = [
        ctx.Process(target=run_worker, args=(kind, url, i, count, barrier, queue))
        for i in range(WRITERS)
    ]
    for process in processes:
        process.start()
    try:
        results = [queue.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, errors[0]
    return results

"""A service's batch on PostgreSQL runs pipelined: its writes are queued, not waited for.

The record and the claim are plain INSERTs there, so a repeat or a taken resource fails the
whole batch, which then runs again with a SAVEPOINT per command: each command still gets its
precise outcome (a replay, a refusal, its own error) and its neighbours commit. A stale write is
found at the commit, before it. Every test runs on SQLite too, where the same batch runs as a
plain transaction: the outcomes must be the same.
"""

from __future__ import annotations

import asyncio

import pytest

from ordersaga.db import open_database
from ordersaga.errors import ConflictError, StorageError
from ordersaga.participant.kit import RunnerOptions
from ordersaga.protocol.messages import KeyState, ReplyStatus
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import (
    assert_stock_conserved,
    items,
    open_inventory,
    release,
    reserve,
)


def _pipelined_on_postgresql(service: InventoryService) -> None:
    assert service.db.pipelined == (service.db.dialect == "postgresql")


async def test_a_repeat_in_a_batch_is_replayed_and_its_neighbours_commit(
    inventory: InventoryService,
) -> None:
    _pipelined_on_postgresql(inventory)
    first = await inventory.handle(reserve("s0", ("A", 1)))
    commits, applied = inventory.stats.commits, inventory.stats.applied
    replies = await asyncio.gather(
        inventory.handle(reserve("s1", ("A", 1))),
        inventory.handle(reserve("s0", ("A", 1))),  # recorded in an earlier batch
        inventory.handle(reserve("s2", ("A", 1))),
        inventory.handle(reserve("s1", ("A", 1))),  # recorded earlier in this batch
    )
    assert replies[1] == first and replies[3] == replies[0]
    assert replies[0].ok and replies[2].ok
    assert inventory.stats.commits == commits + 1  # one commit for the batch, still
    assert inventory.stats.applied == applied + 2 and inventory.stats.replays == 2
    assert (await items(inventory.db))["A"]["held"] == 3
    await assert_stock_conserved(inventory.db)


async def test_a_claim_on_a_taken_resource_is_refused_and_its_neighbours_commit(
    inventory: InventoryService,
) -> None:
    _pipelined_on_postgresql(inventory)
    tombstoned = await inventory.handle(release("s1"))  # before its reservation: a tombstone
    assert tombstoned.ok
    replies = await asyncio.gather(
        *(inventory.handle(reserve(f"s{i}", ("A", 2))) for i in range(3))
    )
    assert replies[0].ok and replies[2].ok
    assert replies[1].status is ReplyStatus.REFUSED
    assert replies[1].reason == "reservation cancelled"
    assert (await items(inventory.db))["A"]["held"] == 4
    probe = await inventory.probe(reserve("s1", ("A", 2)).key)
    assert probe.state is KeyState.REFUSED and probe.reply == replies[1]
    await assert_stock_conserved(inventory.db)


async def test_a_stale_write_is_caught_before_the_commit_and_retried(db_url: str) -> None:
    """The plan is decided outside the batch (``pause``); meanwhile another connection moves
    the item's version: the batch's CAS changes no row, nothing commits, the command is
    decided again and then applies."""
    other = await open_database(db_url, durable=False)
    moved = 0

    async def move_the_item() -> None:
        nonlocal moved
        if not moved:
            async with other.transaction() as tx:
                moved = await tx.execute(
                    "UPDATE items SET version = version + 1 WHERE item_id = 'A'"
                )

    service = await open_inventory(db_url, options=RunnerOptions(pause=move_the_item))
    try:
        _pipelined_on_postgresql(service)
        reply = await service.handle(reserve("s1", ("A", 3)))
        assert reply.ok and moved == 1
        assert service.stats.conflicts == 1
        assert (await items(service.db))["A"]["held"] == 3
        await assert_stock_conserved(service.db)
    finally:
        await service.close()
        await other.close()


async def test_an_error_mid_batch_fails_its_command_alone(inventory: InventoryService) -> None:
    """A release whose restock breaks a CHECK constraint (its item's ``held`` was zeroed behind
    the service's back) fails with that error, not a conflict, while the commands queued before
    and after it in the same batch commit."""
    _pipelined_on_postgresql(inventory)
    assert (await inventory.handle(reserve("broken", ("B", 1)))).ok
    async with inventory.db.transaction() as tx:
        await tx.execute("UPDATE items SET held = 0, available = 10 WHERE item_id = 'B'")
    commits = inventory.stats.commits
    outcomes = await asyncio.gather(
        inventory.handle(reserve("s0", ("A", 1))),
        inventory.handle(release("broken")),
        inventory.handle(reserve("s1", ("A", 1))),
        return_exceptions=True,
    )
    before, failure, after = outcomes
    assert isinstance(failure, StorageError) and not isinstance(failure, ConflictError)
    assert not isinstance(before, BaseException) and before.ok
    assert not isinstance(after, BaseException) and after.ok
    assert inventory.stats.commits == commits + 1
    assert (await items(inventory.db))["A"]["held"] == 2
    probe = await inventory.probe(release("broken").key)
    assert probe.state is KeyState.UNKNOWN  # the failed release recorded nothing
    row = await inventory.db.fetchone(
        "SELECT state FROM reservations WHERE ref = 'broken:inventory'"
    )
    assert row is not None and row["state"] == "held"


@pytest.mark.parametrize("size", [1, 8])
async def test_batches_commit_durably_on_the_pipelined_connection(db_url: str, size: int) -> None:
    """Another connection sees each batch's effects when its callers get their replies."""
    service = await open_inventory(db_url)
    other = await open_database(db_url, durable=False)
    try:
        replies = await asyncio.gather(
            *(service.handle(reserve(f"s{i}", ("A", 1))) for i in range(size))
        )
        assert all(reply.ok for reply in replies)
        keys = await other.fetchall("SELECT key FROM idempotency")
        assert len(keys) == size
        row = await other.fetchone("SELECT held FROM items WHERE item_id = 'A'")
        assert row == {"held": size}
    finally:
        await other.close()
        await service.close()

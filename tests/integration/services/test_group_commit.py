"""Group commit in the services: concurrent commands share one local transaction and one commit.

Each caller gets its reply only after the commit carrying its command; a command that fails in a
batch fails alone; repeats in one batch apply once; commands of one batch see each other's
effects. Every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, OrderedDict

import pytest

from ordersaga.db import open_database
from ordersaga.errors import ConflictError
from ordersaga.participant.kit import LockingPolicy, RunnerOptions, _is_canonical
from ordersaga.participant.records import _round_trips
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import KeyState, ReplyStatus
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import (
    Case,
    assert_stock_conserved,
    items,
    open_inventory,
    release,
    reserve,
)

QUICK = LockingPolicy(max_attempts=2, initial_backoff=0.0001, max_backoff=0.0002)


async def test_concurrent_commands_share_one_commit(inventory: InventoryService) -> None:
    replies = await asyncio.gather(
        *(inventory.handle(reserve(f"s{i}", ("A", 1))) for i in range(20))
    )
    assert all(reply.ok for reply in replies)
    assert (inventory.stats.commits, inventory.stats.applied) == (1, 20)
    assert (await items(inventory.db))["A"]["held"] == 20
    await assert_stock_conserved(inventory.db)


async def test_commands_of_one_batch_see_each_other(inventory: InventoryService) -> None:
    """B has 10 in stock: of 15 concurrent one-unit reservations exactly 10 win, no race lost."""
    replies = await asyncio.gather(
        *(inventory.handle(reserve(f"s{i}", ("B", 1))) for i in range(15))
    )
    assert sum(reply.ok for reply in replies) == 10
    refused = [r for r in replies if r.status is ReplyStatus.REFUSED]
    assert len(refused) == 5 and all("insufficient stock" in str(r.reason) for r in refused)
    assert inventory.stats.conflicts == 0 and inventory.stats.commits == 1
    await assert_stock_conserved(inventory.db)
    # Each idempotency record keeps its reply's status (the audit counts the ``ok`` ones).
    statuses = await inventory.db.fetchall("SELECT status FROM idempotency")
    assert sorted(r["status"] for r in statuses) == ["ok"] * 10 + ["refused"] * 5


async def test_repeats_in_one_batch_apply_once(case: Case, service: KitService) -> None:
    command = case.action("s1")
    replies = await asyncio.gather(*(service.handle(command) for _ in range(5)))
    assert replies[0].ok and all(reply == replies[0] for reply in replies)
    assert (service.stats.applied, service.stats.replays, service.stats.commits) == (1, 4, 1)
    probe = await service.probe(command.key)
    assert probe.state is KeyState.APPLIED and probe.reply == replies[0]


async def test_a_reply_is_durable_when_it_arrives(db_url: str) -> None:
    """Another connection already sees the command's effects when its caller gets the reply."""
    service = await open_inventory(db_url)
    other = await open_database(db_url, durable=False)
    try:
        replies = await asyncio.gather(
            *(service.handle(reserve(f"s{i}", ("A", 1))) for i in range(3))
        )
        assert all(reply.ok for reply in replies)
        rows = await other.fetchall("SELECT ref, state FROM reservations ORDER BY ref")
        assert [(r["ref"], r["state"]) for r in rows] == [
            (f"s{i}:inventory", "held") for i in range(3)
        ]
        keys = await other.fetchall("SELECT key FROM idempotency")
        assert len(keys) == 3
    finally:
        await other.close()
        await service.close()


@pytest.mark.parametrize("damage", ["missing item", "bad json"])
async def test_a_failing_command_fails_alone(db_url: str, damage: str) -> None:
    """One release in a batch breaks (its reservation names no real item, or is unreadable):
    it gets its own error and leaves nothing behind, while its batch-mates commit."""
    service = await open_inventory(db_url, options=RunnerOptions(locking=QUICK))
    try:
        assert (await service.handle(reserve("broken", ("A", 1)))).ok
        lines = '[{"item_id": "GONE", "quantity": 1}]' if damage == "missing item" else "[{"
        async with service.db.transaction() as tx:
            await tx.execute(
                "UPDATE reservations SET lines = ? WHERE ref = 'broken:inventory'", lines
            )
        before = (await items(service.db))["A"]
        commits = service.stats.commits
        outcomes = await asyncio.gather(
            service.handle(release("broken")),
            *(service.handle(reserve(f"s{i}", ("A", 2))) for i in range(5)),
            return_exceptions=True,
        )
        failure, *replies = outcomes
        assert isinstance(failure, ConflictError if damage == "missing item" else ValueError)
        assert all(not isinstance(r, BaseException) and r.ok for r in replies)
        after = (await items(service.db))["A"]
        assert after["held"] == before["held"] + 10  # the five reservations, nothing else
        assert service.stats.commits == commits + 1  # ... still in one commit together
        row = await service.db.fetchone(
            "SELECT state FROM reservations WHERE ref = 'broken:inventory'"
        )
        assert row is not None and row["state"] == "held"
        probe = await service.probe(release("broken").key)
        assert probe.state is KeyState.UNKNOWN  # the failed release recorded nothing
    finally:
        await service.close()


async def test_max_batch_1_commits_each_command_alone(db_url: str) -> None:
    service = await open_inventory(db_url, options=RunnerOptions(max_batch=1))
    try:
        replies = await asyncio.gather(
            *(service.handle(reserve(f"s{i}", ("A", 1))) for i in range(6))
        )
        assert all(reply.ok for reply in replies)
        assert (service.stats.commits, service.stats.applied) == (6, 6)
        await assert_stock_conserved(service.db)
    finally:
        await service.close()


async def test_a_random_mix_keeps_stock_conserved(inventory: InventoryService) -> None:
    """Reservations, releases, commits and repeats of them, all at once, in a few batches."""
    rng = random.Random(5)
    commands = []
    for n in range(40):
        saga = f"m{n}"
        commands.append(reserve(saga, (rng.choice("AB"), rng.randint(1, 3))))
        if rng.random() < 0.5:
            commands.append(release(saga))
    rng.shuffle(commands)
    commands += commands[:10]  # repeats, in other batches or the same
    for start in range(0, len(commands), 17):
        await asyncio.gather(*(inventory.handle(c) for c in commands[start : start + 17]))
    await assert_stock_conserved(inventory.db)
    assert inventory.stats.conflicts == 0


def test_a_reply_body_is_handed_back_as_is_only_when_it_is_canonical() -> None:
    assert _is_canonical({}) and _is_canonical({"a": 1, "b": "x", "c": None})
    assert not _is_canonical({"b": 1, "a": 2})  # not sorted: JSON would reorder it
    assert not _is_canonical({"a": [1]}) and not _is_canonical({"a": 1.5})
    assert not _is_canonical({"a": (1,)})
    # Another mapping, even a sorted one, is read back: the caller gets a plain dict, as a repeat.
    assert not _is_canonical(OrderedDict(a=1)) and not _is_canonical(Counter(a=1))


def test_a_nested_reply_body_round_trips_only_when_every_level_is_json_as_is() -> None:
    line = {"item_id": "A", "price_cents": 100, "quantity": 2}
    assert _round_trips({"items_cents": 200, "lines": [line, dict(line)], "weight_kg": "1"})
    assert _round_trips({"a": [], "b": {}, "c": [[1, "x"], {"d": None, "e": True}]})
    assert not _round_trips({"lines": [{"quantity": 2, "item_id": "A"}]})  # a line not sorted
    assert not _round_trips({"lines": [line, (1, 2)]})  # a tuple reads back as a list
    assert not _round_trips({"lines": [[1.5]]})  # a float, two levels down
    assert not _round_trips({"a": {1: "x"}})  # a key that is not a string
    assert not _round_trips({"a": [OrderedDict(b=1)]})  # another mapping reads back as a dict
    assert not _round_trips({"b": 1, "a": [1]})


async def test_a_nested_reply_handed_back_is_what_a_repeat_reads_back(
    inventory: InventoryService,
) -> None:
    first = await inventory.handle(reserve("s1", ("B", 1), ("A", 2)))
    again = await inventory.handle(reserve("s1", ("B", 1), ("A", 2)))
    assert first.status is ReplyStatus.OK and again == first
    assert first.body_text() == again.body_text()
    assert [type(line) for line in first.body["lines"]] == [dict, dict]

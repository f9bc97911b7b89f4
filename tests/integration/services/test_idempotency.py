"""Idempotency, tombstones and status probes: shared by all three services, on every backend."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, KeyState, Reply, ReplyStatus, canonical_json
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import (
    Case,
    dump,
    interleaving_options,
    items,
    open_inventory,
    release,
    reserve,
)


def _other_payload(command: Command) -> Command:
    return dataclasses.replace(command, payload={**command.payload, "order_id": "someone-else"})


@pytest.mark.parametrize("times", [2, 5])
async def test_repeats_take_effect_once_with_identical_replies(
    case: Case, service: KitService, times: int
) -> None:
    first = await service.handle(case.action("s1"))
    assert first.ok, first
    after_first = await dump(service.db, case.tables)
    replies = [await service.handle(case.action("s1")) for _ in range(times - 1)]
    assert all(reply == first for reply in replies)
    assert await dump(service.db, case.tables) == after_first
    assert service.stats.replays == times - 1
    assert service.stats.commits == 1


@pytest.mark.parametrize("phase", ["compensate", "confirm"])
async def test_repeated_compensations_and_confirmations(
    case: Case, service: KitService, phase: str
) -> None:
    await service.handle(case.action("s1"))
    command = case.compensate("s1") if phase == "compensate" else case.confirm("s1")
    first = await service.handle(command)
    assert first.ok
    after_first = await dump(service.db, case.tables)
    for _ in range(3):
        assert await service.handle(command) == first
    assert await dump(service.db, case.tables) == after_first


async def test_concurrent_duplicates_apply_once(case: Case, db_url: str) -> None:
    """Five deliveries of one command at once, through five connections, race for real."""
    await (await case.open(db_url)).close()  # seed once
    services = [
        await case.open(db_url, None, options=interleaving_options(seed)) for seed in range(5)
    ]
    try:
        replies = await asyncio.gather(*(s.handle(case.action("s1")) for s in services))
        assert replies[0].ok
        assert all(reply == replies[0] for reply in replies)
        assert sum(s.stats.commits for s in services) == 1
        # The losers really raced: they hit the key's primary key, then replayed the winner.
        assert sum(s.stats.conflicts for s in services) >= 1
        assert sum(s.stats.replays for s in services) == 4
        table = case.tables[-2]  # the resource table
        rows = await services[0].db.fetchall(f"SELECT * FROM {table} WHERE ref = 's1:{case.name}'")
        assert len(rows) == 1
        keys = await services[0].db.fetchall("SELECT key FROM idempotency")
        assert [row["key"] for row in keys] == [case.action("s1").key]
    finally:
        for s in services:
            await s.close()


async def test_same_key_other_request_is_a_conflict(case: Case, service: KitService) -> None:
    await service.handle(case.action("s1"))
    before = await dump(service.db, case.tables)
    reply = await service.handle(_other_payload(case.action("s1")))
    assert reply.status is ReplyStatus.CONFLICT and reply.body == {}
    assert "already used for a different request" in (reply.reason or "")
    assert await dump(service.db, case.tables) == before


async def test_compensation_before_action_leaves_a_tombstone(
    case: Case, service: KitService
) -> None:
    before = await dump(service.db, case.tables[:-2])  # the tables the action would change
    compensated = await service.handle(case.compensate("s1"))
    assert compensated.ok, compensated
    late = await service.handle(case.action("s1"))
    assert late == Reply.refused(f"{case.noun} cancelled")
    assert await dump(service.db, case.tables[:-2]) == before
    row = await service.db.fetchone(f"SELECT * FROM {case.tables[-2]}")
    assert row is not None
    assert (row["ref"], row["order_id"], row["tombstone"]) == (f"s1:{case.name}", "s1", 1)
    # The late action's refusal is stored too, and compensating again changes nothing.
    assert await service.handle(case.action("s1")) == late
    assert await service.handle(case.compensate("s1")) == compensated
    assert not (await service.handle(case.confirm("s1"))).ok


async def test_concurrent_action_and_compensation_agree(case: Case, db_url: str) -> None:
    """Whichever wins, the action and its compensation never both leave effects behind."""
    await (await case.open(db_url)).close()
    for round_ in range(6):
        a, b = [
            await case.open(db_url, None, options=interleaving_options(round_ * 2 + i))
            for i in range(2)
        ]
        try:
            saga = f"s{round_}"
            action, compensation = await asyncio.gather(
                a.handle(case.action(saga)), b.handle(case.compensate(saga))
            )
            assert compensation.ok
            row = await a.db.fetchone(
                f"SELECT * FROM {case.tables[-2]} WHERE ref = ?", f"{saga}:{case.name}"
            )
            assert row is not None
            if action.ok:  # the action came first and was then compensated
                assert row["tombstone"] == 0
            else:
                assert action.reason == f"{case.noun} cancelled"
                assert row["tombstone"] == 1
            assert row["state"] == {"inventory": "released", "shipping": "cancelled"}.get(
                case.name, "voided"
            )
        finally:
            await a.close()
            await b.close()


async def test_probe_reports_what_became_of_each_key(case: Case, service: KitService) -> None:
    assert (await service.probe(case.action("s1").key)).state is KeyState.UNKNOWN
    applied = await service.handle(case.action("s1"))
    probe = await service.probe(case.action("s1").key)
    assert (probe.state, probe.reply) == (KeyState.APPLIED, applied)
    # A tombstone cancels an action the service never saw: the probe says refused.
    await service.handle(case.compensate("s2"))
    probe = await service.probe(case.action("s2").key)
    assert (probe.state, probe.reply) == (KeyState.REFUSED, Reply.refused(f"{case.noun} cancelled"))
    assert (await service.probe(case.compensate("s2").key)).state is KeyState.APPLIED
    assert (await service.probe(case.confirm("s2").key)).state is KeyState.UNKNOWN
    assert (await service.probe("not a key")).state is KeyState.UNKNOWN
    assert (await service.probe("s1:x:action")).state is KeyState.UNKNOWN


async def test_the_idempotency_record_keeps_the_replys_status(
    inventory: InventoryService,
) -> None:
    """The audit reads it (an ``ok`` record is an applied operation, CONTRACT.md invariant 6)."""
    assert (await inventory.handle(reserve("s1", ("A", 1)))).ok
    assert (await inventory.handle(reserve("s2", ("C", 1)))).status is ReplyStatus.REFUSED
    rows = await inventory.db.fetchall("SELECT key, status FROM idempotency ORDER BY key")
    assert [(r["key"], r["status"]) for r in rows] == [
        (reserve("s1", ("A", 1)).key, "ok"),
        (reserve("s2", ("C", 1)).key, "refused"),
    ]


async def test_a_plan_decided_before_its_batch_keeps_the_status_and_replays(
    db_url: str,
) -> None:
    """The same with a pause between the read and the write phase (the plan is decided outside
    the batch, then recorded by ``apply``); repeats there replay, and count as replays."""
    inventory = await open_inventory(db_url, options=interleaving_options())
    commands = [reserve("s1", ("A", 1)), reserve("s2", ("C", 1))]
    try:
        first = [await inventory.handle(command) for command in commands]
        assert [reply.status for reply in first] == [ReplyStatus.OK, ReplyStatus.REFUSED]
        rows = await inventory.db.fetchall("SELECT key, status FROM idempotency ORDER BY key")
        assert [r["status"] for r in rows] == ["ok", "refused"]
        assert [await inventory.handle(command) for command in commands] == first
        assert (inventory.stats.replays, inventory.stats.commits) == (2, 2)
    finally:
        await inventory.close()


async def test_probe_of_a_refusal(inventory: InventoryService) -> None:
    refused = await inventory.handle(reserve("s1", ("C", 1)))
    probe = await inventory.probe(reserve("s1", ("C", 1)).key)
    assert (probe.state, probe.reply) == (KeyState.REFUSED, refused)


async def test_a_refusal_is_stored_and_repeated_even_after_stock_returns(
    inventory: InventoryService,
) -> None:
    assert (await inventory.handle(reserve("s1", ("B", 10)))).ok
    refused = await inventory.handle(reserve("s2", ("B", 1)))
    assert refused.status is ReplyStatus.REFUSED
    await inventory.handle(release("s1"))
    assert await inventory.handle(reserve("s2", ("B", 1))) == refused
    assert (await items(inventory.db))["B"]["available"] == 10


async def test_compensating_a_refused_action_is_harmless(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("C", 1)))
    assert (await inventory.handle(release("s1"))).ok
    stock = await items(inventory.db)
    assert stock["C"]["available"] == 0 and stock["C"]["held"] == 0


async def test_every_reply_carries_its_bodys_canonical_json_and_the_record_the_replys(
    case: Case, service: KitService
) -> None:
    """Services attach a body's JSON they put together themselves (and the life cycle its
    states'): it must be the canonical JSON of the body, byte for byte, and the record must
    store the canonical JSON of the whole reply (repeats and the saga log compare them)."""
    commands = [
        case.action("s1"),
        case.confirm("s1"),
        case.action("s2"),
        case.compensate("s2"),
        case.compensate("s3"),  # a tombstone
        case.action("s3"),  # refused: cancelled
    ]
    for command in commands:
        reply = await service.handle(command)
        assert reply.body_text() == canonical_json(dict(reply.body)), command
        row = await service.db.fetchone("SELECT reply FROM idempotency WHERE key = ?", command.key)
        assert row is not None and row["reply"] == canonical_json(reply.to_json()), command
        assert await service.handle(command) == reply


async def test_a_reservation_of_several_items_carries_its_bodys_canonical_json(
    inventory: InventoryService,
) -> None:
    reply = await inventory.handle(reserve("s1", ("B", 3), ("A", 1), ("B", 2)))
    assert reply.ok, reply
    assert reply.body["weight_kg"] == "6.5"
    assert reply.body_text() == canonical_json(dict(reply.body))
    row = await inventory.db.fetchone("SELECT lines FROM reservations WHERE ref = 's1:inventory'")
    assert row is not None and row["lines"] == canonical_json(reply.body["lines"])

"""Inventory business rules (CONTRACT.md section 4), on every backend."""

from __future__ import annotations

from ordersaga.protocol.messages import Command, Phase, ReplyStatus
from ordersaga.services.inventory import InventoryService
from tests.integration.services.helpers import (
    assert_stock_conserved,
    commit,
    dump,
    items,
    key,
    release,
    reserve,
)


async def test_reserve_all_items_reports_price_and_weight(inventory: InventoryService) -> None:
    reply = await inventory.handle(reserve("s1", ("B", 1), ("A", 2)))
    assert reply.status is ReplyStatus.OK
    assert reply.body == {
        "items_cents": 2 * 1250 + 300,
        "weight_kg": "2.2",
        "lines": [
            {"item_id": "A", "quantity": 2, "price_cents": 1250},
            {"item_id": "B", "quantity": 1, "price_cents": 300},
        ],
    }
    stock = await items(inventory.db)
    assert (stock["A"]["available"], stock["A"]["held"], stock["A"]["sold"]) == (98, 2, 0)
    assert (stock["B"]["available"], stock["B"]["held"]) == (9, 1)
    await assert_stock_conserved(inventory.db)


async def test_same_item_twice_is_summed(inventory: InventoryService) -> None:
    reply = await inventory.handle(reserve("s1", ("A", 2), ("A", 3)))
    assert reply.body["lines"] == [{"item_id": "A", "quantity": 5, "price_cents": 1250}]
    assert reply.body["weight_kg"] == "2.5"
    assert (await items(inventory.db))["A"]["held"] == 5


async def test_unknown_item_refuses_everything(inventory: InventoryService) -> None:
    before = await dump(inventory.db, ["items", "reservations"])
    reply = await inventory.handle(reserve("s1", ("A", 1), ("Z", 1)))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "unknown item 'Z'"
    assert await dump(inventory.db, ["items", "reservations"]) == before


async def test_insufficient_stock_refuses_everything(inventory: InventoryService) -> None:
    before = await dump(inventory.db, ["items", "reservations"])
    reply = await inventory.handle(reserve("s1", ("A", 1), ("C", 2)))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "insufficient stock for 'C': 0 available, 2 wanted"
    assert await dump(inventory.db, ["items", "reservations"]) == before


async def test_exact_stock_can_be_reserved_then_nothing_more(inventory: InventoryService) -> None:
    assert (await inventory.handle(reserve("s1", ("B", 10)))).ok
    refused = await inventory.handle(reserve("s2", ("B", 1)))
    assert refused.reason == "insufficient stock for 'B': 0 available, 1 wanted"


async def test_summed_duplicates_are_checked_against_stock(inventory: InventoryService) -> None:
    reply = await inventory.handle(reserve("s1", ("B", 6), ("B", 5)))
    assert reply.reason == "insufficient stock for 'B': 10 available, 11 wanted"


async def test_release_returns_stock(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 4), ("B", 2)))
    reply = await inventory.handle(release("s1"))
    assert reply.status is ReplyStatus.OK
    assert reply.body == {"state": "released"}
    stock = await items(inventory.db)
    assert (stock["A"]["available"], stock["A"]["held"]) == (100, 0)
    assert (stock["B"]["available"], stock["B"]["held"]) == (10, 0)
    await assert_stock_conserved(inventory.db)


async def test_commit_sells_held_stock(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 4)))
    reply = await inventory.handle(commit("s1"))
    assert reply.body == {"state": "committed"}
    stock = (await items(inventory.db))["A"]
    assert (stock["available"], stock["held"], stock["sold"]) == (96, 0, 4)
    await assert_stock_conserved(inventory.db)


async def test_committed_cannot_be_released(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 4)))
    await inventory.handle(commit("s1"))
    before = await dump(inventory.db, ["items", "reservations"])
    reply = await inventory.handle(release("s1"))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "illegal transition: reservation is committed, cannot release"
    assert await dump(inventory.db, ["items", "reservations"]) == before


async def test_released_cannot_be_committed(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 4)))
    await inventory.handle(release("s1"))
    reply = await inventory.handle(commit("s1"))
    assert reply.reason == "illegal transition: reservation is released, cannot commit"
    await assert_stock_conserved(inventory.db)


async def test_commit_of_unseen_reservation_is_refused(inventory: InventoryService) -> None:
    reply = await inventory.handle(commit("nobody"))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "no reservation 'nobody:inventory' to commit"
    assert await inventory.db.fetchall("SELECT * FROM reservations") == []


async def test_commit_payload_may_omit_the_order_id(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 1)))
    command = Command("inventory", "commit", key("s1", "inventory", Phase.CONFIRM), {})
    assert (await inventory.handle(command)).body == {"state": "committed"}


async def test_release_for_another_order_is_refused(inventory: InventoryService) -> None:
    await inventory.handle(reserve("s1", ("A", 1)))
    reply = await inventory.handle(release("s1", order="other"))
    assert reply.status is ReplyStatus.REFUSED
    assert "belongs to order 's1'" in (reply.reason or "")
    assert (await items(inventory.db))["A"]["held"] == 1


async def test_reservation_row_records_lines(inventory: InventoryService) -> None:
    await inventory.handle(reserve("saga:with:colons", ("A", 1), order="o-1"))
    row = await inventory.db.fetchone("SELECT * FROM reservations")
    assert row is not None
    assert (row["ref"], row["order_id"], row["state"], row["tombstone"]) == (
        "saga:with:colons:inventory",
        "o-1",
        "held",
        0,
    )

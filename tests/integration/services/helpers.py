"""Worlds, command builders and table dumps shared by the service tests."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from ordersaga.db import Database, open_database
from ordersaga.participant.kit import LockingPolicy, RunnerOptions
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, Phase, make_key
from ordersaga.services.config import InventoryConfig, ItemSpec, PaymentConfig, ShippingConfig
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService

INVENTORY = InventoryConfig(
    {
        "A": ItemSpec(price_cents=1250, stock=100, weight_kg=Decimal("0.5")),
        "B": ItemSpec(price_cents=300, stock=10, weight_kg=Decimal("1.2")),
        "C": ItemSpec(price_cents=999, stock=0, weight_kg=Decimal("2")),
    }
)
SHIPPING = ShippingConfig(
    countries=frozenset({"US", "DE", "FR"}),
    base_cost_cents=499,
    cost_per_kg_cents=150,
    max_weight_kg=Decimal("30"),
)
PAYMENT = PaymentConfig(
    methods=frozenset({"CreditCard", "PayPal"}),
    default_credit_limit_cents=100_000,
    credit_limits_cents={456: 5_000},
)
TODAY = date(2025, 6, 15)
VISA = "4111111111111111"

#: Service tables to compare before and after a command that must change nothing.
TABLES = {
    "inventory": ("items", "reservations", "idempotency"),
    "shipping": ("shipments", "idempotency"),
    "payment": ("accounts", "payments", "idempotency"),
}


async def _yield() -> None:
    await asyncio.sleep(0)


def interleaving_options(seed: int = 0, *, pause: bool = True) -> RunnerOptions:
    """Options that yield between read and write, so in-process writers really race."""
    return RunnerOptions(
        locking=LockingPolicy(max_attempts=200, initial_backoff=0.0002, max_backoff=0.005),
        rng=random.Random(seed),
        pause=_yield if pause else RunnerOptions().pause,
    )


async def open_inventory(
    url: str, config: InventoryConfig | None = INVENTORY, **kw: Any
) -> InventoryService:
    db = await open_database(url, durable=False, pool_size=kw.pop("pool_size", 4), pipelined=True)
    return await InventoryService.open(db, config, **kw)


async def open_shipping(
    url: str, config: ShippingConfig | None = SHIPPING, **kw: Any
) -> ShippingService:
    db = await open_database(url, durable=False, pool_size=kw.pop("pool_size", 4), pipelined=True)
    return await ShippingService.open(db, config, **kw)


async def open_payment(
    url: str, config: PaymentConfig | None = PAYMENT, **kw: Any
) -> PaymentService:
    db = await open_database(url, durable=False, pool_size=kw.pop("pool_size", 4), pipelined=True)
    kw.setdefault("today", lambda: TODAY)
    return await PaymentService.open(db, config, **kw)


def key(saga: str, service: str, phase: Phase) -> str:
    return make_key(saga, service, phase)


def reserve(saga: str, *lines: tuple[str, int], order: str | None = None) -> Command:
    items = [{"item_id": item, "quantity": qty} for item, qty in lines]
    payload = {"order_id": order or saga, "items": items}
    return Command("inventory", "reserve", key(saga, "inventory", Phase.ACTION), payload)


def release(saga: str, order: str | None = None) -> Command:
    return Command(
        "inventory",
        "release",
        key(saga, "inventory", Phase.COMPENSATE),
        {"order_id": order or saga},
    )


def commit(saga: str, order: str | None = None) -> Command:
    return Command(
        "inventory", "commit", key(saga, "inventory", Phase.CONFIRM), {"order_id": order or saga}
    )


def prepare(
    saga: str, weight: str = "2.2", country: str = "US", order: str | None = None
) -> Command:
    payload = {
        "order_id": order or saga,
        "address": {"street": "1 Main St", "city": "Springfield", "country": country},
        "weight_kg": weight,
    }
    return Command("shipping", "prepare", key(saga, "shipping", Phase.ACTION), payload)


def cancel(saga: str, order: str | None = None) -> Command:
    return Command(
        "shipping", "cancel", key(saga, "shipping", Phase.COMPENSATE), {"order_id": order or saga}
    )


def schedule(saga: str, order: str | None = None) -> Command:
    return Command(
        "shipping", "schedule", key(saga, "shipping", Phase.CONFIRM), {"order_id": order or saga}
    )


def authorize(
    saga: str,
    amount: int,
    user: int = 1,
    method: str = "CreditCard",
    card: str | None = VISA,
    expiry: str | None = "12/30",
    order: str | None = None,
) -> Command:
    payload = {
        "order_id": order or saga,
        "user_id": user,
        "amount_cents": amount,
        "method": method,
        "card_number": card,
        "expiry": expiry,
    }
    return Command("payment", "authorize", key(saga, "payment", Phase.ACTION), payload)


def void(saga: str, order: str | None = None) -> Command:
    return Command(
        "payment", "void", key(saga, "payment", Phase.COMPENSATE), {"order_id": order or saga}
    )


def capture(saga: str, order: str | None = None) -> Command:
    return Command(
        "payment", "capture", key(saga, "payment", Phase.CONFIRM), {"order_id": order or saga}
    )


async def dump(
    db: Database, tables: Sequence[str], leave_out: Collection[str] = ()
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of ``tables`` (but its ``leave_out`` columns), sorted: equal dumps mean
    nothing changed."""
    result = {}
    for table in tables:
        rows = await db.fetchall(f"SELECT * FROM {table}")
        result[table] = sorted(
            tuple(sorted((k, v) for k, v in row.items() if k not in leave_out)) for row in rows
        )
    return result


async def items(db: Database) -> dict[str, dict[str, Any]]:
    return {row["item_id"]: row for row in await db.fetchall("SELECT * FROM items")}


async def assert_stock_conserved(db: Database) -> None:
    """Invariant 1, plus: held and sold equal what the reservations say."""
    stock = await items(db)
    held = {item: 0 for item in stock}
    sold = {item: 0 for item in stock}
    for row in await db.fetchall("SELECT state, lines FROM reservations"):
        for line in json.loads(row["lines"]):
            if row["state"] == "held":
                held[line["item_id"]] += line["quantity"]
            elif row["state"] == "committed":
                sold[line["item_id"]] += line["quantity"]
    for item, row in stock.items():
        assert row["available"] >= 0, row
        assert row["available"] + row["held"] + row["sold"] == row["initial_stock"], row
        assert row["held"] == held[item], (row, held[item])
        assert row["sold"] == sold[item], (row, sold[item])


async def assert_credit_consistent(db: Database) -> None:
    """Invariant 5, plus: account totals equal what the payments say."""
    totals: dict[int, list[int]] = {}
    for row in await db.fetchall("SELECT user_id, state, amount_cents FROM payments"):
        entry = totals.setdefault(row["user_id"], [0, 0])
        if row["state"] == "authorized":
            entry[0] += row["amount_cents"]
        elif row["state"] == "captured":
            entry[1] += row["amount_cents"]
    for account in await db.fetchall("SELECT * FROM accounts"):
        authorized, captured = totals.get(account["user_id"], [0, 0])
        assert account["authorized_cents"] == authorized, account
        assert account["captured_cents"] == captured, account
        assert authorized + captured <= account["credit_limit_cents"], account


@dataclass(frozen=True)
class Case:
    """One service seen generically: how to open it and build its three commands."""

    name: str
    open: Callable[..., Awaitable[KitService]]
    action: Callable[[str], Command]
    compensate: Callable[[str], Command]
    confirm: Callable[[str], Command]
    noun: str

    @property
    def tables(self) -> tuple[str, ...]:
        return TABLES[self.name]

    def __str__(self) -> str:
        return self.name


CASES = (
    Case(
        "inventory", open_inventory, lambda s: reserve(s, ("A", 2)), release, commit, "reservation"
    ),
    Case("shipping", open_shipping, prepare, cancel, schedule, "shipment"),
    Case("payment", open_payment, lambda s: authorize(s, 1_000), void, capture, "payment"),
)

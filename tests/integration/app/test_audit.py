"""The audit finds each kind of violation we plant in a real data dir (and none in a clean one)."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.local.run import RunOptions, run_orders
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.proving.audit import AuditReport, audit_data_dir
from ordersaga.saga.store import open_store

STREAM = b"""\
Order c1, User 1, Items: [{A, 2}, {B, 1}], Payment: CreditCard, Address: 1 Main St, Springfield, US
Order c2, User 2, Items: [{A, 1}], Payment: PayPal, Address: 2 Oak St, Paris, FR
Order f1, User 3, Items: [{A, 1}], Payment: PayPal, Address: 3 Elm St, Rio, BR
Order f2, User 4, Items: [{C, 1}], Payment: PayPal, Address: 4 Elm St, Springfield, US
"""


async def _lines(data: bytes):  # type: ignore[no-untyped-def]
    for n, line in enumerate(data.splitlines(), 1):
        yield n, line


def make_data_dir(root: Path) -> Path:
    data = root / "data"
    options = RunOptions(RuntimeSettings(data_dir=data), concurrency=4)
    out = io.StringIO()
    asyncio.run(run_orders(options, _lines(STREAM), out, io.StringIO()))
    assert out.getvalue().split() == [
        "Order",
        "c1",
        "confirmed",
        "Order",
        "c2",
        "confirmed",
        "Order",
        "f1",
        "failed",
        "Order",
        "f2",
        "failed",
    ]
    return data


def sql(data: Path, service: str, statement: str, *params: object) -> None:
    conn = sqlite3.connect(data / f"{service}.db")
    conn.execute("PRAGMA ignore_check_constraints = ON")
    with conn:
        conn.execute(statement, params)
    conn.close()


def report_of(data: Path) -> AuditReport:
    return asyncio.run(audit_data_dir(data))


def test_a_clean_run_passes(tmp_path: Path) -> None:
    report = report_of(make_data_dir(tmp_path))
    assert report.ok, report.violations
    assert report.checked["orders"] == 4


def _unfinished_saga(data: Path) -> None:
    async def plant() -> None:
        store = await open_store(f"sqlite:///{data / 'saga.db'}")
        await store.create("ghost", "order", {"order_id": "ghost", "items": []}, "fp")
        await store.close()

    asyncio.run(plant())


PLANTS: dict[str, tuple[Callable[[Path], None], int, str | None]] = {
    "stock lost": (
        lambda d: sql(
            d, "inventory", "UPDATE items SET available = available - 1 WHERE item_id='A'"
        ),
        1,
        None,
    ),
    "confirmed but only authorized": (
        lambda d: sql(d, "payment", "UPDATE payments SET state='authorized' WHERE ref='c1:pay'"),
        2,
        "c1",
    ),
    "confirmed with wrong quantities": (
        lambda d: sql(
            d,
            "inventory",
            "UPDATE reservations SET lines=? WHERE ref='c2:reserve'",
            '[{"item_id": "A", "quantity": 2, "price_cents": 1250}]',
        ),
        2,
        "c2",
    ),
    "failed but still held": (
        lambda d: (
            sql(d, "shipping", "UPDATE shipments SET state='prepared' WHERE ref='f1:ship'")
            if False
            else sql(
                d,
                "inventory",
                "UPDATE reservations SET state='held', lines=? WHERE ref='f1:reserve'",
                '[{"item_id": "A", "quantity": 1, "price_cents": 1250}]',
            )
        ),
        3,
        "f1",
    ),
    "record of an unknown order": (
        lambda d: sql(
            d,
            "shipping",
            "INSERT INTO shipments (ref, order_id, state, tombstone, version, created_at,"
            " updated_at) VALUES ('nobody:ship', 'nobody', 'prepared', 0, 1, 0, 0)",
        ),
        4,
        "nobody",
    ),
    "unfinished saga": (_unfinished_saga, 4, "ghost"),
    "over the credit limit": (
        lambda d: sql(
            d,
            "payment",
            "UPDATE accounts SET captured_cents = credit_limit_cents + 1 WHERE user_id = 1",
        ),
        5,
        None,
    ),
    "applied twice": (
        lambda d: sql(
            d,
            "inventory",
            "UPDATE items SET sold = sold + 2, available = available - 2 WHERE item_id='B'",
        ),
        6,
        None,
    ),
}


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_planted_violation_is_reported(tmp_path: Path, name: str) -> None:
    plant, invariant, order_id = PLANTS[name]
    data = make_data_dir(tmp_path)
    plant(data)
    report = report_of(data)
    assert not report.ok
    hits = [v for v in report.violations if v.invariant == invariant]
    assert hits, report.violations
    if order_id is not None:
        assert any(v.order_id == order_id for v in hits), hits

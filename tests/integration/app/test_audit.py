"""The audit finds each kind of violation we plant in a real data dir (and none in a clean one)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.errors import ConfigError, ForeignDatabase
from ordersaga.local.retention import PruneSettings, prune_locations
from ordersaga.local.run import RunOptions, run_orders
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.proving.audit import AuditReport, audit, audit_data_dir, format_report
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaStatus
from ordersaga.saga.store.operator import OperatorAction, Repair

STREAM = b"""\
Order c1, User 1, Items: [{A, 2}, {B, 1}], Payment: CreditCard, Address: 1 Main St, Springfield, US
Order c2, User 2, Items: [{A, 1}], Payment: PayPal, Address: 2 Oak St, Paris, FR
Order f1, User 3, Items: [{A, 1}], Payment: PayPal, Address: 3 Elm St, Rio, BR
Order f2, User 4, Items: [{C, 1}], Payment: PayPal, Address: 4 Elm St, Springfield, US
Order f3, User 99, Items: [{A, 1}], Payment: PayPal, Address: 5 Elm St, Springfield, US
Order c3:x, User 1, Items: [{B, 2}], Payment: PayPal, Address: 6 Elm St, Springfield, US
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
        "Order",
        "f3",
        "failed",
        "Order",
        "c3:x",
        "confirmed",
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


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the stream, made once; each test plants into its own copy."""
    return make_data_dir(tmp_path_factory.mktemp("pristine"))


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def test_a_clean_run_passes(data: Path) -> None:
    report = report_of(data)
    assert report.ok, report.violations
    assert report.checked == {"items": 25, "users": 2, "orders": 6, "confirmed": 3, "failed": 3}


def _unfinished_saga(data: Path, *, flagged: bool = False) -> None:
    async def plant() -> None:
        store = await open_store(f"sqlite:///{data / 'saga.db'}")
        await store.create("ghost", "order", {"order_id": "ghost", "items": []}, "fp")
        if flagged:
            await store.update("ghost", needs_attention=True)
        await store.close()

    asyncio.run(plant())


def copy_row(
    service: str, table: str, ref: str, new_ref: str, columns: str
) -> Callable[[Path], None]:
    """A plant copying a record under another ref (and order id)."""
    order_id = new_ref.rsplit(":", 1)[0]
    statement = (
        f"INSERT INTO {table} (ref, order_id, {columns}) SELECT ?, ?, {columns} FROM {table}"
        " WHERE ref = ?"
    )
    return lambda d: sql(d, service, statement, new_ref, order_id, ref)


RESERVATION_COLUMNS = "state, lines, tombstone, version, created_at, updated_at"
PAYMENT_COLUMNS = (
    "user_id, amount_cents, method, state, reason, tombstone, version, created_at, updated_at"
)


def state(service: str, table: str, ref: str, new_state: str) -> Callable[[Path], None]:
    """A plant setting one record's state (and nothing else: no counter follows it)."""
    return lambda d: sql(d, service, f"UPDATE {table} SET state=? WHERE ref=?", new_state, ref)


def missing(service: str, table: str, ref: str) -> Callable[[Path], None]:
    return lambda d: sql(d, service, f"DELETE FROM {table} WHERE ref=?", ref)


#: name -> (plant, invariant, order id or None, a part of what the violation must say).
#: Invariants 2 and 3 are planted part by part: each state of each record a confirmed order
#: must not have, and each a failed one must not have, separately. f3 failed at payment (user
#: 99's credit limit is 0), so it has all three records: released, cancelled, declined.
PLANTS: dict[str, tuple[Callable[[Path], None], int, str | None, str]] = {
    "stock lost": (
        lambda d: sql(
            d, "inventory", "UPDATE items SET available = available - 1 WHERE item_id='A'"
        ),
        1,
        None,
        "item A: initial 1000 != available 996 + held 0 + sold 3",
    ),
    "confirmed but reservation only held": (
        state("inventory", "reservations", "c1:reserve", "held"),
        2,
        "c1",
        "reservation is held, expected committed",
    ),
    "confirmed but reservation released": (
        state("inventory", "reservations", "c1:reserve", "released"),
        2,
        "c1",
        "reservation is released, expected committed",
    ),
    "confirmed without reservation": (
        missing("inventory", "reservations", "c1:reserve"),
        2,
        "c1",
        "reservation is missing, expected committed",
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
        "sold {'A': 2}, the order asked for {'A': 1}",
    ),
    "confirmed but shipment only prepared": (
        state("shipping", "shipments", "c1:ship", "prepared"),
        2,
        "c1",
        "shipment is prepared, expected scheduled",
    ),
    "confirmed but shipment cancelled": (
        state("shipping", "shipments", "c1:ship", "cancelled"),
        2,
        "c1",
        "shipment is cancelled, expected scheduled",
    ),
    "confirmed without shipment": (
        missing("shipping", "shipments", "c1:ship"),
        2,
        "c1",
        "shipment is missing, expected scheduled",
    ),
    "confirmed but payment only authorized": (
        state("payment", "payments", "c1:pay", "authorized"),
        2,
        "c1",
        "payment is authorized, expected captured",
    ),
    "confirmed but payment voided": (
        state("payment", "payments", "c1:pay", "voided"),
        2,
        "c1",
        "payment is voided, expected captured",
    ),
    "confirmed without payment": (
        missing("payment", "payments", "c1:pay"),
        2,
        "c1",
        "payment is missing, expected captured",
    ),
    "confirmed but captured the wrong amount": (
        lambda d: sql(d, "payment", "UPDATE payments SET amount_cents=3628 WHERE ref='c1:pay'"),
        2,
        "c1",
        "captured 3628 cents, the order costs 3629",
    ),
    "confirmed but the shipping cost not captured": (
        lambda d: sql(d, "shipping", "UPDATE shipments SET cost_cents=830 WHERE ref='c1:ship'"),
        2,
        "c1",
        "captured 3629 cents, the order costs 3630",
    ),
    "failed but reservation still held": (
        lambda d: sql(
            d,
            "inventory",
            "UPDATE reservations SET state='held', lines=? WHERE ref='f1:reserve'",
            '[{"item_id": "A", "quantity": 1, "price_cents": 1250}]',
        ),
        3,
        "f1",
        "reservation is held although the order failed",
    ),
    "failed but items sold": (
        state("inventory", "reservations", "f3:reserve", "committed"),
        3,
        "f3",
        "reservation is committed although the order failed",
    ),
    "failed but shipment still prepared": (
        state("shipping", "shipments", "f3:ship", "prepared"),
        3,
        "f3",
        "shipment is prepared although the order failed",
    ),
    "failed but shipment scheduled": (
        state("shipping", "shipments", "f3:ship", "scheduled"),
        3,
        "f3",
        "shipment is scheduled although the order failed",
    ),
    "failed but payment still authorized": (
        state("payment", "payments", "f3:pay", "authorized"),
        3,
        "f3",
        "payment is authorized although the order failed",
    ),
    "failed but payment captured": (
        state("payment", "payments", "f3:pay", "captured"),
        3,
        "f3",
        "payment is captured although the order failed",
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
        "shipment nobody:ship belongs to no saga in the log",
    ),
    "reservation of an unknown order": (
        copy_row("inventory", "reservations", "c1:reserve", "nobody:reserve", RESERVATION_COLUMNS),
        4,
        "nobody",
        "reservation nobody:reserve belongs to no saga in the log",
    ),
    "payment of an unknown order": (
        copy_row("payment", "payments", "c1:pay", "nobody:pay", PAYMENT_COLUMNS),
        4,
        "nobody",
        "payment nobody:pay belongs to no saga in the log",
    ),
    "record without its applied action": (
        lambda d: sql(
            d,
            "shipping",
            "INSERT INTO shipments (ref, order_id, state, tombstone, version, created_at,"
            " updated_at) VALUES ('nobody:ship', 'nobody', 'prepared', 0, 1, 0, 0)",
        ),
        6,
        "nobody",
        "shipping record nobody:ship has no applied action",
    ),
    "applied action without its record": (
        missing("shipping", "shipments", "c1:ship"),
        6,
        "c1",
        "shipping applied c1:ship but kept no record of it",
    ),
    "unfinished saga": (_unfinished_saga, 4, "ghost", "saga is unfinished: running"),
    "unfinished saga flagged for attention": (
        lambda d: _unfinished_saga(d, flagged=True),
        4,
        "ghost",
        "saga is unfinished: running (flagged for attention)",
    ),
    "authorized counter off": (
        lambda d: sql(d, "payment", "UPDATE accounts SET authorized_cents = 100 WHERE user_id = 1"),
        6,
        None,
        "user 1: counters authorized 100, captured 5088 but payments sum to 0 and 5088",
    ),
    "over the credit limit": (
        lambda d: sql(
            d,
            "payment",
            "UPDATE accounts SET captured_cents = credit_limit_cents + 1 WHERE user_id = 1",
        ),
        5,
        None,
        "user 1: authorized+captured 100001 cents exceeds the limit 100000",
    ),
    "applied twice": (
        lambda d: sql(
            d,
            "inventory",
            "UPDATE items SET sold = sold + 2, available = available - 2 WHERE item_id='B'",
        ),
        6,
        None,
        "item B: counters held 0, sold 5 but reservations hold 0 and sold 3",
    ),
}


def _authorize_c1(d: Path) -> None:
    """c1's payment authorized only, its account's counters moved to match."""
    sql(d, "payment", "UPDATE payments SET state='authorized' WHERE ref='c1:pay'")
    sql(
        d,
        "payment",
        "UPDATE accounts SET authorized_cents = 3629, captured_cents = captured_cents - 3629"
        " WHERE user_id = 1",
    )


def _hold_c1(d: Path) -> None:
    """c1's reservation held only (A 2, B 1), the items' counters moved to match."""
    sql(d, "inventory", "UPDATE reservations SET state='held' WHERE ref='c1:reserve'")
    for item, quantity in (("A", 2), ("B", 1)):
        sql(
            d,
            "inventory",
            "UPDATE items SET held = held + ?, sold = sold - ? WHERE item_id = ?",
            quantity,
            quantity,
            item,
        )


#: name -> (plant, an invariant the audit must *not* report): states that are consistent as far
#: as that invariant goes (others may well be broken by the plant).
ACCEPTED: dict[str, tuple[Callable[[Path], None], int]] = {
    "failed with its payment voided": (state("payment", "payments", "f3:pay", "voided"), 3),
    "an authorized payment counted as authorized": (_authorize_c1, 6),
    "a held reservation counted as held": (_hold_c1, 6),
    "held stock is part of the stock": (_hold_c1, 1),
    "exactly at the credit limit": (
        lambda d: sql(
            d,
            "payment",
            "UPDATE accounts SET captured_cents = credit_limit_cents WHERE user_id = 1",
        ),
        5,
    ),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_consistent_states_are_not_reported(data: Path, name: str) -> None:
    plant, invariant = ACCEPTED[name]
    plant(data)
    report = report_of(data)
    assert [v for v in report.violations if v.invariant == invariant] == []


def test_a_directory_that_is_no_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is not an ordersaga data dir \(no ordersaga.json\)"):
        asyncio.run(audit_data_dir(tmp_path))


@pytest.mark.parametrize("name", list(PLANTS))
def test_each_planted_violation_is_reported(data: Path, name: str) -> None:
    plant, invariant, order_id, found = PLANTS[name]
    plant(data)
    report = report_of(data)
    assert not report.ok
    hits = [v for v in report.violations if v.invariant == invariant]
    assert any(v.order_id == order_id and v.found == found for v in hits), report.violations


def test_the_report_in_text_and_json(data: Path) -> None:
    checked = "confirmed 3, failed 3, items 25, orders 6, users 2"
    assert format_report(report_of(data), as_json=False) == (
        f"audit: OK: all 6 invariants hold ({checked})\n"
    )
    PLANTS["stock lost"][0](data)
    state("shipping", "shipments", "c1:ship", "prepared")(data)
    report = report_of(data)
    assert format_report(report, as_json=False).splitlines() == [
        "order c1: invariant 2 (confirmed order complete):"
        " shipment is prepared, expected scheduled",
        "-: invariant 1 (stock conserved): item A: initial 1000 != available 996 + held 0 + sold 3",
        f"audit: 2 violations ({checked})",
    ]
    text = format_report(report, as_json=True)
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"  # diffable
    assert json.loads(text) == {
        "ok": False,
        "checked": {"confirmed": 3, "failed": 3, "items": 25, "orders": 6, "users": 2},
        "violations": [
            {
                "order_id": "c1",
                "invariant": 2,
                "invariant_name": "confirmed order complete",
                "found": "shipment is prepared, expected scheduled",
            },
            {
                "order_id": None,
                "invariant": 1,
                "invariant_name": "stock conserved",
                "found": "item A: initial 1000 != available 996 + held 0 + sold 3",
            },
        ],
    }


# -- a pruned store, and operator actions -------------------------------------------------------


def _prune_log(data: Path) -> None:
    """Compact every saga of the log (its input and steps go); the services keep their rows."""

    async def compact() -> None:
        store = await open_store(f"sqlite:///{data / 'saga.db'}")
        try:
            assert (await store.prune(time.time() + 60)).sagas == 6
        finally:
            await store.close()

    asyncio.run(compact())


def _prune_all(data: Path) -> None:
    """``ordersaga prune`` a day later: the log compacted, the services' rows gone, their
    totals carried forward."""
    settings = PruneSettings(older_than=0)
    report = asyncio.run(prune_locations(data, settings, now=time.time() + 86400))
    assert all(rows.resources > 0 for rows in report.services.values())


#: name -> (plant on a store whose log is compacted, order id, what the violation says): the
#: rows a compacted confirmed saga still has are checked by state and amount.
PRUNED_PLANTS: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "reservation only held": (
        state("inventory", "reservations", "c1:reserve", "held"),
        "c1",
        "reservation is held, expected committed",
    ),
    "shipment only prepared": (
        state("shipping", "shipments", "c1:ship", "prepared"),
        "c1",
        "shipment is prepared, expected scheduled",
    ),
    "payment only authorized": (
        state("payment", "payments", "c1:pay", "authorized"),
        "c1",
        "payment is authorized, expected captured",
    ),
    "the wrong amount captured": (
        lambda d: sql(d, "payment", "UPDATE payments SET amount_cents=3628 WHERE ref='c1:pay'"),
        "c1",
        "captured 3628 cents, the order costs 3629",
    ),
}


@pytest.mark.parametrize("name", list(PRUNED_PLANTS))
def test_a_compacted_confirmed_saga_keeps_its_rows_checked(data: Path, name: str) -> None:
    plant, order_id, found = PRUNED_PLANTS[name]
    _prune_log(data)
    plant(data)
    report = report_of(data)
    hits = [(v.order_id, v.invariant, v.found) for v in report.violations if v.invariant != 6]
    assert hits == [(order_id, 2, found)]  # (the counters, invariant 6, are off too)


@pytest.mark.parametrize(
    ("service", "table", "ref"),
    [
        ("inventory", "reservations", "c1:reserve"),
        ("shipping", "shipments", "c1:ship"),
        ("payment", "payments", "c1:pay"),
    ],
)
def test_a_compacted_confirmed_saga_may_have_lost_its_rows(
    data: Path, service: str, table: str, ref: str
) -> None:
    """Pruned rows are gone for good: only what remains is checked (the counters aside)."""
    _prune_log(data)
    missing(service, table, ref)(data)
    report = report_of(data)
    assert [v for v in report.violations if v.invariant == 2] == []


def test_a_pruned_store_passes_with_the_carried_totals(data: Path) -> None:
    _prune_log(data)
    report = report_of(data)
    assert report.ok, report.violations
    assert report.checked["pruned"] == 6
    _prune_all(data)
    assert report_of(data).ok
    # New orders beside the carried totals: the counters are rows plus what pruning carried.
    more = (
        b"Order c4, User 1, Items: [{A, 1}, {B, 1}], Payment: PayPal,"
        b" Address: 7 Elm St, Springfield, US\n"
    )
    options = RunOptions(RuntimeSettings(data_dir=data), concurrency=1)
    out = io.StringIO()
    asyncio.run(run_orders(options, _lines(more), out, io.StringIO()))
    assert out.getvalue().split() == ["Order", "c4", "confirmed"]
    report = report_of(data)
    assert report.ok, report.violations
    assert report.checked["pruned"] == 6 and report.checked["orders"] == 7
    # And a carried total that is off is a counter off.
    sql(data, "inventory", "UPDATE pruned_totals SET amount = amount + 1 WHERE key = 'A'")
    sql(data, "payment", "UPDATE pruned_totals SET amount = amount + 1 WHERE key = '1'")
    found = {(v.invariant, v.found.split(":")[0]) for v in report_of(data).violations}
    assert found == {(6, "item A"), (6, "user 1")}


def _act(data: Path, saga_id: str, status: SagaStatus, action: str, note: str | None) -> None:
    async def record() -> None:
        store = await open_store(f"sqlite:///{data / 'saga.db'}")
        try:
            change = Repair(frozenset({status}), release=False)
            await store.repair(saga_id, change, OperatorAction(saga_id, action, "alice", note))
        finally:
            await store.close()

    asyncio.run(record())


def test_operator_actions_are_counted_and_quoted(data: Path) -> None:
    _act(data, "c1", SagaStatus.CONFIRMED, "resolve confirmed", "paid by phone")
    _act(data, "c2", SagaStatus.CONFIRMED, "retry", None)
    _act(data, "f1", SagaStatus.FAILED, "cancel", "customer called")
    _act(data, "f2", SagaStatus.FAILED, "resolve failed", "out of stock")
    report = report_of(data)
    assert report.ok, report.violations
    assert report.checked["resolved by operators"] == 2
    assert report.checked["cancelled by operators"] == 1
    state("shipping", "shipments", "c1:ship", "prepared")(data)
    state("shipping", "shipments", "c2:ship", "prepared")(data)
    PLANTS["stock lost"][0](data)
    report = report_of(data)
    assert [(v.order_id, v.invariant, v.found) for v in report.violations] == [
        (
            "c1",
            2,
            "shipment is prepared, expected scheduled"
            " (the saga was resolve confirmed by alice: paid by phone)",
        ),
        ("c2", 2, "shipment is prepared, expected scheduled"),
        (None, 1, "item A: initial 1000 != available 996 + held 0 + sold 3"),
    ]


def test_no_operator_action_counts_nothing(data: Path) -> None:
    assert "resolved by operators" not in report_of(data).checked


# -- what the audit opens, and how ----------------------------------------------------------------


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_the_audit_leaves_the_data_dir_as_it_was(data: Path) -> None:
    """Only reading, while no executor runs: not even a WAL's side files appear."""
    before = _files(data)
    assert report_of(data).ok
    assert _files(data) == before


def test_the_audit_reads_a_log_and_a_service_kept_elsewhere(data: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("saga.db", "payment.db"):
        shutil.move(data / name, elsewhere / name)
    report = asyncio.run(
        audit_data_dir(
            data,
            store_url=f"sqlite:///{elsewhere / 'saga.db'}",
            service_urls={"payment": f"sqlite:///{elsewhere / 'payment.db'}"},
        )
    )
    assert report.ok and report.checked["orders"] == 6, report.violations


@pytest.mark.parametrize("name", ["saga.db", "shipping.db"])
def test_a_database_missing_from_the_data_dir_is_named_and_not_created(
    data: Path, name: str
) -> None:
    (data / name).unlink()
    with pytest.raises(ForeignDatabase, match=rf"{name} is missing \(deleted\?\); nothing was"):
        report_of(data)
    assert not (data / name).exists()


@pytest.mark.parametrize("missing_one", ["saga", "inventory"])
def test_the_audit_creates_no_database_it_is_given(
    data: Path, tmp_path: Path, missing_one: str
) -> None:
    """Given URLs directly (no data dir checks first), a missing database is an error, and
    stays missing."""
    urls = {name: f"sqlite:///{data / name}.db" for name in ("inventory", "shipping", "payment")}
    store_url = f"sqlite:///{data / 'saga.db'}"
    gone = tmp_path / "gone.db"
    if missing_one == "saga":
        store_url = f"sqlite:///{gone}"
    else:
        urls[missing_one] = f"sqlite:///{gone}"
    with pytest.raises(ForeignDatabase, match=f"no database at {gone}"):
        asyncio.run(audit(store_url, urls))
    assert not gone.exists()

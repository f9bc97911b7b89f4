"""`ordersaga audit`: the invariants of CONTRACT.md section 6, across the saga log and the three
service databases, each violation reported with its order id.

1. Per item: initial stock = available + held + sold; available >= 0.
2. A confirmed order has exactly its quantities sold, exactly its amount captured and a scheduled
   shipment; nothing of it is left reserved, authorized-only or merely prepared.
3. A failed order has nothing sold, captured, scheduled or held.
4. Every record in a service database belongs to an order the saga log knows; no saga is left
   unfinished.

Operator actions count: a saga a person resolved (``ordersaga sagas resolve``) is decided as they
resolved it and checked as such; the report counts resolved and cancelled sagas, and a violation
on a resolved saga quotes who resolved it and why.
5. Per user: authorized + captured <= credit limit.
6. Every operation took effect at most once: the services' counters equal the sums over their
   records, and every record has exactly the one applied command that created it.

The audit only reads. It loads the service tables into memory (fine for millions of rows of this
size) and streams the saga log.

On a pruned store (``ordersaga prune``) the invariants hold over what remains: a compacted saga
has no input or steps left, so its rows, where the services still keep them, are checked by
state and amount alone; where they were pruned too, nothing of it is left to check. The
counters are checked against the remaining rows plus the totals that pruning carried forward
(items sold, amounts captured), so they stay consistent across any number of prunes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ordersaga.db import Database, open_database
from ordersaga.errors import ConfigError
from ordersaga.local.datadir import SAGA_LOG, DataDir
from ordersaga.local.lock import shared_if_idle
from ordersaga.participant.retention import carried_totals
from ordersaga.saga.store import open_store
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.saga.store.operator import OperatorAction
from ordersaga.services.retention import CAPTURED, SOLD

INVARIANTS = {
    1: "stock conserved",
    2: "confirmed order complete",
    3: "failed order leaves nothing",
    4: "records belong to known, finished sagas",
    5: "credit limit respected",
    6: "each operation took effect at most once",
}


@dataclass(frozen=True, slots=True)
class Violation:
    order_id: str | None
    invariant: int
    found: str


@dataclass(slots=True)
class AuditReport:
    violations: list[Violation] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def add(self, order_id: str | None, invariant: int, found: str) -> None:
        self.violations.append(Violation(order_id, invariant, found))


@dataclass(slots=True)
class _Services:
    items: dict[str, dict[str, Any]]
    reservations: dict[str, dict[str, Any]]
    shipments: dict[str, dict[str, Any]]
    payments: dict[str, dict[str, Any]]
    accounts: dict[int, dict[str, Any]]
    applied: dict[str, set[str]]  # service -> idempotency keys with status ok
    carried: dict[tuple[str, str], int]  # (total, key) -> what pruned rows counted


def _saga_of(ref: str) -> str:
    return ref.rsplit(":", 1)[0]


async def _load_services(dbs: Mapping[str, Database]) -> _Services:
    async def table(service: str, name: str) -> list[dict[str, Any]]:
        return await dbs[service].fetchall(f"SELECT * FROM {name}")

    applied = {
        name: {r["key"] for r in await table(name, "idempotency") if r["status"] == "ok"}
        for name in dbs
    }
    carried: dict[tuple[str, str], int] = {}
    for db in dbs.values():
        carried.update(await carried_totals(db))
    return _Services(
        items={r["item_id"]: r for r in await table("inventory", "items")},
        reservations={r["ref"]: r for r in await table("inventory", "reservations")},
        shipments={r["ref"]: r for r in await table("shipping", "shipments")},
        payments={r["ref"]: r for r in await table("payment", "payments")},
        accounts={int(r["user_id"]): r for r in await table("payment", "accounts")},
        applied=applied,
        carried=carried,
    )


def _check_items(report: AuditReport, s: _Services) -> None:
    held: Counter[str] = Counter()
    sold: Counter[str] = Counter()
    for reservation in s.reservations.values():
        target = {"held": held, "committed": sold}.get(reservation["state"])
        if target is None:
            continue
        for line in json.loads(reservation["lines"]):
            target[line["item_id"]] += int(line["quantity"])
    for item_id in s.items:
        sold[item_id] += s.carried.get((SOLD, item_id), 0)
    for item_id, item in s.items.items():
        total = item["available"] + item["held"] + item["sold"]
        if total != item["initial_stock"] or item["available"] < 0:
            report.add(
                None,
                1,
                f"item {item_id}: initial {item['initial_stock']} != available"
                f" {item['available']} + held {item['held']} + sold {item['sold']}",
            )
        if item["held"] != held[item_id] or item["sold"] != sold[item_id]:
            report.add(
                None,
                6,
                f"item {item_id}: counters held {item['held']}, sold {item['sold']} but"
                f" reservations hold {held[item_id]} and sold {sold[item_id]}",
            )
    report.checked["items"] = len(s.items)


def _check_accounts(report: AuditReport, s: _Services) -> None:
    authorized: Counter[int] = Counter()
    captured: Counter[int] = Counter()
    for payment in s.payments.values():
        target = {"authorized": authorized, "captured": captured}.get(payment["state"])
        if target is not None and payment["user_id"] is not None:
            target[int(payment["user_id"])] += int(payment["amount_cents"])
    for user in s.accounts:
        captured[user] += s.carried.get((CAPTURED, str(user)), 0)
    for user, account in s.accounts.items():
        exposure = account["authorized_cents"] + account["captured_cents"]
        if exposure > account["credit_limit_cents"]:
            report.add(
                None,
                5,
                f"user {user}: authorized+captured {exposure} cents exceeds the limit"
                f" {account['credit_limit_cents']}",
            )
        if account["authorized_cents"] != authorized[user] or (
            account["captured_cents"] != captured[user]
        ):
            report.add(
                None,
                6,
                f"user {user}: counters authorized {account['authorized_cents']}, captured"
                f" {account['captured_cents']} but payments sum to {authorized[user]} and"
                f" {captured[user]}",
            )
    report.checked["users"] = len(s.accounts)


def _check_applied_once(report: AuditReport, s: _Services) -> None:
    """Each live record was created by exactly one applied action, and vice versa."""
    tables = {"inventory": s.reservations, "shipping": s.shipments, "payment": s.payments}
    for service, rows in tables.items():
        actions = {k[: -len(":action")] for k in s.applied[service] if k.endswith(":action")}
        # Tombstones and declined payments were written by a compensation or a refusal.
        live = {
            ref
            for ref, row in rows.items()
            if not row["tombstone"] and row.get("state") != "declined"
        }
        for ref in sorted(live - actions):
            report.add(_saga_of(ref), 6, f"{service} record {ref} has no applied action")
        for ref in sorted(actions - set(rows)):
            report.add(_saga_of(ref), 6, f"{service} applied {ref} but kept no record of it")


def _expect_confirmed(report: AuditReport, saga: SagaRecord, s: _Services) -> None:
    sid = saga.saga_id
    reservation = s.reservations.get(f"{sid}:reserve")
    shipment = s.shipments.get(f"{sid}:ship")
    payment = s.payments.get(f"{sid}:pay")
    if saga.pruned:
        _expect_pruned_confirmed(report, sid, reservation, shipment, payment)
        return
    if reservation is None or reservation["state"] != "committed":
        state = reservation["state"] if reservation else "missing"
        report.add(sid, 2, f"reservation is {state}, expected committed")
    else:
        wanted = {i["item_id"]: int(i["quantity"]) for i in saga.input.get("items", [])}
        lines = json.loads(reservation["lines"])
        got = {line["item_id"]: int(line["quantity"]) for line in lines}
        if got != wanted:
            report.add(sid, 2, f"sold {got}, the order asked for {wanted}")
    if shipment is None or shipment["state"] != "scheduled":
        state = shipment["state"] if shipment else "missing"
        report.add(sid, 2, f"shipment is {state}, expected scheduled")
    if payment is None or payment["state"] != "captured":
        state = payment["state"] if payment else "missing"
        report.add(sid, 2, f"payment is {state}, expected captured")
    elif reservation is not None and shipment is not None:
        _check_amount(report, sid, reservation, shipment, payment)


def _check_amount(
    report: AuditReport,
    sid: str,
    reservation: Mapping[str, Any],
    shipment: Mapping[str, Any],
    payment: Mapping[str, Any],
) -> None:
    lines = json.loads(reservation["lines"])
    amount = sum(int(x["quantity"]) * int(x["price_cents"]) for x in lines)
    amount += int(shipment["cost_cents"])
    if int(payment["amount_cents"]) != amount:
        report.add(sid, 2, f"captured {payment['amount_cents']} cents, the order costs {amount}")


def _expect_pruned_confirmed(
    report: AuditReport,
    sid: str,
    reservation: Mapping[str, Any] | None,
    shipment: Mapping[str, Any] | None,
    payment: Mapping[str, Any] | None,
) -> None:
    """A compacted confirmed saga: whatever rows remain are confirmed, and add up."""
    for row, wanted, noun in (
        (reservation, "committed", "reservation"),
        (shipment, "scheduled", "shipment"),
        (payment, "captured", "payment"),
    ):
        if row is not None and row["state"] != wanted:
            report.add(sid, 2, f"{noun} is {row['state']}, expected {wanted}")
    if reservation is not None and shipment is not None and payment is not None:
        _check_amount(report, sid, reservation, shipment, payment)


def _expect_failed(report: AuditReport, saga: SagaRecord, s: _Services) -> None:
    sid = saga.saga_id
    checks = (
        (s.reservations.get(f"{sid}:reserve"), {"released"}, "reservation"),
        (s.shipments.get(f"{sid}:ship"), {"cancelled"}, "shipment"),
        (s.payments.get(f"{sid}:pay"), {"voided", "declined"}, "payment"),
    )
    for row, allowed, noun in checks:
        if row is not None and row["state"] not in allowed:
            report.add(sid, 3, f"{noun} is {row['state']} although the order failed")


def _check_known(report: AuditReport, known: set[str], s: _Services) -> None:
    for noun, rows in (
        ("reservation", s.reservations),
        ("shipment", s.shipments),
        ("payment", s.payments),
    ):
        for ref in rows:
            if _saga_of(ref) not in known:
                report.add(_saga_of(ref), 4, f"{noun} {ref} belongs to no saga in the log")


async def audit(
    store_url: str,
    service_urls: Mapping[str, str],
    *,
    batch_size: int = 1000,
    quiescent: bool = False,
) -> AuditReport:
    report = AuditReport()
    dbs: dict[str, Database] = {}
    store = await open_store(store_url, read_only=True, quiescent=quiescent)
    try:
        for name, url in service_urls.items():
            dbs[name] = await open_database(url, read_only=True, quiescent=quiescent)
        services = await _load_services(dbs)
        known: set[str] = set()
        statuses: Counter[str] = Counter()
        pruned = 0
        async for saga in store.scan(batch_size):
            known.add(saga.saga_id)
            statuses[saga.status.value] += 1
            pruned += saga.pruned
            if saga.status is SagaStatus.CONFIRMED:
                _expect_confirmed(report, saga, services)
            elif saga.status is SagaStatus.FAILED:
                _expect_failed(report, saga, services)
            else:
                attention = " (flagged for attention)" if saga.needs_attention else ""
                report.add(saga.saga_id, 4, f"saga is unfinished: {saga.status}{attention}")
        _check_known(report, known, services)
        _check_items(report, services)
        _check_accounts(report, services)
        _check_applied_once(report, services)
        report.checked.update({"orders": len(known), **statuses})
        if pruned:
            report.checked["pruned"] = pruned
        _note_operator_actions(report, await store.operator_actions())
    finally:
        await store.close()
        for db in dbs.values():
            await db.close()
    return report


def _note_operator_actions(report: AuditReport, actions: list[OperatorAction]) -> None:
    resolved = {a.saga_id: a for a in actions if a.action.startswith("resolve")}
    cancelled = {a.saga_id for a in actions if a.action == "cancel"}
    if resolved:
        report.checked["resolved by operators"] = len(resolved)
    if cancelled:
        report.checked["cancelled by operators"] = len(cancelled)
    for index, violation in enumerate(report.violations):
        action = resolved.get(violation.order_id or "")
        if action is not None:
            found = (
                f"{violation.found} (the saga was {action.action} by {action.who}: {action.note})"
            )
            report.violations[index] = Violation(violation.order_id, violation.invariant, found)


async def audit_data_dir(
    data_dir: Path, *, store_url: str | None = None, service_urls: Mapping[str, str] | None = None
) -> AuditReport:
    """Audit a data dir (or the databases that override its files), only reading.

    Safe beside the run executing it: SQLite readers see committed transactions only. While no
    executor runs, the data dir's lock is held shared, so none starts meanwhile (see
    :mod:`ordersaga.local.lock`). Nothing is created, the lock file included.
    """
    layout = DataDir(data_dir)
    if not layout.exists() and store_url is None:
        raise ConfigError(f"{data_dir} is not an ordersaga data dir (no {layout.meta_path.name})")
    locations = layout.locations()
    overrides = service_urls or {}
    urls = {**locations.service_urls, **overrides}
    with shared_if_idle(layout.root) as executing:
        if layout.exists():
            meta = layout.read_meta()
            used = {SAGA_LOG} if store_url is None else set()
            used |= {name for name in locations.service_urls if name not in overrides}
            kept = tuple(c for c in meta.components if c in used)
            await layout.check(replace(meta, components=kept), "readonly")
        return await audit(store_url or locations.store_url, urls, quiescent=not executing)


def format_report(report: AuditReport, *, as_json: bool) -> str:
    if as_json:
        body = {
            "ok": report.ok,
            "checked": report.checked,
            "violations": [
                {**asdict(v), "invariant_name": INVARIANTS[v.invariant]} for v in report.violations
            ],
        }
        return json.dumps(body, indent=2, sort_keys=True) + "\n"
    checked = ", ".join(f"{k} {v}" for k, v in sorted(report.checked.items()))
    if report.ok:
        return f"audit: OK: all {len(INVARIANTS)} invariants hold ({checked})\n"
    lines = []
    for v in report.violations:
        who = f"order {v.order_id}" if v.order_id is not None else "-"
        lines.append(f"{who}: invariant {v.invariant} ({INVARIANTS[v.invariant]}): {v.found}")
    lines.append(f"audit: {len(report.violations)} violations ({checked})")
    return "\n".join(lines) + "\n"

"""Retention in a service database: forgetting finished sagas without weakening exactly-once.

What a service keeps per resource (``<saga id>:<step>``) — the resource row (a reservation, a
shipment, a payment, or a tombstone) and the idempotency records of its keys
(``<ref>:action|compensate|confirm``) — is what makes a repeated, duplicated or late delivery
harmless: a repeat replays its record, a late action finds its tombstone or its resource and is
refused. :func:`prune_resources` deletes them, for resources whose saga the saga log shows
finished; the caller (``ordersaga prune``) takes the refs from the log. Why no delivery that
can still take effect finds its record or tombstone gone:

1. **Only finished sagas.** Rows are deleted only for sagas that the log shows finished
   (confirmed or failed, not flagged for attention), whose end is older than the message-age
   limit ``L`` plus a margin ``M`` (:data:`~ordersaga.protocol.messages.MAX_MESSAGE_AGE`,
   :data:`~ordersaga.protocol.messages.MESSAGE_AGE_MARGIN`), and each row is itself older than
   ``L + M`` (:func:`prune_resources`'s ``before``). A saga still running keeps everything.
2. **Every command of a finished saga was first sent before its end.** The engine sends nothing
   for a finished saga (a resubmission replays the log). Every delivery of a command — a retry,
   a duplicate, a late arrival — carries the ``sent_at`` of the command's first send; a
   compensation or confirmation stamped anew (past the limit, see :mod:`ordersaga.saga.calls`)
   is so only while its saga runs, so before its end too.
3. **A service refuses every delivery older than L** (``expired``, :func:`.age.expired`; it
   applies nothing). A delivery accepted at time ``t`` was therefore first sent after ``t - L``;
   if it belongs to a finished saga, that was before the saga's end ``E``, so ``t < E + L``.
   Its saga's rows go at ``E + L + M`` at the earliest: the delivery found them all. ``M``
   covers the clocks of the sending and the serving machine disagreeing, and transit.
4. Hence a delivery either arrives while its records and tombstones are still there (and is
   replayed or refused exactly as before), or it is refused as ``expired`` and changes nothing.

The one assumption is the one leases make already: a process does not stall for longer than
``L + M`` between deciding to send a command for a saga it holds and sending it (a worker whose
lease lapsed and whose saga another worker finished meanwhile). With the default retention of
seven days for the log (and the services following it) that margin is days, not seconds.

Totals. The audit checks that a service's counters equal the sums over its rows (an item's sold
units, a user's captured amount). Deleting rows would break that, so what a deleted row counted
is carried forward, in the same transaction, into ``pruned_totals (name, key, amount)``: the
counters then equal the sums over the remaining rows plus the carried totals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ordersaga.db import Database, Row, Tx
from ordersaga.errors import StorageError
from ordersaga.protocol.messages import Phase

__all__ = [
    "TOTALS_DDL",
    "Carry",
    "PrunedRows",
    "ResourceRetention",
    "carried_totals",
    "prune_resources",
]

TOTALS_DDL = """
CREATE TABLE IF NOT EXISTS pruned_totals (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (name, key)
)
"""

#: What a deleted resource row counted, as (total name, key, amount) triples.
Carry = Callable[[Row], Iterable[tuple[str, str, int]]]

_CHUNK = 200  # refs per statement (three keys each: far below the bound-parameter limits)
_ADD_TOTAL = (
    "INSERT INTO pruned_totals (name, key, amount) VALUES (?, ?, ?)"
    " ON CONFLICT (name, key) DO UPDATE SET amount = pruned_totals.amount + excluded.amount"
)


def _no_totals(_row: Row) -> Iterable[tuple[str, str, int]]:
    return ()


@dataclass(frozen=True, slots=True)
class ResourceRetention:
    """How one service's resources are pruned: their table and what to carry forward."""

    table: str
    carry: Carry = _no_totals


@dataclass(slots=True)
class PrunedRows:
    """What :func:`prune_resources` deleted (or, in a dry run, would delete)."""

    resources: int = 0
    records: int = 0

    def add(self, other: PrunedRows) -> None:
        self.resources += other.resources
        self.records += other.records


def _marks(n: int) -> str:
    return ", ".join("?" * n)


async def prune_resources(
    db: Database,
    spec: ResourceRetention,
    refs: Sequence[str],
    before: float,
    *,
    dry_run: bool = False,
) -> PrunedRows:
    """Delete the resource rows ``refs`` and their keys' idempotency records, if older than
    ``before``, carrying their totals forward; each chunk in one transaction.

    The caller guarantees that every ref belongs to a saga the log shows finished since before
    ``before`` (see the module docstring). Idempotent: a ref already pruned is not found again,
    and the totals move in the transaction that deletes the row, so a repeat carries nothing twice.
    """
    pruned = PrunedRows()
    for start in range(0, len(refs), _CHUNK):
        chunk = refs[start : start + _CHUNK]
        keys = [f"{ref}:{phase.value}" for ref in chunk for phase in Phase]
        if dry_run:
            pruned.add(await _count(db, spec, chunk, keys, before))
            continue
        async with db.transaction() as tx:
            pruned.add(await _delete(tx, spec, chunk, keys, before))
    return pruned


async def _delete(
    tx: Tx, spec: ResourceRetention, refs: Sequence[str], keys: Sequence[str], before: float
) -> PrunedRows:
    # The table name comes from a frozen spec, never from input.
    rows = await tx.fetchall(
        f"SELECT * FROM {spec.table} WHERE ref IN ({_marks(len(refs))}) AND updated_at < ?",
        *refs,
        before,
    )
    totals: Counter[tuple[str, str]] = Counter()
    for row in rows:
        for name, key, amount in spec.carry(row):
            totals[(name, key)] += amount
    for (name, key), amount in sorted(totals.items()):
        await tx.execute(_ADD_TOTAL, name, key, amount)
    resources = 0
    if rows:
        gone = [row["ref"] for row in rows]
        resources = await tx.execute(
            f"DELETE FROM {spec.table} WHERE ref IN ({_marks(len(gone))})", *gone
        )
    records = await tx.execute(
        f"DELETE FROM idempotency WHERE key IN ({_marks(len(keys))}) AND created_at < ?",
        *keys,
        before,
    )
    return PrunedRows(resources, records)


async def _count(
    db: Database, spec: ResourceRetention, refs: Sequence[str], keys: Sequence[str], before: float
) -> PrunedRows:
    resources = await db.fetchone(
        f"SELECT COUNT(*) AS n FROM {spec.table}"
        f" WHERE ref IN ({_marks(len(refs))}) AND updated_at < ?",
        *refs,
        before,
    )
    records = await db.fetchone(
        f"SELECT COUNT(*) AS n FROM idempotency WHERE key IN ({_marks(len(keys))})"
        " AND created_at < ?",
        *keys,
        before,
    )
    return PrunedRows(int(resources["n"]) if resources else 0, int(records["n"]) if records else 0)


async def carried_totals(db: Database) -> dict[tuple[str, str], int]:
    """The totals carried forward so far, by (name, key); empty if nothing was ever pruned."""
    try:
        rows = await db.fetchall("SELECT name, key, amount FROM pruned_totals")
    except StorageError:
        # A database created before retention existed, and never opened by a service since.
        return {}
    return {(row["name"], row["key"]): int(row["amount"]) for row in rows}

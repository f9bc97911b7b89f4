"""Operator reads and repairs on a SQL saga log: listing, inspection, repairs, actions.

None of this is on the engine's path. Reads run in the store's read context (one snapshot on
PostgreSQL, so a saga and its steps always match). A repair is one transaction of its own: it
locks the saga's row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` holds the whole
database), checks the status it expects, changes the row (bumping ``version``, so a group commit
that read the row before cannot overwrite it) and records the operator action beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordersaga.db import Database, Row, Tx
from ordersaga.errors import ConflictError
from ordersaga.saga.store.model import StepRow
from ordersaga.saga.store.operator import OperatorAction, Repair, SagaEntry, SagaFilter, SagaPage
from ordersaga.saga.store.schema import has_table
from ordersaga.saga.store.sqlbatch import upsert_steps

HOLDER_COLUMNS = "owner, lease_until"
_ACTION_COLUMNS = "saga_id, action, who, note, at"


def cursor_value(cursor: str | None) -> int | None:
    """The keyset position a cursor names (the ``seq`` of the last saga of the previous page)."""
    if cursor is None:
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > 19:
        raise ValueError(f"not a cursor of this saga log: {cursor!r}")
    return int(cursor)


def list_query(columns: str, query: SagaFilter) -> tuple[str, list[Any]]:
    """The SELECT of one page (one row more than the limit: it tells whether a page follows)."""
    where: list[str] = []
    params: list[Any] = []
    if query.status is not None:
        where.append("status = ?")
        params.append(query.status.value)
    if query.needs_attention is not None:
        where.append("needs_attention = ?")
        params.append(int(query.needs_attention))
    if query.updated_before is not None:
        where.append("updated_at < ?")
        params.append(float(query.updated_before))
    if query.id_prefix:
        # substr rather than LIKE: no wildcard in an id needs escaping, the same in both SQLs.
        where.append("substr(saga_id, 1, ?) = ?")
        params.extend((len(query.id_prefix), query.id_prefix))
    after = cursor_value(query.cursor)
    if after is not None:
        where.append("seq < ?")
        params.append(after)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    params.append(query.limit + 1)
    return f"SELECT {columns} FROM sagas{clause} ORDER BY seq DESC LIMIT ?", params


def page_of(rows: Sequence[Row], entries: list[SagaEntry], limit: int) -> SagaPage:
    if len(rows) > limit:
        return SagaPage(entries[:limit], str(int(rows[limit - 1]["seq"])))
    return SagaPage(entries, None)


async def actions_of(db: Database, reader: Any, saga_id: str | None) -> list[OperatorAction]:
    """The operator actions on ``saga_id`` (None: on every saga), oldest first."""
    if not await has_table(db, "operator_actions"):
        return []
    where, params = ("", []) if saga_id is None else (" WHERE saga_id = ?", [saga_id])
    rows = await reader.fetchall(
        f"SELECT {_ACTION_COLUMNS} FROM operator_actions{where} ORDER BY id", *params
    )
    return [
        OperatorAction(r["saga_id"], r["action"], r["who"], r["note"], float(r["at"])) for r in rows
    ]


async def apply_repair(
    tx: Tx, saga_id: str, change: Repair, action: OperatorAction, at: float, lock_suffix: str
) -> None:
    """Check and apply ``change`` to ``saga_id`` in ``tx`` and record ``action`` (see module)."""
    row = await tx.fetchone(
        f"SELECT status, reason, needs_attention FROM sagas WHERE saga_id = ? {lock_suffix}",
        saga_id,
    )
    if row is None:
        raise ConflictError(f"unknown saga {saga_id!r}")
    if row["status"] not in {s.value for s in change.expect}:
        raise ConflictError(f"saga {saga_id!r} is {row['status']}")
    status = row["status"] if change.status is None else change.status.value
    reason = row["reason"] if change.reason is None else change.reason
    attention = row["needs_attention"]
    if change.needs_attention is not None:
        attention = int(change.needs_attention)
    release = ", owner = NULL, lease_until = NULL" if change.release else ""
    cleared = ", attention_reason = NULL" if change.needs_attention is False else ""
    await tx.execute(
        "UPDATE sagas SET status = ?, reason = ?, needs_attention = ?, updated_at = ?,"
        f" version = version + 1{release}{cleared} WHERE saga_id = ?",
        status,
        reason,
        attention,
        at,
        saga_id,
    )
    await upsert_steps(tx, [(saga_id, StepRow.of(step)) for step in change.steps])
    await tx.execute(
        f"INSERT INTO operator_actions ({_ACTION_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        saga_id,
        action.action,
        action.who,
        action.note,
        at,
    )

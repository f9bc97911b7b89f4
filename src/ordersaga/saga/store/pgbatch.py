"""The saga log's batch statements on PostgreSQL: fixed texts, the rows passed as arrays.

A multi-row ``VALUES`` list or an ``IN (?, ?, ...)`` list has one text per number of rows, so
on PostgreSQL nearly every batch was a statement the server had never seen on that connection:
one more round trip to prepare it, and a parse and a plan each time. Here every statement has
one text whatever the batch size — the rows travel as one array per column (``unnest``) and the
ids as one array (``= ANY``) — so each connection prepares it once and the server plans it once.

The effects are those of :class:`~ordersaga.saga.store.sqlbatch.BatchStatements`: the heads are
read and locked in saga id order (``FOR UPDATE``), the sagas inserted and the step records
upserted in the order given (``WITH ORDINALITY``: the identity columns keep the insertion
order), and an update whose saga changed since its head was read changes nothing and fails the
batch (``ConflictError``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ordersaga.db import Tx
from ordersaga.errors import ConflictError
from ordersaga.saga.store.model import CreateWrite, Head, StepRow
from ordersaga.saga.store.sqlbatch import HEAD_COLUMNS, BatchStatements, head_of

__all__ = ["ARRAY_STATEMENTS", "ArrayStatements", "ids_param"]

_HEADS = (
    f"SELECT {HEAD_COLUMNS} FROM sagas WHERE saga_id = ANY(CAST(? AS TEXT[]))"
    " ORDER BY saga_id FOR UPDATE"
)

_INSERT_SAGAS = (
    "INSERT INTO sagas (saga_id, definition, input, fingerprint, status, reason,"
    " needs_attention, created_at, updated_at, version)"
    " SELECT v.saga_id, v.definition, v.input, v.fingerprint, v.status, v.reason,"
    " v.needs_attention, v.created_at, v.updated_at, v.version FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),"
    " CAST(? AS DOUBLE PRECISION[]), CAST(? AS DOUBLE PRECISION[]), CAST(? AS BIGINT[]))"
    " WITH ORDINALITY AS v(saga_id, definition, input, fingerprint, status, reason,"
    " needs_attention, created_at, updated_at, version, n) ORDER BY v.n"
)

_UPDATE_SAGAS = (
    "UPDATE sagas SET status = v.status, reason = v.reason, needs_attention = v.needs_attention,"
    " updated_at = v.updated_at, version = v.version, input = COALESCE(v.input, sagas.input),"
    " attention_reason = v.attention_reason FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),"
    " CAST(? AS DOUBLE PRECISION[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]))"
    " AS v(saga_id, status, reason, needs_attention, updated_at, version, expected, input,"
    " attention_reason)"
    " WHERE sagas.saga_id = v.saga_id AND sagas.version = v.expected"
)

_UPSERT_STEPS = (
    "INSERT INTO saga_steps (saga_id, step, phase, status, result, reason, attempts,"
    " started_at, ended_at, trail)"
    " SELECT v.saga_id, v.step, v.phase, v.status, v.result, v.reason, v.attempts,"
    " v.started_at, v.ended_at, v.trail FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),"
    " CAST(? AS DOUBLE PRECISION[]), CAST(? AS DOUBLE PRECISION[]), CAST(? AS TEXT[]))"
    " WITH ORDINALITY AS v(saga_id, step, phase, status, result, reason, attempts, started_at,"
    " ended_at, trail, n) ORDER BY v.n"
    " ON CONFLICT (saga_id, step, phase) DO UPDATE"
    " SET status = excluded.status, result = excluded.result, reason = excluded.reason,"
    " attempts = excluded.attempts, started_at = excluded.started_at,"
    " ended_at = excluded.ended_at, trail = excluded.trail"
)


def ids_param(ids: Sequence[str]) -> list[str]:
    """Saga ids as the one array parameter of ``= ANY(CAST(? AS TEXT[]))``."""
    return list(ids)


class ArrayStatements(BatchStatements):
    """:class:`BatchStatements` for PostgreSQL, one fixed text each (see the module doc)."""

    def __init__(self) -> None:
        super().__init__("FOR UPDATE")

    async def fetch_heads(self, tx: Tx, ids: Sequence[str]) -> dict[str, Head]:
        rows = await tx.fetchall(_HEADS, ids_param(ids))
        return {row["saga_id"]: head_of(row) for row in rows}

    async def insert_sagas(self, tx: Tx, new: Sequence[tuple[CreateWrite, Head]]) -> None:
        # A plain INSERT: if another process created one of these ids since we looked, the
        # unique key raises ConflictError and the batch is retried one write at a time.
        await tx.execute(
            _INSERT_SAGAS,
            [w.saga_id for w, _ in new],
            [w.definition for w, _ in new],
            [w.input for w, _ in new],
            [w.fingerprint for w, _ in new],
            [h.status.value for _, h in new],
            [h.reason for _, h in new],
            [int(h.needs_attention) for _, h in new],
            [w.at for w, _ in new],
            [h.updated_at for _, h in new],
            [h.version for _, h in new],
        )

    async def update_sagas(self, tx: Tx, changed: Sequence[tuple[str, Head, int]]) -> None:
        count = await tx.execute(
            _UPDATE_SAGAS,
            [saga_id for saga_id, _, _ in changed],
            [h.status.value for _, h, _ in changed],
            [h.reason for _, h, _ in changed],
            [int(h.needs_attention) for _, h, _ in changed],
            [h.updated_at for _, h, _ in changed],
            [h.version for _, h, _ in changed],
            [version for _, _, version in changed],
            [h.input for _, h, _ in changed],
            [h.attention_reason for _, h, _ in changed],
        )
        if count != len(changed):
            raise ConflictError("a saga changed under a batch (concurrent writer)")

    async def upsert_steps(self, tx: Tx, rows: Sequence[tuple[str, StepRow]]) -> None:
        await tx.execute(
            _UPSERT_STEPS,
            [saga_id for saga_id, _ in rows],
            [r.step for _, r in rows],
            [r.phase.value for _, r in rows],
            [r.status.value for _, r in rows],
            [r.result for _, r in rows],
            [r.reason for _, r in rows],
            [r.attempts for _, r in rows],
            [r.started_at for _, r in rows],
            [r.ended_at for _, r in rows],
            [r.trail for _, r in rows],
        )


ARRAY_STATEMENTS = ArrayStatements()

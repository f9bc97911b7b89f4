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

Round trips: a batch is two statements between BEGIN and COMMIT, whatever it holds. The heads'
statement also reads the executors' epoch ``FOR SHARE`` for an executor (see :mod:`.fencing`:
it used to be a statement of its own), and the INSERT, UPDATE and upsert are one statement (a
``WITH`` of three data-modifying parts) whose rows are the updated sagas: it is a
:meth:`~ordersaga.db.Tx.write` expecting as many as the batch changes. In a pipelined
transaction (:mod:`ordersaga.db.pipelined`: the saga log's) BEGIN goes with the heads'
statement and the write with the sync that checks its count before the COMMIT: three round
trips, not four.

A store that announces finished sagas (:meth:`ArrayStatements.done_channel`: a worker's, for
the submitters) does it in the same statement, when the batch finishes any: a ``pg_notify``,
sent by the server at the commit and only if the batch commits, no transaction of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from ordersaga.db import Database, Tx
from ordersaga.saga.store.base import TERMINAL
from ordersaga.saga.store.fencing import SHARED_EXECUTORS, ExecutorRight
from ordersaga.saga.store.model import FIRST_VERSION, CreateWrite, Head, StepRow, Write
from ordersaga.saga.store.sqlbatch import HEAD_COLUMNS, BatchStatements, head_of

__all__ = ["ARRAY_STATEMENTS", "ArrayStatements", "create_sagas", "creates_only", "ids_param"]

_HEADS = (
    f"SELECT {HEAD_COLUMNS} FROM sagas WHERE saga_id = ANY(CAST(? AS TEXT[]))"
    " ORDER BY saga_id FOR UPDATE"
)
# With the executors' row first (share-locked: see :mod:`.fencing`), in the same statement: one
# row even when none of the ids exists yet (its head columns then NULL).
_FENCED_HEADS = (
    f"SELECT e.mode, e.epoch, e.holder, h.* FROM ({SHARED_EXECUTORS}) AS e"
    f" LEFT JOIN ({_HEADS}) AS h ON true"
)

_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL))

# The batch's writes in one statement: the sub-statements of a WITH all run, each on its own
# rows, whether or not the main query reads them (empty arrays: that part changes nothing). No
# sub-statement writes rows another one reads: the updated sagas existed before the batch, the
# inserted ones did not; a step record's saga exists once the statement has run, which is when
# its foreign key is checked. The write that finishes a saga also ends its lease (a finished
# saga is never claimed: its lease would hold nothing), keeping its owner: who ran it.
_WRITE_PARTS = (
    "WITH inserted AS (INSERT INTO sagas (saga_id, definition, input, fingerprint, status,"
    " reason, needs_attention, created_at, updated_at, version)"
    " SELECT v.saga_id, v.definition, v.input, v.fingerprint, v.status, v.reason,"
    " v.needs_attention, v.created_at, v.updated_at, v.version FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),"
    " CAST(? AS DOUBLE PRECISION[]), CAST(? AS DOUBLE PRECISION[]), CAST(? AS BIGINT[]))"
    " WITH ORDINALITY AS v(saga_id, definition, input, fingerprint, status, reason,"
    " needs_attention, created_at, updated_at, version, n) ORDER BY v.n RETURNING 1),"
    " updated AS (UPDATE sagas SET status = v.status, reason = v.reason,"
    " needs_attention = v.needs_attention, updated_at = v.updated_at, version = v.version,"
    " input = COALESCE(v.input, sagas.input), attention_reason = v.attention_reason,"
    f" lease_until = CASE WHEN v.status IN ({_TERMINAL}) THEN NULL ELSE sagas.lease_until END"
    " FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS INTEGER[]),"
    " CAST(? AS DOUBLE PRECISION[]), CAST(? AS BIGINT[]), CAST(? AS BIGINT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]))"
    " AS v(saga_id, status, reason, needs_attention, updated_at, version, expected, input,"
    " attention_reason)"
    " WHERE sagas.saga_id = v.saga_id AND sagas.version = v.expected RETURNING 1),"
    " stepped AS (INSERT INTO saga_steps (saga_id, step, phase, status, result, reason,"
    " attempts, started_at, ended_at, trail)"
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
    " ended_at = excluded.ended_at, trail = excluded.trail RETURNING 1)"
)
#: A row per updated saga (its count checked by the write), the other parts run regardless.
_WRITE = _WRITE_PARTS + " SELECT 1 FROM updated"
#: The same, NOTIFYing the channel given last: one row more (an Append runs every part).
_WRITE_NOTIFY = (
    _WRITE_PARTS + ", notified AS (SELECT pg_notify(?, '') AS done)"
    " SELECT 1 FROM updated UNION ALL SELECT 1 FROM notified"
)


# New sagas only, in one statement of their own (autocommit): an id that exists is left alone.
_CREATE = (
    "INSERT INTO sagas (saga_id, definition, input, fingerprint, status, reason,"
    " needs_attention, created_at, updated_at, version)"
    " SELECT v.saga_id, v.definition, v.input, v.fingerprint, v.status, v.reason, 0,"
    " v.created_at, v.created_at, CAST(? AS BIGINT) FROM unnest("
    "CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS TEXT[]),"
    " CAST(? AS TEXT[]), CAST(? AS TEXT[]), CAST(? AS DOUBLE PRECISION[]))"
    " WITH ORDINALITY AS v(saga_id, definition, input, fingerprint, status, reason, created_at,"
    " n) ORDER BY v.n ON CONFLICT (saga_id) DO NOTHING RETURNING saga_id"
)


def creates_only(writes: Sequence[Write]) -> Sequence[CreateWrite] | None:
    """``writes`` if they only create sagas, each id once (:func:`create_sagas` applies them)."""
    if not all(isinstance(write, CreateWrite) for write in writes):
        return None
    creates = cast("Sequence[CreateWrite]", writes)
    return creates if len({write.saga_id for write in creates}) == len(creates) else None


async def create_sagas(db: Database, creates: Sequence[CreateWrite]) -> list[bool]:
    """Insert the sagas of ``creates`` that do not exist yet, in one statement that commits by
    itself; whether each was created. The effect :func:`~.sqlbatch.apply_batch` has on such a
    batch, in one round trip instead of four (BEGIN, heads, insert, COMMIT): a submitter's."""
    rows = await db.fetchall(
        _CREATE,
        FIRST_VERSION,
        [w.saga_id for w in creates],
        [w.definition for w in creates],
        [w.input for w in creates],
        [w.fingerprint for w in creates],
        [w.status.value for w in creates],
        [w.reason for w in creates],
        [w.at for w in creates],
    )
    inserted = {row["saga_id"] for row in rows}
    return [w.saga_id in inserted for w in creates]


def ids_param(ids: Sequence[str]) -> list[str]:
    """Saga ids as the one array parameter of ``= ANY(CAST(? AS TEXT[]))``."""
    return list(ids)


class ArrayStatements(BatchStatements):
    """:class:`BatchStatements` for PostgreSQL, one fixed text each (see the module doc)."""

    def __init__(self, right: ExecutorRight | None = None, done_channel: str | None = None) -> None:
        super().__init__("FOR UPDATE")
        #: An executor's right: the heads' statement checks it (no separate round trip).
        self.right = right
        #: NOTIFYed by each batch that finishes a saga (see the module doc); None: never.
        self.done_channel = done_channel

    async def fetch_heads(self, tx: Tx, ids: Sequence[str]) -> dict[str, Head]:
        right = self.right
        if right is None:
            rows = await tx.fetchall(_HEADS, ids_param(ids))
        else:
            right.check_local()
            rows = await tx.fetchall(_FENCED_HEADS, ids_param(ids))
            right.verify(rows[0] if rows else None)  # before anything is written
        return {row["saga_id"]: head_of(row) for row in rows if row["saga_id"] is not None}

    async def write(
        self,
        tx: Tx,
        new: Sequence[tuple[CreateWrite, Head]],
        changed: Sequence[tuple[str, Head, int]],
        steps: Sequence[tuple[str, StepRow]],
    ) -> None:
        # A plain INSERT: if another process created one of these ids since we looked, the
        # unique key raises ConflictError and the batch is retried one write at a time.
        if not (new or changed or steps):
            return
        sql, expect, channel = _WRITE, len(changed), self.done_channel
        extra: tuple[str, ...] = ()
        if channel is not None and (
            any(h.status in TERMINAL for _, h, _ in changed)
            or any(h.status in TERMINAL for _, h in new)
        ):
            sql, expect, extra = _WRITE_NOTIFY, expect + 1, (channel,)
        params = (
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
            [saga_id for saga_id, _, _ in changed],
            [h.status.value for _, h, _ in changed],
            [h.reason for _, h, _ in changed],
            [int(h.needs_attention) for _, h, _ in changed],
            [h.updated_at for _, h, _ in changed],
            [h.version for _, h, _ in changed],
            [version for _, _, version in changed],
            [h.input for _, h, _ in changed],
            [h.attention_reason for _, h, _ in changed],
            [saga_id for saga_id, _ in steps],
            [r.step for _, r in steps],
            [r.phase.value for _, r in steps],
            [r.status.value for _, r in steps],
            [r.result for _, r in steps],
            [r.reason for _, r in steps],
            [r.attempts for _, r in steps],
            [r.started_at for _, r in steps],
            [r.ended_at for _, r in steps],
            [r.trail for _, r in steps],
            *extra,
        )
        # A saga changed under the batch (a concurrent writer) is one row fewer: ConflictError.
        await tx.write(sql, params, expect)


ARRAY_STATEMENTS = ArrayStatements()

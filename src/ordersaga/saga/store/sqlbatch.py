"""Apply one batch of saga log writes inside one SQL transaction.

The batch is replayed in Python, in submission order, against the current rows of the sagas it
touches (read once, locked on PostgreSQL), so each write is checked against the state left by the
writes before it — including earlier writes of the same batch. A forbidden write becomes that
write's error outcome and is skipped; it does not abort the transaction. What survives is folded
into a few multi-row statements: one INSERT of the new sagas, one UPDATE of the changed ones, and
one upsert of the step records (the last record per (saga, step, phase) wins, in the position of
its first insertion).

The statements themselves are the dialect's (:class:`BatchStatements`): multi-row ``VALUES``
lists here (SQLite, and any SQL database), fixed array statements on PostgreSQL
(:mod:`.pgbatch`, which the server parses and plans once per connection).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from ordersaga.db import Tx
from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import SagaStatus, StepStatus
from ordersaga.saga.store.model import CreateWrite, Head, StepRow, Write, check_update

#: The stored text of each status and phase: a dict lookup where ``str(member)`` copies the
#: member into a new plain str (what the drivers bind) through the enum's ``__str__``.
_TEXT: dict[str, str] = {
    member: member.value for kind in (SagaStatus, StepStatus, Phase) for member in kind
}

#: Rows per multi-row statement: stays far below both dialects' limits on bound parameters.
CHUNK_ROWS = 200

Outcome = bool | None  # create: whether it inserted; update: nothing
T = TypeVar("T")

_INSERT_SAGAS = (
    "INSERT INTO sagas (saga_id, definition, input, fingerprint, status, reason,"
    " needs_attention, created_at, updated_at, version) VALUES "
)
_SAGA_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# Casts give PostgreSQL the parameter types of a VALUES list; SQLite accepts them too.
_UPDATE_SAGAS = (
    "UPDATE sagas SET status = v.column2, reason = v.column3, needs_attention = v.column4,"
    " updated_at = v.column5, version = v.column6, input = COALESCE(v.column8, sagas.input),"
    " attention_reason = v.column9"
    " FROM (VALUES {rows}) AS v WHERE sagas.saga_id = v.column1 AND sagas.version = v.column7"
)
_UPDATE_VALUES = (
    "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS INTEGER),"
    " CAST(? AS DOUBLE PRECISION), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT),"
    " CAST(? AS TEXT))"
)

#: The same row when none of the chunk's sagas has a reason or an attention reason: NULLs in
#: the text rather than bound, one text per row count as before. Binding a None costs the
#: sqlite3 module an adapter lookup even with the identity adapter :mod:`ordersaga.db.sqlite`
#: registers; a NULL in the text costs nothing (callgrind, bench c=64: the one-template
#: version costs 0.02 M instructions per order more).
_UPDATE_VALUES_NO_REASONS = (
    "(CAST(? AS TEXT), CAST(? AS TEXT), NULL, CAST(? AS INTEGER),"
    " CAST(? AS DOUBLE PRECISION), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT),"
    " NULL)"
)

_UPSERT_STEPS = (
    "INSERT INTO saga_steps (saga_id, step, phase, status, result, reason, attempts,"
    " started_at, ended_at, trail) VALUES {rows} ON CONFLICT (saga_id, step, phase) DO UPDATE"
    " SET status = excluded.status, result = excluded.result, reason = excluded.reason,"
    " attempts = excluded.attempts, started_at = excluded.started_at,"
    " ended_at = excluded.ended_at, trail = excluded.trail"
)
_STEP_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#: A row without reason and trail (the common record: a plain call that succeeded), for a chunk
#: whose records all lack both: NULLs in the text rather than bound (see above).
_STEP_VALUES_BARE = "(?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL)"


def chunks(items: Sequence[T], size: int = CHUNK_ROWS) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


class BatchStatements:
    """The statements of a batch: multi-row ``VALUES`` lists, in chunks of :data:`CHUNK_ROWS`.

    ``lock_suffix`` (``FOR UPDATE`` on PostgreSQL) locks the touched rows against other writer
    processes until the commit; SQLite's ``BEGIN IMMEDIATE`` already holds the database lock.
    """

    def __init__(self, lock_suffix: str = "") -> None:
        self.lock_suffix = lock_suffix

    async def fetch_heads(self, tx: Tx, ids: Sequence[str]) -> dict[str, Head]:
        heads: dict[str, Head] = {}
        for chunk in chunks(ids, 500):
            rows = await tx.fetchall(
                f"SELECT {HEAD_COLUMNS} FROM sagas WHERE saga_id IN ({placeholders(len(chunk))})"
                f" ORDER BY saga_id {self.lock_suffix}",
                *chunk,
            )
            for row in rows:
                heads[row["saga_id"]] = head_of(row)
        return heads

    async def insert_sagas(self, tx: Tx, new: Sequence[tuple[CreateWrite, Head]]) -> None:
        # A plain INSERT: if another process created one of these ids since we looked, the
        # unique key raises ConflictError and the batch is retried one write at a time.
        for chunk in chunks(new):
            params: list[Any] = []
            for write, head in chunk:
                params += (write.saga_id, write.definition, write.input, write.fingerprint)
                params += (_TEXT[head.status], head.reason, int(head.needs_attention))
                params += (write.at, head.updated_at, head.version)
            await tx.execute(_INSERT_SAGAS + ", ".join([_SAGA_VALUES] * len(chunk)), *params)

    async def update_sagas(self, tx: Tx, changed: Sequence[tuple[str, Head, int]]) -> None:
        for chunk in chunks(changed):
            # One pass for the common chunk, none of whose sagas has a reason (the row without
            # them); the first that has one starts the chunk over with the full row.
            values = _UPDATE_VALUES_NO_REASONS
            params: list[Any] = []
            for saga_id, head, version in chunk:
                if head.reason is not None or head.attention_reason is not None:
                    values = _UPDATE_VALUES
                    break
                params += (
                    saga_id,
                    _TEXT[head.status],
                    int(head.needs_attention),
                    head.updated_at,
                    head.version,
                    version,
                    head.input,
                )
            if values is _UPDATE_VALUES:
                params = []
                for saga_id, head, version in chunk:
                    params += (saga_id, _TEXT[head.status], head.reason, int(head.needs_attention))
                    params += (head.updated_at, head.version, version, head.input)
                    params.append(head.attention_reason)
            sql = _UPDATE_SAGAS.format(rows=", ".join([values] * len(chunk)))
            if await tx.execute(sql, *params) != len(chunk):
                raise ConflictError("a saga changed under a batch (concurrent writer)")

    async def upsert_steps(self, tx: Tx, rows: Sequence[tuple[str, StepRow]]) -> None:
        await upsert_steps(tx, rows)

    async def write(
        self,
        tx: Tx,
        new: Sequence[tuple[CreateWrite, Head]],
        changed: Sequence[tuple[str, Head, int]],
        steps: Sequence[tuple[str, StepRow]],
    ) -> None:
        """What a batch changes: the new sagas, the changed ones, the step records (each
        statement only when it has rows; a dialect may do all three in one statement)."""
        if new:
            await self.insert_sagas(tx, new)
        if changed:
            await self.update_sagas(tx, changed)
        if steps:
            await self.upsert_steps(tx, steps)


HEAD_COLUMNS = (
    "saga_id, status, reason, needs_attention, updated_at, version, owner, attention_reason"
)


#: Statuses by their stored text: a dict lookup where ``SagaStatus(text)`` runs the enum's
#: Python-level constructor (it stays the fallback, raising for a text that is no status).
_STATUS_OF: dict[str, SagaStatus] = {status.value: status for status in SagaStatus}


def head_of(row: Any) -> Head:
    """A saga's :class:`Head` from a row of :data:`HEAD_COLUMNS`."""
    text = row["status"]
    return Head(
        _STATUS_OF.get(text) or SagaStatus(text),
        row["reason"],
        bool(row["needs_attention"]),
        float(row["updated_at"]),
        int(row["version"]),
        row["owner"],
        None,  # input: none replaced yet (positional: a keyword takes the slower call path)
        row["attention_reason"],
    )


VALUES_STATEMENTS = BatchStatements()


async def apply_batch(
    tx: Tx, writes: Sequence[Write], statements: BatchStatements = VALUES_STATEMENTS
) -> list[Outcome | Exception]:
    """Apply ``writes`` in ``tx``; return one outcome per write (see the module doc).

    Raises (and so rolls back) only on a database error, or ConflictError when another process
    changed or created one of the sagas concurrently.
    """
    ids = list(dict.fromkeys([w.saga_id for w in writes]))
    heads = await statements.fetch_heads(tx, ids)
    versions = {saga_id: head.version for saga_id, head in heads.items()}
    created: dict[str, CreateWrite] = {}
    steps: dict[tuple[str, str, str], StepRow] = {}
    outcomes: list[Outcome | Exception] = []
    for write in writes:
        saga_id = write.saga_id
        if isinstance(write, CreateWrite):
            if saga_id in heads:
                outcomes.append(False)
            else:
                heads[saga_id] = Head.of_create(write)
                created[saga_id] = write
                outcomes.append(True)
            continue
        head = heads.get(saga_id)
        try:
            if head is None:
                check_update(saga_id, None, write.status)  # raises: unknown saga
            else:
                head.apply(write, saga_id)
        except ConflictError as exc:
            outcomes.append(exc)
            continue
        for row in write.steps:
            steps[(saga_id, row.step, row.phase)] = row
        outcomes.append(None)
    changed = [
        (saga_id, heads[saga_id], version)
        for saga_id, version in versions.items()
        if heads[saga_id].version != version
    ]
    await statements.write(
        tx,
        [(w, heads[saga_id]) for saga_id, w in created.items()],
        changed,
        [(key[0], row) for key, row in steps.items()],
    )
    return outcomes


async def upsert_steps(tx: Tx, rows: Sequence[tuple[str, StepRow]]) -> None:
    for chunk in chunks(rows):
        # One pass for the common chunk of bare records (see update_sagas).
        values = _STEP_VALUES_BARE
        params: list[Any] = []
        for saga_id, row in chunk:
            if row.reason is not None or row.trail is not None:
                values = _STEP_VALUES
                break
            params += (
                saga_id,
                row.step,
                _TEXT[row.phase],
                _TEXT[row.status],
                row.result,
                row.attempts,
                row.started_at,
                row.ended_at,
            )
        if values is _STEP_VALUES:
            params = []
            for saga_id, row in chunk:
                params += (saga_id, row.step, _TEXT[row.phase], _TEXT[row.status], row.result)
                params += (row.reason, row.attempts, row.started_at, row.ended_at, row.trail)
        sql = _UPSERT_STEPS.format(rows=", ".join([values] * len(chunk)))
        await tx.execute(sql, *params)

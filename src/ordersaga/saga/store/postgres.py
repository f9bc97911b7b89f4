"""The saga log in PostgreSQL, shared by any number of orchestrator workers.

Dialect hooks: a batch locks the saga rows it changes (``FOR UPDATE``, in saga id order, so two
workers' batches cannot deadlock on each other) and is two statements (:mod:`.pgbatch`); a
submitter's batch of creates only is one INSERT that commits by itself; reads that span two
statements run in one ``REPEATABLE READ`` snapshot, so a saga and its step records always
match; ``durable=False`` turns off ``synchronous_commit`` for the store's own transactions.

Leases (the distributed setup): :meth:`PostgresSagaStore.claim` hands a worker unfinished sagas
that nobody holds, or whose holder's lease expired, skipping rows another worker is claiming at
that very moment (``FOR UPDATE SKIP LOCKED``), in one statement that also leases them (and reads
the executors' epoch ``FOR SHARE``, like every write of an executor, returning it even when it
claims nothing); the steps of the claimed sagas that have any (past their first version) are
read after it, when no other writer can change them any more. A renewal extends all of a
worker's leases in one statement; the write that finishes a saga ends its lease, so a worker
releases only what it hands back unfinished. Lease times come from the database clock, so the
workers' clocks need not agree. The engine must renew a lease well within ``lease_s`` and stop
working on a saga whose renewal failed; what makes a lapsed lease safe is fencing: a worker's
writes carry its owner id (``update(owner=...)``) and are refused, under the batch's row lock,
once the saga is held by someone else (see :mod:`ordersaga.cluster.worker`). A log is executed by
workers or by one self-executing run, never both, and a process that lost that right cannot
write another record (:mod:`.fencing`, :meth:`PostgresSagaStore.lock_executors`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from ordersaga.db import Row, Tx
from ordersaga.db.postgres import PostgresDatabase
from ordersaga.errors import ConflictError, ExecutorFenced, StorageError
from ordersaga.saga.outcome import CANCELLED_REASON
from ordersaga.saga.store.base import TERMINAL, Compacted, SagaRecord, SagaStatus, StepRecord
from ordersaga.saga.store.fencing import EXECUTOR_COLUMNS, SHARED_EXECUTORS, ExecutorRight
from ordersaga.saga.store.model import (
    COMPACTED_PREFIX,
    FIRST_VERSION,
    CreateWrite,
    Write,
    input_of,
    make_create,
    record_from_row,
    record_of_row,
    step_from_row,
)
from ordersaga.saga.store.pgbatch import (
    ARRAY_STATEMENTS,
    ArrayStatements,
    create_sagas,
    creates_only,
    ids_param,
)
from ordersaga.saga.store.schema import UNFINISHED_SQL
from ordersaga.saga.store.sql import Reader, SqlSagaStore
from ordersaga.saga.store.sqlbatch import Outcome

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_TERMINAL = [s.value for s in TERMINAL]
_TERMINAL_SQL = ", ".join(repr(s) for s in _TERMINAL)


class PostgresSagaStore(SqlSagaStore):
    """A saga log in ``postgresql://...``, with leases for several workers."""

    lock_suffix = "FOR UPDATE"
    batch_statements = ARRAY_STATEMENTS
    #: Every statement on the engine's and the workers' paths finds its rows through an index
    #: (ids, the unfinished sagas' index). Their texts are fixed, so the server plans each once
    #: per connection and keeps that plan — a plan made while the log was nearly empty would
    #: keep scanning whole tables as they grow. A query with no index to use still scans.
    pg_settings = {"enable_seqscan": "off"}
    #: Write batches are pipelined: BEGIN goes with the heads' statement (see :mod:`.pgbatch`).
    pipelined = True
    _right: ExecutorRight | None = None
    _done_channel: str | None = None

    async def begin_write(self, tx: Tx) -> None:
        # The executor's right is checked by the batch's first statement (the heads': see
        # :mod:`.pgbatch`), under the same share lock a statement of its own took.
        if not self.durable:
            await tx.write("SET LOCAL synchronous_commit TO OFF", (), None)  # with the BEGIN

    def announce_finished(self, channel: str) -> None:
        """NOTIFY ``channel`` in every write batch that finishes a saga (a worker's: the
        submitters listen), in the batch's own statement (see :mod:`.pgbatch`)."""
        self._done_channel = channel
        self.batch_statements = ArrayStatements(self._right, channel)

    def reading(self) -> AbstractAsyncContextManager[Reader]:
        database = self.database
        assert isinstance(database, PostgresDatabase)
        return database.snapshot()

    async def with_steps(self, reader: Reader, rows: Sequence[Row]) -> list[SagaRecord]:
        """The records of ``rows`` with their steps, read in one fixed statement."""
        steps: dict[str, list[StepRecord]] = {row["saga_id"]: [] for row in rows}
        if steps:
            step_rows = await reader.fetchall(_steps_sql(self.step_columns), ids_param(list(steps)))
            for step_row in step_rows:
                steps[step_row["saga_id"]].append(step_from_row(step_row))
        return [record_from_row(row, steps[row["saga_id"]]) for row in rows]

    # -- leases ------------------------------------------------------------------------------

    async def claim(
        self, owner: str, lease_s: float, limit: int = 100, *, include_held: bool = True
    ) -> list[SagaRecord]:
        """Take up to ``limit`` unfinished sagas, oldest first, for ``owner`` for ``lease_s``.

        A saga qualifies when nobody holds it, its lease expired, or ``owner`` already holds it
        (its lease is extended; ``include_held=False`` leaves those out, for a worker that is
        running them and wants new work). Rows locked by a concurrent claim are skipped, not
        waited for. Returns the claimed sagas as they are in the log.
        """
        if lease_s <= 0 or limit < 1:
            raise ValueError("lease_s must be positive and limit at least 1")
        right = self._right
        params: list[object] = [*([owner] if include_held else []), limit]
        params += [owner, float(lease_s)]
        if right is not None:
            right.check_local()
            params.append(right.epoch)
        sql = _claim_sql(self.saga_columns, include_held, right is not None)
        rows = await self.database.fetchall(sql, *params)
        if right is not None:  # the executors' row leads every row: nothing claimed, and why?
            right.verify(rows[0] if rows else None)
            rows = [row for row in rows if row["saga_id"] is not None]
        if not rows:
            return []
        # The rows are ours now: only a write carrying our owner id can change their steps.
        rows.sort(key=lambda row: int(row["seq"]))
        return await self._with_any_steps(rows)

    async def _with_any_steps(self, rows: Sequence[Row]) -> list[SagaRecord]:
        """:meth:`with_steps`, reading only the steps of sagas that may have some: every write
        that records steps changes its saga's row and bumps its ``version``, so a saga still at
        its first version (as created) has none — the usual claim, of new sagas only, then
        reads nothing more."""
        stepped = [row for row in rows if int(row["version"]) > FIRST_VERSION]
        if not stepped:
            return [record_from_row(row, ()) for row in rows]
        if len(stepped) == len(rows):
            return await self.with_steps(self.database, rows)
        records = {r.saga_id: r for r in await self.with_steps(self.database, stepped)}
        return [
            records[row["saga_id"]] if row["saga_id"] in records else record_from_row(row, ())
            for row in rows
        ]

    async def renew(self, owner: str, saga_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend ``owner``'s leases; return the ids it still holds (the others were lost)."""
        if not saga_ids:
            return []
        # One statement, which commits by itself: no BEGIN and COMMIT round trips around it.
        rows = await self.database.fetchall(_RENEW, float(lease_s), owner, ids_param(saga_ids))
        held = {row["saga_id"] for row in rows}
        return [saga_id for saga_id in saga_ids if saga_id in held]

    async def release(self, owner: str, saga_ids: Sequence[str]) -> None:
        """Give up ``owner``'s leases on ``saga_ids`` (ids it does not hold are ignored).

        A finished saga keeps ``owner`` (with no lease): who ran it, for operators. No claim
        ever looks at a finished saga, so it holds nothing; the write that finished it already
        ended its lease, so its worker need not release it.
        """
        if not saga_ids:
            return
        await self.database.fetchall(_RELEASE, owner, ids_param(saga_ids))  # commits by itself

    # -- who may execute sagas -----------------------------------------------------------------

    async def lock_executors(
        self, *, worker: bool, holder: str | None = None, wait: float = 3.0
    ) -> None:
        """Take this log's right to execute sagas for as long as the store is open.

        Either one process that runs sagas itself (``ordersaga run``, whose sagas nobody
        leases) or any number of workers that lease them — never both, else a worker would
        claim the sagas that run is driving. Raises :class:`ExecutorBusy` if another holds it.
        From then on every write transaction checks the right (see :mod:`.fencing`); once it
        is lost, writes raise :class:`ExecutorFenced`.
        """
        self._right = await ExecutorRight.acquire(
            self.database.url, worker=worker, holder=holder, wait=wait
        )
        self.batch_statements = ArrayStatements(self._right, self._done_channel)

    @property
    def executor_right(self) -> ExecutorRight | None:
        return self._right

    async def _apply(self, writes: Sequence[Write]) -> list[Outcome | Exception]:
        creates = self._plain_creates(writes)
        if creates is not None:
            return list(await create_sagas(self.database, creates))
        try:
            return await super()._apply(writes)
        except (ExecutorFenced, ConflictError):
            raise  # a conflict is an answer: the sessions are fine
        except StorageError as exc:
            # A write that failed because the sessions were cut: the right went with them.
            right = self._right
            if right is not None and await right.confirm_lost():
                raise ExecutorFenced(right.lost or str(exc)) from exc
            raise

    def _plain_creates(self, writes: Sequence[Write]) -> Sequence[CreateWrite] | None:
        """``writes`` when they can go as one statement of their own (:func:`.create_sagas`):
        only creates, from a store that is no executor (the submitters'), with durable commits
        and no crash points between a batch and its commit."""
        if self._right is not None or not self.durable or self.crash_points.armed:
            return None
        return creates_only(writes)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            right, self._right = self._right, None
            if right is not None:
                await right.release()

    # -- waiting for outcomes ------------------------------------------------------------------

    async def finished(self, saga_ids: Sequence[str]) -> list[SagaRecord]:
        """The records (with their steps) of those of ``saga_ids`` that are finished.

        One query however many ids: what a submitter polls for the sagas it waits on.
        """
        if not saga_ids:
            return []
        # One statement, so one snapshot: each saga with its steps as one JSON array.
        sql = _finished_sql(self.saga_columns, self.step_columns)
        rows = await self.database.fetchall(sql, ids_param(saga_ids), _TERMINAL)
        return [
            record_from_row(row, map(step_from_row, json.loads(row["steps_json"] or "[]")))
            for row in rows
        ]

    async def create_or_existing(
        self, saga_id: str, definition: str, input: Mapping[str, Any], fingerprint: str
    ) -> SagaRecord | None:
        """:meth:`create` of a running saga for a caller that keeps nothing of what it wrote (a
        submitter): None when this call created it (no record made of the input just written),
        else the saga as it exists."""
        return await self._insert(
            make_create(
                saga_id,
                definition,
                input,
                fingerprint,
                SagaStatus.RUNNING,
                None,
                self._clock.time(),
            )
        )

    async def outcomes(self, saga_ids: Sequence[str]) -> list[SagaRecord]:
        """:meth:`finished`, each record as retention compacts it (:mod:`.retention`): no input,
        no steps, what they tell of its outcome in ``compacted`` (as
        :func:`~ordersaga.saga.outcome.compacted_of` sums them up), computed by the server —
        what a submitter that only reports outcomes reads, however many steps each saga has."""
        if not saga_ids:
            return []
        sql = _outcomes_sql(self.saga_columns)
        rows = await self.database.fetchall(sql, CANCELLED_REASON, ids_param(saga_ids), _TERMINAL)
        return [_summed_up(row) for row in rows]


def _summed_up(row: Row) -> SagaRecord:
    """A row of :func:`_outcomes_sql` as the record of a compacted saga."""
    stored = row["input"]  # a compacted saga's summary (NULL: its steps were summed up)
    compacted = (
        Compacted(row["step"], row["cause"], row["retries"], row["compensations"])
        if stored is None
        else input_of(stored)[1]
    )
    return record_of_row(row, {}, (), compacted)


# The ids among the given ones that the owner holds, locked in saga id order: write batches
# lock their rows in saga id order too (see :mod:`.pgbatch`), so a renewal and a batch of the
# same worker cannot deadlock on each other.
_MINE = (
    "SELECT saga_id FROM sagas WHERE owner = ? AND saga_id = ANY(CAST(? AS TEXT[]))"
    " ORDER BY saga_id FOR UPDATE"
)
# A finished saga stays held (its task may still be ending) but leased no more: its final write
# ended the lease (see :mod:`.pgbatch`) and a renewal racing with that write must not restore it.
_RENEW = (
    f"UPDATE sagas SET lease_until = CASE WHEN status IN ({_TERMINAL_SQL}) THEN NULL"
    f" ELSE {_NOW} + CAST(? AS DOUBLE PRECISION) END WHERE saga_id IN ({_MINE}) RETURNING saga_id"
)
_RELEASE = (
    f"UPDATE sagas SET owner = CASE WHEN status IN ({_TERMINAL_SQL}) THEN owner END,"
    f" lease_until = NULL WHERE saga_id IN ({_MINE})"
)


@functools.lru_cache(maxsize=8)
def _steps_sql(step_columns: str) -> str:
    return (
        f"SELECT {step_columns} FROM saga_steps WHERE saga_id = ANY(CAST(? AS TEXT[]))"
        " ORDER BY started_at, id"
    )


@functools.lru_cache(maxsize=8)
def _finished_sql(saga_columns: str, step_columns: str) -> str:
    """The finished ones among the given sagas, each with a JSON array of its step records in
    the order :func:`_steps_sql` reads them (a float's JSON text reads back the same float)."""
    return (
        f"SELECT {saga_columns}, (SELECT json_agg(s ORDER BY s.started_at, s.id) FROM"
        f" (SELECT id, {step_columns} FROM saga_steps WHERE saga_steps.saga_id = sagas.saga_id)"
        " AS s) AS steps_json FROM sagas WHERE saga_id = ANY(CAST(? AS TEXT[]))"
        " AND status = ANY(CAST(? AS TEXT[]))"
    )


@functools.lru_cache(maxsize=8)
def _outcomes_sql(saga_columns: str) -> str:
    """:func:`_finished_sql`'s sagas, the input only of a compacted saga (its summary), each with
    what :func:`~ordersaga.saga.outcome.compacted_of` reads in its steps: the first action step
    that failed a failed saga and why (``input``: none did), the attempts beyond the first, the
    compensations that succeeded."""
    names = [name.strip() for name in saga_columns.split(",")]
    stored = f"CASE WHEN left(sagas.input, 1) = '{COMPACTED_PREFIX}' THEN sagas.input END AS input"
    columns = ", ".join(
        stored if name == "input" else name if " " in name else f"sagas.{name}" for name in names
    )
    return (
        f"SELECT {columns}, failed.step, CASE WHEN sagas.status = 'failed'"
        " THEN COALESCE(failed.cause, 'input') END AS cause, cost.retries, cost.compensations"
        " FROM sagas CROSS JOIN LATERAL (SELECT"
        " COALESCE(SUM(GREATEST(s.attempts - 1, 0)), 0) AS retries, COUNT(*) FILTER"
        " (WHERE s.phase = 'compensate' AND s.status = 'succeeded') AS compensations"
        " FROM saga_steps AS s WHERE s.saga_id = sagas.saga_id) AS cost"
        " LEFT JOIN LATERAL (SELECT s.step, CASE WHEN s.status = 'refused' THEN 'business'"
        " WHEN s.reason = ? THEN 'operator' ELSE 'technical' END AS cause"
        " FROM saga_steps AS s WHERE s.saga_id = sagas.saga_id AND sagas.status = 'failed'"
        " AND s.phase = 'action' AND s.status IN ('refused', 'unknown', 'undelivered')"
        " ORDER BY s.started_at, s.id LIMIT 1) AS failed ON true"
        " WHERE sagas.saga_id = ANY(CAST(? AS TEXT[])) AND sagas.status = ANY(CAST(? AS TEXT[]))"
    )


@functools.lru_cache(maxsize=8)
def _claim_sql(saga_columns: str, include_held: bool, fenced: bool) -> str:
    """One statement: pick unfinished sagas nobody holds (skipping rows another transaction
    locks), lease them to the owner and return them with their ``version``; ``fenced``: only
    while the executors' epoch is still the given one (read ``FOR SHARE``, as every write of an
    executor does), and every row, or the only one when nothing was claimed, leads with the
    executors' row (:data:`~.fencing.EXECUTOR_COLUMNS`), for the claimer to tell why."""
    held = "owner = ? OR " if include_held else ""
    names = [name.strip() for name in saga_columns.split(",")]
    columns = ", ".join(name if " " in name else f"sagas.{name}" for name in names)
    epoch = " AND (SELECT epoch FROM executors_row) = ?" if fenced else ""
    picked = (
        f"picked AS (SELECT saga_id FROM sagas WHERE {UNFINISHED_SQL}"
        f" AND (owner IS NULL OR {held}lease_until < {_NOW}) ORDER BY seq LIMIT ?"
        " FOR UPDATE SKIP LOCKED)"
    )
    update = (
        f"UPDATE sagas SET owner = ?, lease_until = {_NOW} + ? FROM picked"
        f" WHERE sagas.saga_id = picked.saga_id{epoch} RETURNING {columns}, sagas.version"
    )
    if not fenced:
        return f"WITH {picked} {update}"
    executors = ", ".join(f"e.{name}" for name in EXECUTOR_COLUMNS.split(", "))
    return (
        f"WITH executors_row AS ({SHARED_EXECUTORS}), {picked}, claimed AS ({update})"
        f" SELECT {executors}, claimed.* FROM executors_row AS e LEFT JOIN claimed ON true"
    )

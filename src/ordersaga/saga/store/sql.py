"""The saga log in a SQL database (SQLite or PostgreSQL), with group commit.

Writes go through a :class:`~ordersaga.saga.store.batching.GroupCommitter`, which applies the
writes of concurrent coroutines in one transaction (:func:`~ordersaga.saga.store.sqlbatch.
apply_batch`) and returns from each call only after that transaction committed. Reads run outside
the write path; the dialect subclasses (:mod:`.sqlite`, :mod:`.postgres`) supply the few hooks
that differ: row locking, read snapshots and non-durable commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, Self

from ordersaga.clock import Clock, SystemClock
from ordersaga.db import Database, Row, Tx, open_database
from ordersaga.db.identity import check_shared, stamp_identity
from ordersaga.errors import StorageError
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.store import retention
from ordersaga.saga.store.base import (
    PruneStats,
    SagaRecord,
    SagaStatus,
    SagaStore,
    StepRecord,
    StoreStats,
)
from ordersaga.saga.store.batching import DEFAULT_MAX_BATCH, GroupCommitter
from ordersaga.saga.store.model import (
    UNFINISHED,
    CreateWrite,
    Write,
    make_create,
    make_update,
    record_from_row,
    step_from_row,
)
from ordersaga.saga.store.operator import OperatorAction, Repair, SagaEntry, SagaFilter, SagaPage
from ordersaga.saga.store.schema import COMPONENT, check_schema, ensure_schema, missing_columns
from ordersaga.saga.store.sqlbatch import (
    VALUES_STATEMENTS,
    BatchStatements,
    Outcome,
    apply_batch,
    chunks,
    placeholders,
)
from ordersaga.saga.store.sqlops import (
    HOLDER_COLUMNS,
    actions_of,
    apply_repair,
    list_query,
    page_of,
)
from ordersaga.telemetry.histogram import Histogram

SAGA_COLUMNS = (
    "seq, saga_id, definition, input, fingerprint, status, reason, needs_attention,"
    " created_at, updated_at, attention_reason"
)
STEP_COLUMNS = "saga_id, step, phase, status, result, reason, attempts, started_at, ended_at, trail"


def _readable(columns: str, missing: set[str], table: str) -> str:
    """``columns`` with those an older log lacks read as NULL (a read-only reader adds none)."""
    for name in [c.strip() for c in columns.split(",")]:
        if f"{table}.{name}" in missing:
            columns = columns.replace(name, f"NULL AS {name}")
    return columns


class Reader(Protocol):
    """What reads need: a database (SQLite) or a snapshot transaction (PostgreSQL)."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


class SqlSagaStore(SagaStore):
    """A saga log in ``db``; use :meth:`open` to get one with its schema in place."""

    #: Appended to the SELECT that reads a batch's sagas, to lock them until the commit.
    lock_suffix = ""
    #: What reads select (an older log opened read-only reads its missing columns as NULL).
    saga_columns = SAGA_COLUMNS
    step_columns = STEP_COLUMNS
    #: The dialect's statements of a write batch (see :mod:`.sqlbatch`).
    batch_statements: BatchStatements = VALUES_STATEMENTS
    #: Server settings of the store's connections (PostgreSQL).
    pg_settings: Mapping[str, str] = {}
    #: Whether :meth:`open` opens the database with pipelined write batches (PostgreSQL:
    #: :mod:`ordersaga.db.pipelined`); a batch runs in :meth:`Database.pipeline` either way.
    pipelined = False

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        durable: bool = True,
        clock: Clock | None = None,
        crash: CrashPoints = NO_CRASH,
    ) -> None:
        self.stats = StoreStats()
        self.durable = durable
        self._db = db
        self._clock = clock or SystemClock()
        self._crash = crash
        self._committer: GroupCommitter[Write, Outcome] = GroupCommitter(
            self._apply, self.stats, max_batch=max_batch
        )

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        durable: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        clock: Clock | None = None,
        crash: CrashPoints = NO_CRASH,
        read_only: bool = False,
        quiescent: bool = False,
    ) -> Self:
        """Open the database at ``url`` and create the schema if it is missing.

        ``read_only`` (inspection while another process executes): a SQLite file is opened
        ``mode=ro``, nothing is created, and a database without a saga log is refused.
        """
        db = await open_database(
            url,
            durable=durable,
            read_only=read_only,
            quiescent=quiescent,
            pg_settings=cls.pg_settings,
            pipelined=cls.pipelined,
        )
        try:
            # A PostgreSQL log is stamped with its identity (a data dir's file by the data dir).
            stamp = await check_shared(db, COMPONENT)
            await (check_schema(db) if read_only else ensure_schema(db))
            missing = await missing_columns(db) if read_only else set()
            if stamp is not None and not read_only:
                await stamp_identity(db, stamp)
        except BaseException:
            await db.close()
            raise
        store = cls(db, max_batch=max_batch, durable=durable, clock=clock, crash=crash)
        if missing:
            store.saga_columns = _readable(SAGA_COLUMNS, missing, "sagas")
            store.step_columns = _readable(STEP_COLUMNS, missing, "saga_steps")
        return store

    @property
    def database(self) -> Database:
        return self._db

    @property
    def crash_points(self) -> CrashPoints:
        return self._crash

    @property
    def max_batch(self) -> int:
        return self._committer.max_batch

    @property
    def batch_sizes(self) -> Histogram:
        """Writes per group commit (for the metrics)."""
        return self._committer.batch_sizes

    # -- writes ------------------------------------------------------------------------------

    async def create(
        self,
        saga_id: str,
        definition: str,
        input: Mapping[str, Any],
        fingerprint: str,
        *,
        status: SagaStatus = SagaStatus.RUNNING,
        reason: str | None = None,
    ) -> tuple[SagaRecord, bool]:
        write = make_create(
            saga_id, definition, input, fingerprint, status, reason, self._clock.time()
        )
        existing = await self._insert(write)
        return (write.record(), True) if existing is None else (existing, False)

    async def _insert(self, write: CreateWrite) -> SagaRecord | None:
        """Insert ``write``'s saga: None when this call inserted it, else the saga as it exists."""
        if await self._committer.enqueue(write):
            return None
        existing = await self.load(write.saga_id)
        if existing is None:  # sagas are never deleted (retention only compacts them)
            raise StorageError(f"saga {write.saga_id!r} exists but cannot be read back")
        return existing

    async def update(
        self,
        saga_id: str,
        *,
        steps: Sequence[StepRecord] = (),
        status: SagaStatus | None = None,
        reason: str | None = None,
        needs_attention: bool | None = None,
        owner: str | None = None,
        input: Mapping[str, Any] | None = None,
        attention_reason: str | None = None,
    ) -> None:
        write = make_update(
            saga_id,
            steps,
            status,
            reason,
            needs_attention,
            self._clock.time(),
            owner,
            input,
            attention_reason,
        )
        await self._committer.enqueue(write)

    async def _apply(self, writes: Sequence[Write]) -> list[Outcome | Exception]:
        # Crash points: the batch written but not committed; committed but not yet acknowledged.
        async with self._db.pipeline() as tx:
            await self.begin_write(tx)
            outcomes = await apply_batch(tx, writes, self.batch_statements)
            self._crash.hit("store.before:commit")
        self._crash.hit("store.after:commit")
        return outcomes

    async def begin_write(self, tx: Tx) -> None:
        """Hook: the first statements of every write transaction."""

    # -- reads -------------------------------------------------------------------------------

    async def with_steps(self, reader: Reader, rows: Sequence[Row]) -> list[SagaRecord]:
        """Hook: the records of saga ``rows``, each with its step records read in ``reader``."""
        return await with_steps(reader, self.step_columns, rows)

    def reading(self) -> AbstractAsyncContextManager[Reader]:
        """Hook: where a read that spans several statements runs (a consistent snapshot)."""
        return _plain(self._db)

    async def load(self, saga_id: str) -> SagaRecord | None:
        async with self.reading() as reader:
            row = await reader.fetchone(
                f"SELECT {self.saga_columns} FROM sagas WHERE saga_id = ?", saga_id
            )
            if row is None:
                return None
            return (await self.with_steps(reader, [row]))[0]

    async def unfinished(self) -> list[SagaRecord]:
        statuses = [s.value for s in UNFINISHED]
        async with self.reading() as reader:
            rows = await reader.fetchall(
                f"SELECT {self.saga_columns} FROM sagas"
                f" WHERE status IN ({placeholders(len(statuses))}) ORDER BY seq",
                *statuses,
            )
            return await self.with_steps(reader, rows)

    async def scan(self, batch_size: int = 500) -> AsyncIterator[SagaRecord]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        after = 0
        while True:
            async with self.reading() as reader:
                rows = await reader.fetchall(
                    f"SELECT {self.saga_columns} FROM sagas WHERE seq > ? ORDER BY seq LIMIT ?",
                    after,
                    batch_size,
                )
                records = await self.with_steps(reader, rows)
            for record in records:
                yield record
            if len(rows) < batch_size:
                return
            after = int(rows[-1]["seq"])

    async def count_by_status(self) -> dict[SagaStatus, int]:
        counts = dict.fromkeys(SagaStatus, 0)
        rows = await self._db.fetchall("SELECT status, COUNT(*) AS n FROM sagas GROUP BY status")
        for row in rows:
            counts[SagaStatus(row["status"])] = int(row["n"])
        return counts

    # -- inspection and repair ----------------------------------------------------------------

    async def list_sagas(self, query: SagaFilter) -> SagaPage:
        sql, params = list_query(f"{self.saga_columns}, {HOLDER_COLUMNS}", query)
        async with self.reading() as reader:
            rows = await reader.fetchall(sql, *params)
            records = await self.with_steps(reader, rows[: query.limit])
        entries = [_entry(row, record) for row, record in zip(rows, records, strict=False)]
        return page_of(rows, entries, query.limit)

    async def inspect(self, saga_id: str) -> SagaEntry | None:
        async with self.reading() as reader:
            row = await reader.fetchone(
                f"SELECT {self.saga_columns}, {HOLDER_COLUMNS} FROM sagas WHERE saga_id = ?",
                saga_id,
            )
            if row is None:
                return None
            record = (await self.with_steps(reader, [row]))[0]
            actions = await actions_of(self._db, reader, saga_id)
        return _entry(row, record, actions)

    async def operator_actions(self) -> list[OperatorAction]:
        return await actions_of(self._db, self._db, None)

    async def repair(self, saga_id: str, change: Repair, action: OperatorAction) -> SagaEntry:
        async with self._db.transaction() as tx:
            await apply_repair(tx, saga_id, change, action, self._clock.time(), self.lock_suffix)
        entry = await self.inspect(saga_id)
        if entry is None:  # sagas are never deleted
            raise StorageError(f"saga {saga_id!r} cannot be read back")
        return entry

    # -- retention (see :mod:`.retention`) --------------------------------------------------

    async def prune(
        self, before: float, *, batch_size: int = 500, dry_run: bool = False
    ) -> PruneStats:
        stats = await retention.compact(self._db, before, batch_size=batch_size, dry_run=dry_run)
        if not dry_run:
            await self._db.reclaim()  # cheap when there is nothing to give back
        return stats

    async def decided(self, saga_ids: Sequence[str], before: float) -> set[str]:
        return await retention.decided(self._db, saga_ids, before)

    async def sweep(
        self,
        name: str,
        before: float,
        visit: retention.Visitor,
        *,
        batch_size: int = 500,
        dry_run: bool = False,
    ) -> int:
        return await retention.sweep(
            self._db, name, before, visit, batch_size=batch_size, dry_run=dry_run
        )

    async def close(self) -> None:
        try:
            await self._committer.close()
        finally:
            await self._db.close()


def _entry(row: Row, record: SagaRecord, actions: Sequence[OperatorAction] = ()) -> SagaEntry:
    lease = row["lease_until"]
    return SagaEntry(record, row["owner"], None if lease is None else float(lease), tuple(actions))


@asynccontextmanager
async def _plain(db: Database) -> AsyncIterator[Reader]:
    yield db


async def with_steps(reader: Reader, step_columns: str, rows: Sequence[Row]) -> list[SagaRecord]:
    """Attach to each saga row its step records, read in one query per 500 sagas."""
    steps: dict[str, list[StepRecord]] = {row["saga_id"]: [] for row in rows}
    for chunk in chunks(list(steps), 500):
        step_rows = await reader.fetchall(
            f"SELECT {step_columns} FROM saga_steps WHERE saga_id IN ({placeholders(len(chunk))})"
            " ORDER BY started_at, id",
            *chunk,
        )
        for step_row in step_rows:
            steps[step_row["saga_id"]].append(step_from_row(step_row))
    return [record_from_row(row, steps[row["saga_id"]]) for row in rows]

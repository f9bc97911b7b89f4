"""The saga log in PostgreSQL, shared by any number of orchestrator workers.

Dialect hooks: a batch locks the saga rows it changes (``FOR UPDATE``, in saga id order, so two
workers' batches cannot deadlock on each other); reads that span two statements run in one
``REPEATABLE READ`` snapshot, so a saga and its step records always match; ``durable=False``
turns off ``synchronous_commit`` for the store's own transactions.

Leases (the distributed setup): :meth:`PostgresSagaStore.claim` hands a worker unfinished sagas
that nobody holds, or whose holder's lease expired, skipping rows another worker is claiming at
that very moment (``FOR UPDATE SKIP LOCKED``). Lease times come from the database clock, so the
workers' clocks need not agree. The engine must renew a lease well within ``lease_s`` and stop
working on a saga whose renewal failed; what makes a lapsed lease safe is fencing: a worker's
writes carry its owner id (``update(owner=...)``) and are refused, under the batch's row lock,
once the saga is held by someone else (see :mod:`ordersaga.cluster.worker`). A log is executed by
workers or by one self-executing run, never both (:meth:`PostgresSagaStore.lock_executors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import asyncpg

from ordersaga.db import Tx
from ordersaga.errors import ConfigError, UnavailableError
from ordersaga.saga.store.base import TERMINAL, SagaRecord
from ordersaga.saga.store.model import UNFINISHED
from ordersaga.saga.store.sql import SAGA_COLUMNS, Reader, SqlSagaStore, with_steps
from ordersaga.saga.store.sqlbatch import placeholders

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"
_EXECUTOR_LOCK = 0x6F73_6167  # pg advisory lock key ("osag")


class PostgresSagaStore(SqlSagaStore):
    """A saga log in ``postgresql://...``, with leases for several workers."""

    lock_suffix = "FOR UPDATE"
    _executor_lock: asyncpg.Connection | None = None

    async def begin_write(self, tx: Tx) -> None:
        if not self.durable:
            await tx.execute("SET LOCAL synchronous_commit TO OFF")

    def reading(self) -> AbstractAsyncContextManager[Reader]:
        return self._snapshot()

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Reader]:
        async with self.database.transaction() as tx:
            await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield tx

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
        statuses = [s.value for s in UNFINISHED]
        held = "owner = ? OR " if include_held else ""
        async with self.database.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {SAGA_COLUMNS} FROM sagas"
                f" WHERE status IN ({placeholders(len(statuses))})"
                f" AND (owner IS NULL OR {held}lease_until < {_NOW})"
                " ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED",
                *statuses,
                *([owner] if include_held else []),
                limit,
            )
            ids = [row["saga_id"] for row in rows]
            if ids:
                await tx.execute(
                    f"UPDATE sagas SET owner = ?, lease_until = {_NOW} + ?"
                    f" WHERE saga_id IN ({placeholders(len(ids))})",
                    owner,
                    float(lease_s),
                    *ids,
                )
            # The rows are locked by this transaction: no writer can change them in between.
            return await with_steps(tx, rows)

    async def renew(self, owner: str, saga_ids: Sequence[str], lease_s: float) -> list[str]:
        """Extend ``owner``'s leases; return the ids it still holds (the others were lost)."""
        if not saga_ids:
            return []
        async with self.database.transaction() as tx:
            rows = await tx.fetchall(
                f"UPDATE sagas SET lease_until = {_NOW} + ?"
                f" WHERE saga_id IN ({_mine(len(saga_ids))}) RETURNING saga_id",
                float(lease_s),
                owner,
                *saga_ids,
            )
        held = {row["saga_id"] for row in rows}
        return [saga_id for saga_id in saga_ids if saga_id in held]

    async def release(self, owner: str, saga_ids: Sequence[str]) -> None:
        """Give up ``owner``'s leases on ``saga_ids`` (ids it does not hold are ignored).

        A finished saga keeps ``owner`` (with no lease): who ran it, for operators. No claim
        ever looks at a finished saga, so it holds nothing.
        """
        if not saga_ids:
            return
        terminal = ", ".join(f"'{s.value}'" for s in TERMINAL)
        async with self.database.transaction() as tx:
            await tx.execute(
                f"UPDATE sagas SET owner = CASE WHEN status IN ({terminal}) THEN owner END,"
                " lease_until = NULL"
                f" WHERE saga_id IN ({_mine(len(saga_ids))})",
                owner,
                *saga_ids,
            )

    # -- who may execute sagas -----------------------------------------------------------------

    async def lock_executors(self, *, worker: bool, wait: float = 3.0) -> None:
        """Take this log's executor lock for as long as the store is open, or ConfigError.

        Sagas are executed either by one process that runs them itself (``ordersaga run``, whose
        sagas nobody leases) or by any number of workers that lease them — never both, else a
        worker would claim the sagas that run is driving. Workers share the lock; a run holds it
        alone. It is a session-level advisory lock on a connection of its own: a killed process
        loses it with its connection (``wait`` seconds give a process killed a moment ago the time
        it takes its database backend to notice).
        """
        try:
            conn = await asyncpg.connect(self.database.url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise UnavailableError(f"postgresql unavailable: {exc}") from exc
        mode = "pg_try_advisory_lock_shared" if worker else "pg_try_advisory_lock"
        try:
            deadline = asyncio.get_running_loop().time() + wait
            while not (taken := await conn.fetchval(f"SELECT {mode}($1)", _EXECUTOR_LOCK)):
                if asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(0.1)
        except BaseException:
            await conn.close()
            raise
        if not taken:
            await conn.close()
            who = "a run executes sagas itself" if worker else "workers (or a run) execute sagas"
            advice = "stop it first" if worker else "use 'run --submit-only' to hand orders to them"
            raise ConfigError(f"{who} on the saga log {self.database.url}: {advice}")
        self._executor_lock = conn

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            lock = self._executor_lock
            if lock is not None:
                self._executor_lock = None
                await lock.close()

    # -- waiting for outcomes ------------------------------------------------------------------

    async def finished(self, saga_ids: Sequence[str]) -> list[SagaRecord]:
        """The records (with their steps) of those of ``saga_ids`` that are finished.

        One query however many ids: what a submitter polls for the sagas it waits on.
        """
        if not saga_ids:
            return []
        terminal = [s.value for s in TERMINAL]
        async with self.reading() as reader:
            rows = await reader.fetchall(
                f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = ANY(CAST(? AS TEXT[]))"
                f" AND status IN ({placeholders(len(terminal))})",
                list(saga_ids),
                *terminal,
            )
            return await with_steps(reader, rows)


def _mine(n: int) -> str:
    """The ids among ``n`` given ones that the owner holds, locked in saga id order.

    Write batches lock their rows in saga id order too (see :mod:`.sqlbatch`), so a renewal
    and a batch of the same worker cannot deadlock on each other.
    """
    return (
        f"SELECT saga_id FROM sagas WHERE owner = ? AND saga_id IN ({placeholders(n)})"
        " ORDER BY saga_id FOR UPDATE"
    )

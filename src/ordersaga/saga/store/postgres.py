"""The saga log in PostgreSQL, shared by any number of orchestrator workers.

Dialect hooks: a batch locks the saga rows it changes (``FOR UPDATE``, in saga id order, so two
workers' batches cannot deadlock on each other); reads that span two statements run in one
``REPEATABLE READ`` snapshot, so a saga and its step records always match; ``durable=False``
turns off ``synchronous_commit`` for the store's own transactions.

Leases (the distributed setup): :meth:`PostgresSagaStore.claim` hands a worker unfinished sagas
that nobody holds, or whose holder's lease expired, skipping rows another worker is claiming at
that very moment (``FOR UPDATE SKIP LOCKED``). Lease times come from the database clock, so the
workers' clocks need not agree. A lease is advisory: the engine must renew it well within
``lease_s`` and stop working on a saga whose renewal failed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from ordersaga.db import Tx
from ordersaga.saga.store.base import SagaRecord
from ordersaga.saga.store.model import UNFINISHED
from ordersaga.saga.store.sql import SAGA_COLUMNS, Reader, SqlSagaStore, with_steps
from ordersaga.saga.store.sqlbatch import placeholders

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"


class PostgresSagaStore(SqlSagaStore):
    """A saga log in ``postgresql://...``, with leases for several workers."""

    lock_suffix = "FOR UPDATE"

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

    async def claim(self, owner: str, lease_s: float, limit: int = 100) -> list[SagaRecord]:
        """Take up to ``limit`` unfinished sagas, oldest first, for ``owner`` for ``lease_s``.

        A saga qualifies when nobody holds it, its lease expired, or ``owner`` already holds it
        (its lease is extended). Rows locked by a concurrent claim are skipped, not waited for.
        Returns the claimed sagas as they are in the log.
        """
        if lease_s <= 0 or limit < 1:
            raise ValueError("lease_s must be positive and limit at least 1")
        statuses = [s.value for s in UNFINISHED]
        async with self.database.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT {SAGA_COLUMNS} FROM sagas"
                f" WHERE status IN ({placeholders(len(statuses))})"
                f" AND (owner IS NULL OR owner = ? OR lease_until < {_NOW})"
                " ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED",
                *statuses,
                owner,
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
                f" WHERE owner = ? AND saga_id IN ({placeholders(len(saga_ids))})"
                " RETURNING saga_id",
                float(lease_s),
                owner,
                *saga_ids,
            )
        held = {row["saga_id"] for row in rows}
        return [saga_id for saga_id in saga_ids if saga_id in held]

    async def release(self, owner: str, saga_ids: Sequence[str]) -> None:
        """Give up ``owner``'s leases on ``saga_ids`` (ids it does not hold are ignored)."""
        if not saga_ids:
            return
        async with self.database.transaction() as tx:
            await tx.execute(
                "UPDATE sagas SET owner = NULL, lease_until = NULL"
                f" WHERE owner = ? AND saga_id IN ({placeholders(len(saga_ids))})",
                owner,
                *saga_ids,
            )

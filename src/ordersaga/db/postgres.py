"""PostgreSQL backend: an asyncpg pool; ``?`` placeholders are rewritten to ``$n``.

Transactions run at READ COMMITTED: a compare-and-swap ``UPDATE ... WHERE version = ?`` that
loses a race re-evaluates its WHERE clause after the winner commits and changes zero rows, which
is exactly the signal optimistic locking needs. :meth:`PostgresDatabase.snapshot` is a read-only
``REPEATABLE READ`` transaction, begun in one statement.

A connection goes back to the pool without asyncpg's reset query (one more round trip per
transaction): nothing here leaves session state on a pooled connection — settings are
``SET LOCAL``, advisory locks transaction-scoped, and listening and session locks use
connections of their own. An open transaction is still rolled back.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ordersaga.db.base import Database, Row, Tx
from ordersaga.errors import ConflictError, StorageError, UnavailableError

_PLACEHOLDER = re.compile(r"\?")


@functools.lru_cache(maxsize=1024)
def to_dollar_params(sql: str) -> str:
    """Rewrite ``?`` placeholders to ``$1, $2, ...`` (our SQL never has ``?`` in literals)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _m: f"${next(counter)}", sql)


def _translate(exc: BaseException) -> StorageError:
    if isinstance(exc, asyncpg.UniqueViolationError | asyncpg.DeadlockDetectedError):
        return ConflictError(f"postgresql: {exc}")
    if isinstance(exc, asyncpg.SerializationError):
        return ConflictError(f"postgresql: {exc}")
    if isinstance(exc, OSError | asyncpg.CannotConnectNowError | asyncpg.TooManyConnectionsError):
        return UnavailableError(f"postgresql unavailable: {exc}")
    return StorageError(f"postgresql: {exc}")


_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """A released connection keeps its (empty) session state: see the module doc."""


class _PgTx(Tx):
    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: Any) -> int:
        try:
            status = await self._conn.execute(to_dollar_params(sql), *params)
        except _ERRORS as exc:
            raise _translate(exc) from exc
        # asyncpg returns e.g. "UPDATE 1" / "INSERT 0 1"; the last word is the row count.
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        try:
            row = await self._conn.fetchrow(to_dollar_params(sql), *params)
        except _ERRORS as exc:
            raise _translate(exc) from exc
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        try:
            rows = await self._conn.fetch(to_dollar_params(sql), *params)
        except _ERRORS as exc:
            raise _translate(exc) from exc
        return [dict(r) for r in rows]


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool) -> None:
        self.url = url
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool behind it."""
        return self._pool

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        settings: Mapping[str, str] | None = None,
    ) -> PostgresDatabase:
        """A pool of connections to ``url``, each with the server ``settings`` given."""
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                reset=_no_reset,
                server_settings=dict(settings or {}),
            )
        except _ERRORS as exc:
            raise _translate(exc) from exc
        return cls(url, pool)

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        try:
            row = await self._pool.fetchrow(to_dollar_params(sql), *params)
        except _ERRORS as exc:
            raise _translate(exc) from exc
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        try:
            rows = await self._pool.fetch(to_dollar_params(sql), *params)
        except _ERRORS as exc:
            raise _translate(exc) from exc
        return [dict(r) for r in rows]

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        return self._transaction(None, False)

    def snapshot(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only transaction whose statements all see one snapshot (REPEATABLE READ)."""
        return self._transaction("repeatable_read", True)

    @asynccontextmanager
    async def _transaction(
        self, isolation: Literal["repeatable_read"] | None, readonly: bool
    ) -> AsyncIterator[Tx]:
        try:
            conn = await self._pool.acquire()
        except _ERRORS as exc:
            raise _translate(exc) from exc
        try:
            tr = conn.transaction(isolation=isolation, readonly=readonly)
            await tr.start()
            try:
                yield _PgTx(conn)
            except BaseException:
                await tr.rollback()
                raise
            else:
                try:
                    await tr.commit()
                except _ERRORS as exc:
                    raise _translate(exc) from exc
        except _ERRORS as exc:
            raise _translate(exc) from exc
        finally:
            await self._pool.release(conn)

    async def executescript(self, sql: str) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                # Serialise concurrent schema creation by several processes.
                await conn.execute("SELECT pg_advisory_xact_lock(7411)")
                await conn.execute(sql)
        except _ERRORS as exc:
            raise _translate(exc) from exc

    async def close(self) -> None:
        await self._pool.close()

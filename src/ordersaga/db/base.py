"""A small async database interface over SQLite and PostgreSQL, chosen by URL.

Services and saga stores write their SQL once, with ``?`` placeholders and the common subset of
the two dialects (``BIGINT``, ``TEXT``, ``INSERT ... ON CONFLICT``, ``RETURNING``); the PostgreSQL
backend rewrites the placeholders to ``$1, $2, ...``. Rows come back as plain dicts.

Two ways to touch data:

* ``await db.fetchone(...)`` / ``fetchall`` read outside any write transaction (the snapshot read
  of optimistic locking);
* ``async with db.transaction() as tx:`` opens a write transaction that commits on normal exit
  and rolls back on an exception. On SQLite it is ``BEGIN IMMEDIATE`` with synchronous=FULL in
  WAL mode, so a commit is durable when the block exits.

Foreign errors are translated: a unique-key violation, a deadlock or a busy database raise
:class:`ordersaga.errors.ConflictError` (re-read and retry); anything else raises
:class:`ordersaga.errors.StorageError`.
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgresql"]


class Tx(abc.ABC):
    """An open write transaction."""

    @abc.abstractmethod
    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...


class Database(abc.ABC):
    """A connection (SQLite) or a pool (PostgreSQL) to one database."""

    dialect: Dialect
    url: str

    @abc.abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; commits (durably) on exit, rolls back on an exception."""

    @abc.abstractmethod
    async def executescript(self, sql: str) -> None:
        """Run several ``;``-separated DDL statements (schema creation) in one transaction."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def reclaim(self) -> None:
        """Give the space of deleted rows back after a large delete (retention).

        A no-op by default: PostgreSQL's autovacuum makes dead rows' space reusable by itself.
        """
        return None

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

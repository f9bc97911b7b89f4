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
* ``async with db.pipeline() as tx:`` is the same, except that ``await tx.write(sql, params,
  expect)`` may only queue its statement, its error or a row count other than ``expect`` being
  raised at the next sync point (the next read or ``execute``, or the block's end, before it
  commits). It does so on PostgreSQL opened with ``pipelined=True``
  (:mod:`ordersaga.db.pipelined`); elsewhere it is a plain transaction whose ``write`` runs at
  once.

Foreign errors are translated: a unique-key violation, a deadlock or a busy database raise
:class:`ordersaga.errors.ConflictError` (re-read and retry); anything else raises
:class:`ordersaga.errors.StorageError`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from ordersaga.errors import ConflictError

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgresql"]


def stale(sql: str, changed: int, expect: int) -> str:
    """The message of a write that changed ``changed`` rows where it expected ``expect``."""
    return f"stale read: {sql.split(' SET ')[0]!r} changed {changed} rows, expected {expect}"


class Tx(abc.ABC):
    """An open write transaction."""

    #: Whether :meth:`write` defers its statement (see :meth:`Database.pipeline`).
    pipelined = False

    async def write(self, sql: str, params: tuple[Any, ...], expect: int | None) -> None:
        """Run a statement that must change ``expect`` rows (``None``: any number).

        Another count raises :class:`~ordersaga.errors.ConflictError`; the statement's own error
        is raised as :meth:`execute` raises it. Here the statement runs at once; in a pipelined
        transaction it is only queued, and its error or a wrong count is raised at the next sync
        point (the next ``execute`` or read, or the commit) instead.
        """
        changed = await self.execute(sql, *params)
        if expect is not None and changed != expect:
            raise ConflictError(stale(sql, changed, expect))

    @abc.abstractmethod
    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...

    async def fetch_each(self, reads: Sequence[tuple[str, tuple[Any, ...]]]) -> list[list[Row]]:
        """The rows of each ``(sql, params)`` read, run in order after everything before.

        One after the other here; in a pipelined transaction they go to the server together,
        after the writes queued so far, with one sync point (the writes' errors and counts are
        raised there, as at any sync point).
        """
        return [await self.fetchall(sql, *params) for sql, params in reads]


class Database(abc.ABC):
    """A connection (SQLite) or a pool (PostgreSQL) to one database."""

    dialect: Dialect
    url: str
    #: Whether :meth:`pipeline` transactions defer their writes (:attr:`Tx.pipelined`).
    pipelined = False

    @abc.abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    @abc.abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; commits (durably) on exit, rolls back on an exception."""

    def pipeline(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction whose :meth:`Tx.write` may be deferred to the next sync point.

        By default the same as :meth:`transaction`; see :mod:`ordersaga.db.pipelined`.
        """
        return self.transaction()

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

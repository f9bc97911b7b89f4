"""The saga log in a SQLite file (the embedded default).

All statements run synchronously on the event loop (see :mod:`ordersaga.db.sqlite`), so a batch
is applied and committed without any other coroutine of the process running in between; the
writes submitted meanwhile wait for the next loop iteration and form the next batch. The write
transaction (``BEGIN IMMEDIATE``) holds the database lock, so no row locking is needed, and reads
on the one connection never see a half-applied batch.
"""

from __future__ import annotations

from ordersaga.saga.store.sql import SqlSagaStore


class SqliteSagaStore(SqlSagaStore):
    """A saga log in ``sqlite:///path`` (durable: WAL with synchronous=FULL)."""

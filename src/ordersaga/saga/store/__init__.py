"""The saga log behind a store protocol (SQLite, PostgreSQL, memory), opened by URL.

``memory://``             :class:`MemoryStore` (no durability; benchmarks and tests)
``sqlite:///path/to.db``  :class:`SqliteSagaStore` (a bare path means the same)
``postgresql://...``      :class:`PostgresSagaStore` (with leases for several workers)

The SQL stores batch the writes of concurrent coroutines into shared commits (group commit, see
:mod:`ordersaga.saga.store.batching`); ``max_batch=1`` turns that off for comparison.
"""

from __future__ import annotations

from ordersaga.clock import Clock
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.store.base import (
    ALLOWED_TRANSITIONS,
    TERMINAL,
    SagaRecord,
    SagaStatus,
    SagaStore,
    StepRecord,
    StepStatus,
    StoreStats,
)
from ordersaga.saga.store.batching import DEFAULT_MAX_BATCH
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.store.operator import OperatorAction, Repair, SagaEntry, SagaFilter, SagaPage
from ordersaga.saga.store.postgres import PostgresSagaStore
from ordersaga.saga.store.sql import SqlSagaStore
from ordersaga.saga.store.sqlite import SqliteSagaStore

__all__ = [
    "ALLOWED_TRANSITIONS",
    "DEFAULT_MAX_BATCH",
    "TERMINAL",
    "MemoryStore",
    "OperatorAction",
    "PostgresSagaStore",
    "Repair",
    "SagaEntry",
    "SagaFilter",
    "SagaPage",
    "SagaRecord",
    "SagaStatus",
    "SagaStore",
    "SqlSagaStore",
    "SqliteSagaStore",
    "StepRecord",
    "StepStatus",
    "StoreStats",
    "open_store",
]


async def open_store(
    url: str,
    *,
    durable: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    clock: Clock | None = None,
    crash: CrashPoints = NO_CRASH,
    read_only: bool = False,
    quiescent: bool = False,
) -> SagaStore:
    """Open the saga log named by ``url``, creating its schema if needed.

    ``durable=False`` keeps the semantics but skips fsync (SQLite ``synchronous=OFF``,
    PostgreSQL ``synchronous_commit=off``). ``max_batch`` caps the writes per group commit.
    ``clock`` gives the ``created_at``/``updated_at`` timestamps (its ``time()``; default the
    system's). ``crash`` arms the SQL stores'
    crash points around each group commit (``store.before:commit``, ``store.after:commit``).
    ``read_only`` opens an existing log to read it while others write (see
    :meth:`SqlSagaStore.open`); ``quiescent``: no writer can start meanwhile (see
    :func:`ordersaga.db.open_database`).
    """
    if url.startswith("memory:"):
        return MemoryStore(clock=clock)
    store_class: type[SqlSagaStore]
    if url.startswith(("postgresql://", "postgres://")):
        store_class = PostgresSagaStore
    else:
        store_class = SqliteSagaStore  # sqlite:/// or a bare path; open_database checks the rest
    return await store_class.open(
        url,
        durable=durable,
        max_batch=max_batch,
        clock=clock,
        crash=crash,
        read_only=read_only,
        quiescent=quiescent,
    )

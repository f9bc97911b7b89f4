"""Who may execute the sagas of a PostgreSQL saga log: one ``run``, or any number of workers.

The right has two parts, and a process uses it only while it holds both:

* **A lock session** — a session-level advisory lock on a connection of its own: exclusive for a
  ``run``, shared for workers. It admits a process (a second ``run``, or a ``run`` beside live
  workers, is refused at once) and dies with the process or its session: a killed process, a
  network cut or ``pg_terminate_backend`` frees it.
* **An epoch** — the ``executors`` row: ``(mode, epoch)``. A process admitted by the lock
  increments the epoch (a ``run`` always; a worker only when the mode was ``run``, so that the
  workers of one period share an epoch) and keeps the value it got.

Why no two executors can ever write the same saga:

* Every write transaction of an executor's saga log (each group commit, each claim) first reads
  the ``executors`` row ``FOR SHARE`` and refuses to write unless the epoch is still its own. The
  increment takes the row's exclusive lock, so it waits for every write transaction in progress
  and every later write sees the new epoch: once a newcomer holds the right, a stale executor's
  next write fails (:class:`~ordersaga.errors.ExecutorFenced`) before changing anything.
* A newcomer gets the lock only when the previous holder's lock session is gone. A process
  watches its lock session: the moment it is lost, the process stops writing (every later write
  fails the same way) and exits, without trying to take the right back — another may already
  hold it.
* Workers among themselves keep their per-saga lease fencing (:mod:`.postgres`): the epoch only
  separates the periods of a ``run`` from those of workers.
* What a stale executor may still have in flight is at most one service call per saga, for its
  first step without a logged result: the next executor resends it with the same idempotency key
  or compensates it (a tombstone refuses a late copy), as after a crash.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from typing import Any

import asyncpg

from ordersaga.errors import ExecutorBusy, ExecutorFenced, UnavailableError

_EXECUTOR_LOCK = 0x6F73_6167  # pg advisory lock key ("osag")
RUN, WORKERS = "run", "workers"

EXECUTORS_DDL = (
    "CREATE TABLE IF NOT EXISTS executors ("
    " singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
    " mode TEXT NOT NULL, epoch BIGINT NOT NULL, holder TEXT,"
    " since DOUBLE PRECISION NOT NULL);"
    "INSERT INTO executors (singleton, mode, epoch, holder, since)"
    " VALUES (1, 'none', 0, NULL, 0) ON CONFLICT (singleton) DO NOTHING"
)
# InternalClientError: the dedicated lock session is caught mid-teardown ("another operation
# is in progress" while nothing else uses it). Taking that as lost only ever stops this process.
_PG_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


#: What :meth:`ExecutorRight.verify` reads of the ``executors`` row.
EXECUTOR_COLUMNS = "mode, epoch, holder"
#: Selects the ``executors`` row and share-locks it until the commit.
_SHARED_ROW = "WHERE singleton = 1 FOR SHARE"
#: A select of the ``executors`` row for a write's first statement (see :mod:`.pgbatch`).
SHARED_EXECUTORS = f"SELECT {EXECUTOR_COLUMNS} FROM executors {_SHARED_ROW}"


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ExecutorRight:
    """This process's right to execute one saga log (see the module doc); check every write."""

    def __init__(self, url: str, conn: asyncpg.Connection, mode: str, epoch: int) -> None:
        self.url = url
        self.mode = mode
        self.epoch = epoch
        self.lost: str | None = None
        self._conn: asyncpg.Connection | None = conn
        self._asking = asyncio.Lock()  # one question at a time on the lock session
        conn.add_termination_listener(self._terminated)

    @classmethod
    async def acquire(
        cls, url: str, *, worker: bool, holder: str | None = None, wait: float = 3.0
    ) -> ExecutorRight:
        """Take the right, or raise :class:`ExecutorBusy` (``wait`` seconds give a process
        killed a moment ago the time its backend needs to notice)."""
        try:
            conn = await asyncpg.connect(url)
        except _PG_ERRORS as exc:
            raise UnavailableError(f"postgresql unavailable: {exc}") from exc
        try:
            if not await _lock(conn, worker, wait):
                raise ExecutorBusy(await _busy_message(conn, url, worker))
            mode, epoch = await _enter(conn, worker, holder or default_holder())
        except _PG_ERRORS as exc:  # the lock session lost while starting (terminated, cut)
            conn.terminate()
            raise UnavailableError(f"postgresql unavailable: {exc}") from exc
        except BaseException:
            conn.terminate()
            raise
        return cls(url, conn, mode, epoch)

    def _terminated(self, _conn: Any) -> None:
        if self.lost is None:
            self.lost = f"the executor lock session on the saga log {self.url} was terminated"

    def check_local(self) -> None:
        """Raise :class:`ExecutorFenced` if this process already knows the right is lost."""
        if self.lost is None and self._conn is not None and self._conn.is_closed():
            self._terminated(self._conn)
        if self.lost is not None:
            raise ExecutorFenced(self.lost)

    def verify(self, row: Mapping[str, Any] | None) -> None:
        """Inside a write transaction: refuse to write unless the right is still ours.

        ``row`` is the ``executors`` row (:data:`EXECUTOR_COLUMNS`, None if there is none) as
        the write's first statement read it, ``FOR SHARE`` (:data:`SHARED_EXECUTORS`: a batch's
        heads, a claim). Raises :class:`ExecutorFenced` unless it carries our epoch.
        """
        if row is None or row["epoch"] is None or int(row["epoch"]) != self.epoch:
            now = (
                "nobody"
                if row is None or row["epoch"] is None
                else f"{row['mode']} {row['holder']} (epoch {row['epoch']})"
            )
            self.lost = f"the saga log {self.url} is executed by {now} now, not by this process"
            raise ExecutorFenced(self.lost)

    async def confirm_lost(self) -> bool:
        """After a failed write: whether the failure means the lock session is gone."""
        if self.lost is not None:
            return True
        conn = self._conn
        if conn is None or conn.is_closed():
            self._terminated(conn)
            return True
        async with self._asking:
            try:
                await asyncio.wait_for(conn.fetchval("SELECT 1"), 10.0)
            except TimeoutError:
                return self.lost is not None  # slow, not gone: the epoch check still guards
            except _PG_ERRORS:
                self._terminated(conn)
                return True
        return self.lost is not None

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._terminated)
            try:
                await asyncio.wait_for(conn.close(), 5.0)
            except (TimeoutError, *_PG_ERRORS):
                conn.terminate()


async def _lock(conn: asyncpg.Connection, worker: bool, wait: float) -> bool:
    mode = "pg_try_advisory_lock_shared" if worker else "pg_try_advisory_lock"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await conn.fetchval(f"SELECT {mode}($1)", _EXECUTOR_LOCK):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _enter(conn: asyncpg.Connection, worker: bool, holder: str) -> tuple[str, int]:
    """Record this process in the ``executors`` row; return (mode, epoch) it executes under."""
    async with conn.transaction():
        # Workers starting together would race on CREATE TABLE IF NOT EXISTS: one at a time.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _EXECUTOR_LOCK + 1)
        await conn.execute(EXECUTORS_DDL)
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT mode, epoch FROM executors WHERE singleton = 1 FOR UPDATE"
        )
        assert row is not None  # inserted by the DDL
        if worker and row["mode"] == WORKERS:
            return WORKERS, int(row["epoch"])
        mode = WORKERS if worker else RUN
        epoch = int(row["epoch"]) + 1
        await conn.execute(
            "UPDATE executors SET mode = $1, epoch = $2, holder = $3,"
            " since = EXTRACT(EPOCH FROM clock_timestamp())::float8 WHERE singleton = 1",
            mode,
            epoch,
            holder,
        )
        return mode, epoch


async def _busy_message(conn: asyncpg.Connection, url: str, worker: bool) -> str:
    try:
        row = await conn.fetchrow("SELECT mode, holder FROM executors WHERE singleton = 1")
    except _PG_ERRORS:
        row = None
    who = "" if row is None or not row["holder"] else f" ({row['mode']}, last {row['holder']})"
    if worker:
        return f"a run executes the sagas of the saga log {url} itself{who}: stop it first"
    return (
        f"the saga log {url} is executed by another process{who}: wait for it to end, or use"
        " 'run --submit-only' to hand orders to the workers"
    )

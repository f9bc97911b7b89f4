"""SQLite backend: one connection, WAL mode, durable (synchronous=FULL) commits.

Statements run synchronously on the event loop. That is deliberate: a SQLite statement on a local
file takes microseconds, far less than handing it to a thread, and a write transaction never
awaits anything else, so no other coroutine of this process can interleave inside it. Other
connections and other processes are kept out by ``BEGIN IMMEDIATE`` (the database write lock)
with a busy timeout.

Space. A new database file is created in incremental auto-vacuum mode (the pragma must come
before its first table), so :meth:`SqliteDatabase.reclaim` — run after retention deleted rows —
truncates the free pages off the file. A file created before that mode (auto-vacuum off) is
converted by its first ``reclaim``, a one-off ``VACUUM`` that rewrites it.

Durable commits stay on the loop too. Running them on a thread would let the loop work during
the fsync, but under load the sagas waiting for a group commit are the ones that would have work,
and the thread handoff (twice per commit, with the GIL) costs more than it saves; with one saga
in flight it only adds latency (measured with ``ordersaga bench``; see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Literal, cast

from ordersaga.db.base import Database, Row, Tx, stale
from ordersaga.errors import (
    ConflictError,
    ForeignDatabase,
    StorageError,
    StorageIOError,
    UnavailableError,
)

BUSY_TIMEOUT_MS = 10_000
INCREMENTAL = 2  # PRAGMA auto_vacuum
#: Prepared statements kept per connection (the saga log's multi-row statements vary in size).
STATEMENT_CACHE = 512

# Binding a parameter that is not exactly an int, float, str or bytes (None, a bool) makes
# CPython's sqlite3 look for an adapter: it misses the adapter table, then fails two attribute
# lookups (``__adapt__``, ``__conform__``), each raising and clearing an AttributeError, before it
# binds the value as it is. The services and the saga log bind many ``None``s and a few bools;
# these adapters make each a dict hit and a C call that gives the same value SQLite binds anyway
# (``{}.get(None)`` is ``None``: NULL; ``int(True)`` is 1). Process-wide, and harmless for any
# other user of the module: the bound values do not change.
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
sqlite3.register_adapter(bool, int)


#: sqlite3 messages that mean the file cannot be read or written: an I/O error (exit 74).
_IO_ERRORS = (
    "disk is full",
    "disk i/o error",
    "not a database",
    "malformed",
    "unable to open database file",
    "readonly database",
)
#: How a database is opened: created if missing; only if it exists; read-only, never creating.
Mode = Literal["create", "existing", "readonly"]


def _mode(read_only: bool, existing: bool) -> Mode:
    return "readonly" if read_only else "existing" if existing else "create"


def _translate(exc: sqlite3.Error, path: Path | None = None) -> StorageError:
    text = str(exc)
    if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in text.upper():
        return ConflictError(f"unique key violated: {exc}")
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text.lower():
        return UnavailableError(f"database busy: {exc}")
    if any(marker in text.lower() for marker in _IO_ERRORS):
        return StorageIOError(f"{path or 'sqlite'}: {exc}")
    return StorageError(f"sqlite: {exc}")


def _connect_target(path: Path, mode: Mode, quiescent: bool) -> tuple[str | Path, bool]:
    """What to pass to ``sqlite3.connect`` (and whether it is a URI) for ``mode``.

    A read-only open of a ``quiescent`` database (the caller holds the data dir's lock shared,
    so no writer starts meanwhile; see :mod:`ordersaga.local.lock`) without a WAL file is
    ``immutable``: SQLite then creates no ``-wal``/``-shm`` files beside it. With a WAL file (a
    writer is running, or was killed) it reads the WAL too.
    """
    if mode == "create":
        return path, False
    uri = path.resolve().as_uri()
    if mode == "existing":
        return f"{uri}?mode=rw", True
    wal = path.with_name(path.name + "-wal")
    immutable = quiescent and not wal.exists()
    return f"{uri}?mode=ro" + ("&immutable=1" if immutable else ""), True


#: A connection's SELECTs' column names, by SQL text (bounded: the SQL we run is finite).
_Names = dict[str, list[str]]


def _names(cache: _Names, sql: str, cursor: sqlite3.Cursor) -> list[str]:
    """The column names of ``cursor``'s result, read afresh and cached for ``sql``."""
    if len(cache) >= 4096:
        cache.clear()
    names = cache[sql] = [d[0] for d in cursor.description or ()]
    return names


# The names are looked up inline and matched to the row by length, not with
# ``zip(strict=True)``: a keyword argument sends the call down the slow path (~1.5k instructions
# per row). A row of another width (``SELECT *`` after a schema change) reads them afresh.
def _rows(cache: _Names, sql: str, cursor: sqlite3.Cursor) -> list[Row]:
    rows = cursor.fetchall()
    if not rows:
        return []
    names = cache.get(sql)
    if names is None or len(names) != len(rows[0]):
        names = _names(cache, sql, cursor)
    return [dict(zip(names, row)) for row in rows]  # noqa: B905 - widths matched above


def _first(cache: _Names, sql: str, cursor: sqlite3.Cursor) -> Row | None:
    row = cursor.fetchone()
    if row is None:
        return None
    names = cache.get(sql)
    if names is None or len(names) != len(row):
        names = _names(cache, sql, cursor)
    return dict(zip(names, row))  # noqa: B905 - widths matched above


class _SqliteTx(Tx):
    """The statements of a write transaction, all run on one cursor of the connection.

    Reusing the cursor spares a cursor per statement (~1.3k instructions: creating it, the
    connection's weak reference to it, freeing it). A cursor's next ``execute`` first resets the
    statement it ran before, so a SELECT left with rows unread (``fetchone``) holds no read lock
    past the next statement, and the transaction's COMMIT or ROLLBACK runs on this cursor too.
    """

    def __init__(self, conn: sqlite3.Connection, names: _Names) -> None:
        self._cursor = conn.cursor()
        self._run = self._cursor.execute
        self._names = names

    async def execute(self, sql: str, *params: Any) -> int:
        try:
            return self._run(sql, params).rowcount
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def write(self, sql: str, params: tuple[Any, ...], expect: int | None) -> None:
        # Tx.write's contract, run here rather than through ``execute``: one coroutine a write
        # instead of two (the services make several writes a command).
        try:
            changed = self._run(sql, params).rowcount
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        if expect is not None and changed != expect:
            raise ConflictError(stale(sql, changed, expect))

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        try:
            return _first(self._names, sql, self._run(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        try:
            return _rows(self._names, sql, self._run(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc


class _Transaction:
    """``SqliteDatabase.transaction()``: a plain class, not ``@asynccontextmanager`` (no
    generator to drive on entry and exit).

    Holds the database's write lock from entry to exit; runs ``BEGIN IMMEDIATE`` on entry; on
    exit, COMMIT, or ROLLBACK if the block raised anything (the rollback's own error suppressed,
    the block's exception propagating). A failed COMMIT is rolled back and raised translated.
    """

    __slots__ = ("_db",)

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def __aenter__(self) -> Tx:
        db = self._db
        await db._write_lock.acquire()
        try:
            db._tx._run("BEGIN IMMEDIATE")
        except BaseException as exc:
            db._write_lock.release()
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc, db.path) from exc
            raise
        return db._tx

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        db = self._db
        run = db._tx._run
        try:
            if kind is not None:
                with contextlib.suppress(sqlite3.Error):
                    run("ROLLBACK")
                return  # the block's exception propagates
            try:
                run("COMMIT")
            except sqlite3.Error as error:
                with contextlib.suppress(sqlite3.Error):
                    run("ROLLBACK")
                raise _translate(error, db.path) from error
        finally:
            db._write_lock.release()


def _owner_only(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it (creating it empty if missing).

    SQLite creates the -wal, -shm and journal files with the database file's mode, so they are
    owner-only too. Files of ours that are wider (an older data dir) are narrowed.
    """
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm", "-journal"):
            file = Path(f"{path}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                info = file.stat()
                if info.st_mode & 0o077 and info.st_uid == os.getuid():
                    file.chmod(0o600)
    except OSError as exc:
        raise StorageError(f"cannot open {path}: {exc.strerror}") from exc


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        durable: bool = True,
        read_only: bool = False,
        existing: bool = False,
        quiescent: bool = False,
    ) -> None:
        """Open ``path``: created if missing; ``existing`` only if it exists; ``read_only``
        without changing it (readers run while another process writes; ``quiescent``: no
        writer can start meanwhile, so not even a ``-wal``/``-shm`` file is created)."""
        self.path = path
        self.url = f"sqlite:///{path}"
        self.read_only = read_only
        mode = _mode(read_only, existing)
        if mode == "create":
            path.parent.mkdir(parents=True, exist_ok=True)
            _owner_only(path)
        elif not path.is_file():
            raise ForeignDatabase(f"no database at {path}")
        target, uri = _connect_target(path, mode, quiescent)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            self._conn = sqlite3.connect(
                target,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
                check_same_thread=False,
                cached_statements=STATEMENT_CACHE,
                uri=uri,
            )
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            if not read_only:
                # Only takes effect on a new, empty file (see the module docstring).
                self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
                self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            if mode != "create" and not path.exists():
                raise StorageIOError(f"{path}: no such database") from exc
            raise _translate(exc, path) from exc
        # Held for a whole write transaction: a second coroutine waits instead of nesting.
        self._write_lock = asyncio.Lock()
        self._names: _Names = {}
        self._tx = _SqliteTx(self._conn, self._names)

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        try:
            return _first(self._names, sql, self._conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        try:
            return _rows(self._names, sql, self._conn.execute(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        return _Transaction(self)

    async def executescript(self, sql: str) -> None:
        async with self.transaction() as tx:
            for statement in sql.split(";"):
                if statement.strip():
                    await tx.execute(statement)

    async def reclaim(self) -> None:
        """Truncate the free pages off the file (a one-off ``VACUUM`` first converts an old file).

        Runs under the write lock, so no transaction of this connection is open meanwhile; other
        processes wait on the database lock like for any write (``busy_timeout``).
        """
        async with self._write_lock:
            try:
                mode = self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]
                if mode != INCREMENTAL:
                    self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                    self._conn.execute("VACUUM")
                # executescript steps the pragma to its end (execute frees one page per call).
                self._conn.executescript("PRAGMA incremental_vacuum;")
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

    async def close(self) -> None:
        self._conn.close()

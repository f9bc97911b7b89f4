"""SQLite write transactions and rows on real files: commit, rollback, a failed commit, the
write lock, and the one cursor a transaction's statements share (see db/sqlite.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ordersaga.db.sqlite import SqliteDatabase
from ordersaga.errors import ConflictError, StorageError


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "t.db")
    await database.executescript(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY,"
        " parent INTEGER REFERENCES t (id) DEFERRABLE INITIALLY DEFERRED)"
    )
    yield database
    await database.close()


async def test_a_transaction_commits_on_exit(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        assert await tx.execute("INSERT INTO t VALUES (?, ?)", 1, "a") == 1
        assert await tx.fetchone("SELECT * FROM t WHERE id = ?", 1) == {"id": 1, "v": "a"}
    assert await db.fetchall("SELECT * FROM t") == [{"id": 1, "v": "a"}]


async def test_an_exception_rolls_back_and_propagates(db: SqliteDatabase) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?, ?)", 1, "a")
            raise Boom
    with pytest.raises(ConflictError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?, ?)", 2, "b")
            await tx.execute("INSERT INTO t VALUES (?, ?)", 2, "c")
    assert await db.fetchall("SELECT * FROM t") == []
    async with db.transaction() as tx:  # the write lock was released
        await tx.execute("INSERT INTO t VALUES (?, ?)", 3, "c")
    assert await db.fetchall("SELECT id FROM t") == [{"id": 3}]


async def test_a_failed_commit_rolls_back_and_raises_translated(db: SqliteDatabase) -> None:
    # A deferred foreign key is checked by COMMIT itself.
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?, ?)", 1, "a")
            await tx.execute("INSERT INTO child VALUES (?, ?)", 1, 99)
    assert await db.fetchall("SELECT id FROM t") == []
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (?, ?)", 1, "a")
    assert await db.fetchall("SELECT id FROM t") == [{"id": 1}]


async def test_transactions_wait_for_each_other_and_a_cancelled_waiter_frees_nothing(
    db: SqliteDatabase,
) -> None:
    order: list[str] = []
    entered = asyncio.Event()
    go = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as tx:
            entered.set()
            await go.wait()
            await tx.execute("INSERT INTO t VALUES (1, 'first')")
            order.append("first")

    async def second() -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (2, 'second')")
            order.append("second")

    one = asyncio.create_task(first())
    await entered.wait()
    cancelled = asyncio.create_task(second())
    two = asyncio.create_task(second())
    await asyncio.sleep(0)
    cancelled.cancel()
    go.set()
    await one
    await two
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert order == ["first", "second"]
    async with db.transaction() as tx:
        assert await tx.fetchall("SELECT v FROM t ORDER BY id") == [
            {"v": "first"},
            {"v": "second"},
        ]


async def test_unread_rows_hold_no_snapshot_past_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db, other = SqliteDatabase(path), None
    try:
        await db.executescript("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        async with db.transaction() as tx:
            # Rows left unread on the transaction's cursor, as the last statement.
            assert await tx.fetchone("SELECT id FROM t ORDER BY id") == {"id": 1}
        other = SqliteDatabase(path, existing=True)
        async with other.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (4, 'd')")
        # Neither a stale snapshot for the reads nor a lock against the next write.
        assert await db.fetchone("SELECT COUNT(*) AS n FROM t") == {"n": 4}
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (5, 'e')")
            assert await tx.fetchone("SELECT COUNT(*) AS n FROM t") == {"n": 5}
    finally:
        await db.close()
        if other is not None:
            await other.close()


async def test_rows_follow_a_changed_table_width(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t VALUES (1, 'a')")
    assert await db.fetchone("SELECT * FROM t") == {"id": 1, "v": "a"}
    async with db.transaction() as tx:
        assert await tx.fetchall("SELECT * FROM t") == [{"id": 1, "v": "a"}]
        await tx.execute("ALTER TABLE t ADD COLUMN w INTEGER DEFAULT 7")
        assert await tx.fetchall("SELECT * FROM t") == [{"id": 1, "v": "a", "w": 7}]
    assert await db.fetchone("SELECT * FROM t") == {"id": 1, "v": "a", "w": 7}

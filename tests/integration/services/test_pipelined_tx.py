"""The pipelined PostgreSQL write transaction (ordersaga.db.pipelined), on the real server.

Writes are only queued; their errors and their row counts are raised at the next sync point (a
read, an execute, the end of the block), and a transaction that raised commits nothing. The
connection stays usable after a failure, and a statement whose preparation was skipped is
prepared again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from urllib.parse import parse_qs

import pytest

from ordersaga.db import Database, open_database
from ordersaga.db import pipelined as pipelined_module
from ordersaga.db.pipelined import libpq_url
from ordersaga.errors import ConflictError, StorageError, UnavailableError

pytestmark = pytest.mark.pg

DDL = (
    "CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT NOT NULL CHECK (v >= 0),"
    " f DOUBLE PRECISION, d NUMERIC, note TEXT)"
)
INSERT = "INSERT INTO t (k, v) VALUES (?, ?)"
BUMP = "UPDATE t SET v = v + 1 WHERE k = ? AND v = ?"
PID = "SELECT pg_backend_pid() AS pid"


@pytest.fixture
async def db(pg_schema_url: str) -> AsyncIterator[Database]:
    database = await open_database(pg_schema_url, pool_size=2, pipelined=True)
    await database.executescript(DDL)
    yield database
    await database.close()


async def _keys(db: Database) -> list[str]:
    return [row["k"] for row in await db.fetchall("SELECT k FROM t ORDER BY k")]


async def test_queued_writes_commit_and_reads_see_them(db: Database) -> None:
    assert db.pipelined
    async with db.pipeline() as tx:
        assert tx.pipelined
        await tx.write(INSERT, ("a", 1), 1)
        await tx.write(INSERT, ("b", 2), 1)
        # The read goes after the queued writes, in the same transaction: it sees them.
        assert await tx.fetchone("SELECT v FROM t WHERE k = ?", "b") == {"v": 2}
        await tx.write(BUMP, ("a", 1), 1)
        assert await tx.execute("UPDATE t SET v = v + 10") == 2
    rows = await db.fetchall("SELECT k, v FROM t ORDER BY k")
    assert [(r["k"], r["v"]) for r in rows] == [("a", 12), ("b", 12)]


async def test_a_stale_write_raises_at_the_next_read_and_nothing_commits(db: Database) -> None:
    queued = False
    with pytest.raises(ConflictError, match="changed 0 rows, expected 1"):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            await tx.write(BUMP, ("a", 5), 1)  # stale: v is 1; queued, so no error yet
            queued = True
            await tx.fetchall("SELECT k FROM t")
            pytest.fail("the stale write's count was not checked at the read")
    assert queued
    assert await _keys(db) == []


async def test_a_stale_last_write_raises_before_the_commit(db: Database) -> None:
    with pytest.raises(ConflictError, match="stale read"):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            await tx.write(BUMP, ("a", 7), 1)
    assert await _keys(db) == []


async def test_expect_none_accepts_any_count(db: Database) -> None:
    async with db.pipeline() as tx:
        await tx.write(BUMP, ("nothing", 0), None)
        await tx.write(INSERT, ("a", 1), 1)
    assert await _keys(db) == ["a"]


async def test_an_error_mid_pipeline_is_raised_and_the_connection_is_reused(
    db: Database,
) -> None:
    async with db.pipeline() as tx:
        await tx.write(INSERT, ("a", 1), 1)
        pid = (await tx.fetchone(PID) or {})["pid"]
    with pytest.raises(ConflictError, match="duplicate key"):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("b", 1), 1)
            await tx.write(INSERT, ("a", 1), 1)  # a unique violation in the middle ...
            await tx.write(INSERT, ("c", 1), 1)  # ... so the server skips this one
            await tx.fetchone(PID)
    with pytest.raises(StorageError, match="check constraint") as failed:
        async with db.pipeline() as tx:
            await tx.write("UPDATE t SET v = v - 5 WHERE k = ?", ("a",), 1)
    assert not isinstance(failed.value, ConflictError)  # not a lost race: no retry
    assert await _keys(db) == ["a"]
    async with db.pipeline() as tx:  # rolled back, in step: the same connection goes on
        await tx.write(INSERT, ("d", 1), 1)
        assert (await tx.fetchone(PID) or {})["pid"] == pid
    assert await _keys(db) == ["a", "d"]


async def test_an_exception_of_the_caller_rolls_the_queued_writes_back(db: Database) -> None:
    with pytest.raises(KeyError):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            raise KeyError("the caller's own bug")
    with pytest.raises(KeyError):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            await tx.write(INSERT, ("a", 1), 1)  # fails too, moot: the block raised first
            raise KeyError("the caller's own bug")
    assert await _keys(db) == []
    async with db.pipeline() as tx:
        await tx.write(INSERT, ("b", 1), 1)
    assert await _keys(db) == ["b"]


async def test_a_statement_whose_preparation_was_skipped_is_prepared_again(
    db: Database,
) -> None:
    fresh = "SELECT count(*) AS n FROM t WHERE v >= ?"
    with pytest.raises(ConflictError):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            await tx.write(INSERT, ("a", 1), 1)
            await tx.fetchone(fresh, 0)  # first use, prepared after the failure: skipped
    async with db.pipeline() as tx:
        assert await tx.fetchone(fresh, 0) == {"n": 0}


async def test_past_the_prepared_limit_statements_run_unnamed(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipelined_module, "MAX_PREPARED", 1)
    async with db.pipeline() as tx:
        for i in range(3):
            await tx.write(INSERT + f" -- statement {i}", (f"k{i}", i), 1)
        assert await tx.fetchall("SELECT k FROM t WHERE v >= ? ORDER BY k", 1) == [
            {"k": "k1"},
            {"k": "k2"},
        ]
    assert await _keys(db) == ["k0", "k1", "k2"]


async def test_values_come_back_as_asyncpg_gives_them(db: Database) -> None:
    row = ("a", 2**40, 1.5, Decimal("3.25"), "naïve ☃")
    sql = "INSERT INTO t (k, v, f, d, note) VALUES (?, ?, ?, ?, ?)"
    read = "SELECT * FROM t WHERE k = ?"
    async with db.pipeline() as tx:
        await tx.write(sql, row, 1)
        await tx.write(sql, ("b", True, None, None, None), 1)  # a bool is sent as 1
        piped = await tx.fetchone(read, "a")
        nulls = await tx.fetchone(read, "b")
    plain = await db.fetchone(read, "a")
    assert piped == plain == {"k": "a", "v": 2**40, "f": 1.5, "d": Decimal("3.25"), "note": row[4]}
    assert [type(v) for v in (piped or {}).values()] == [type(v) for v in (plain or {}).values()]
    assert nulls == {"k": "b", "v": 1, "f": None, "d": None, "note": None}


async def test_a_transaction_cancelled_mid_sync_leaves_its_connection_behind(
    db: Database,
) -> None:
    """Cancelled while its UPDATE waits for a row lock held elsewhere, the transaction's
    connection is in doubt: it is closed (the server rolls it back), and the next transaction
    gets a new one."""
    async with db.pipeline() as tx:
        await tx.write(INSERT, ("a", 1), 1)
        pid = (await tx.fetchone(PID) or {})["pid"]
    async with db.transaction() as holder:
        await holder.execute("SELECT v FROM t WHERE k = 'a' FOR UPDATE")

        async def blocked() -> None:
            async with db.pipeline() as tx:
                await tx.write(INSERT, ("b", 1), 1)
                await tx.execute("UPDATE t SET v = 5 WHERE k = 'a'")  # waits for the lock

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(blocked(), 0.2)
    async with db.pipeline() as tx:
        assert (await tx.fetchone(PID) or {})["pid"] != pid
        await tx.write(INSERT, ("c", 1), 1)
    assert await _keys(db) == ["a", "c"]
    assert (await db.fetchone("SELECT v FROM t WHERE k = 'a'")) == {"v": 1}


async def test_a_parameter_of_another_type_is_refused(db: Database) -> None:
    with pytest.raises(TypeError, match="bytes"):
        async with db.pipeline() as tx:
            await tx.write(INSERT, (b"a", 1), 1)
    assert await _keys(db) == []


def test_libpq_url_moves_server_settings_into_options() -> None:
    url = libpq_url(
        "postgresql://u@h:5432/db?sslmode=disable&search_path=s1",
        {"statement_timeout": "5 s"},
    )
    base, query = url.split("?", 1)
    assert base == "postgresql://u@h:5432/db"
    assert parse_qs(query) == {
        "sslmode": ["disable"],  # libpq's own keyword stays
        "options": ["-c search_path=s1 -c statement_timeout=5\\ s"],
    }
    assert libpq_url("postgresql://u@h/db", {}) == "postgresql://u@h/db"


async def test_a_connection_lost_mid_transaction_is_unavailable_and_replaced(
    db: Database,
) -> None:
    async with db.pipeline() as tx:
        pid = (await tx.fetchone(PID) or {})["pid"]
    with pytest.raises(UnavailableError):
        async with db.pipeline() as tx:
            await tx.write(INSERT, ("a", 1), 1)
            await tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    async with db.pipeline() as tx:
        assert (await tx.fetchone(PID) or {})["pid"] != pid
        await tx.write(INSERT, ("b", 1), 1)
    assert await _keys(db) == ["b"]


async def test_a_connection_lost_while_idle_is_replaced_before_its_next_use(
    db: Database,
) -> None:
    """The server ends an idle pipelined connection: the link notices (its socket is watched
    all along, and read when nothing waits), and the next transaction gets a new one."""
    async with db.pipeline() as tx:
        pid = (await tx.fetchone(PID) or {})["pid"]
    assert await db.fetchone("SELECT pg_terminate_backend(?) AS ended", pid) == {"ended": True}
    for _ in range(50):  # until the end of the connection reaches the idle link
        await asyncio.sleep(0.01)
    async with db.pipeline() as tx:
        assert (await tx.fetchone(PID) or {})["pid"] != pid
        await tx.write(INSERT, ("a", 1), 1)
    assert await _keys(db) == ["a"]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_closing_leaves_no_descriptor_behind(pg_schema_url: str) -> None:
    before = _open_fds()
    database = await open_database(pg_schema_url, pool_size=2, pipelined=True)
    await database.executescript(DDL)
    for i in range(2):
        async with database.pipeline() as tx:
            await tx.write(INSERT, (f"k{i}", 1), 1)
    with pytest.raises(UnavailableError):
        async with database.pipeline() as tx:
            await tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    await database.close()
    assert _open_fds() == before

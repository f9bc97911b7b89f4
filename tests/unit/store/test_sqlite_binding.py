"""Binding None and bools on SQLite: the adapters registered for speed keep the stored values."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ordersaga.db.sqlite import SqliteDatabase


async def test_none_and_bools_bind_as_null_and_integers(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "t.db", durable=False)
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a, b, c)")
            await tx.execute("INSERT INTO t VALUES (?, ?, ?, ?)", 1, None, True, False)
            assert await tx.execute("UPDATE t SET c = ? WHERE a IS ?", None, None) == 1
        row = await db.fetchone("SELECT typeof(a) AS ta, b, typeof(b) AS tb, c FROM t")
        assert row == {"ta": "null", "b": 1, "tb": "integer", "c": None}
        assert await db.fetchone("SELECT id FROM t WHERE b = ?", True) == {"id": 1}
    finally:
        await db.close()


def test_the_adapters_are_registered_once_the_backend_is_imported() -> None:
    # Without them every bound None costs two failed attribute lookups (see db/sqlite.py).
    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    assert (bool, sqlite3.PrepareProtocol) in sqlite3.adapters

"""Database access by URL: ``sqlite:///path/to/file.db`` or ``postgresql://user@host/db``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ordersaga.db.base import Database, Dialect, Row, Tx
from ordersaga.errors import ConfigError

__all__ = ["Database", "Dialect", "Row", "Tx", "open_database"]


async def open_database(
    url: str,
    *,
    durable: bool = True,
    pool_size: int = 10,
    read_only: bool = False,
    quiescent: bool = False,
    pg_settings: Mapping[str, str] | None = None,
    pipelined: bool = False,
) -> Database:
    """Open the database named by ``url``; a bare path is taken as a SQLite file.

    ``read_only`` opens a SQLite file that must exist with ``mode=ro`` (nothing is created;
    readers run while another process writes). PostgreSQL connections are the same either way:
    a reader simply writes nothing. ``quiescent``: the caller makes sure no writer starts
    meanwhile, and then not even a WAL's side files are created (see :mod:`ordersaga.db.sqlite`).
    ``pg_settings``: server settings of every PostgreSQL connection (ignored by SQLite).
    ``pipelined``: on PostgreSQL, :meth:`Database.pipeline` transactions are pipelined
    (:mod:`ordersaga.db.pipelined`); SQLite's are plain transactions either way.
    """
    if url.startswith(("postgresql://", "postgres://")):
        if pipelined:
            from ordersaga.db.pipelined import PipelinedPostgresDatabase

            return await PipelinedPostgresDatabase.open(
                url, max_size=pool_size, settings=pg_settings
            )
        from ordersaga.db.postgres import PostgresDatabase

        return await PostgresDatabase.connect(url, max_size=pool_size, settings=pg_settings)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
    elif "://" in url:
        raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://")
    else:
        path = Path(url)
    from ordersaga.db.sqlite import SqliteDatabase

    return SqliteDatabase(path, durable=durable, read_only=read_only, quiescent=quiescent)

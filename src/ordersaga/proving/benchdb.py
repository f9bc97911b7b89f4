"""The saga logs of `ordersaga bench`: a fresh PostgreSQL database per run, dropped afterwards
(see :mod:`ordersaga.proving.bench`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ordersaga.errors import ConfigError


async def drop_databases(server_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def saga_log(store: str | None, durable: bool) -> AsyncIterator[tuple[str | None, str]]:
    """The saga log's URL for one run (None: the data dir's SQLite file) and its kind."""
    if not durable:
        yield "memory://", "memory"
    elif store is None:
        yield None, "sqlite"
    else:
        async with fresh_pg_database(store) as url:
            yield url, "postgresql"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@asynccontextmanager
async def fresh_pg_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    name = f"ordersaga_bench_{uuid.uuid4().hex[:12]}"
    host = urlsplit(server_url).hostname or "localhost"
    try:
        admin = await asyncpg.connect(server_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ConfigError(f"cannot reach PostgreSQL on {host}: {exc}") from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"cannot create a benchmark database on {host}: {exc}") from None
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

"""A service database's own bookkeeping: schema version, stored configuration, idempotency.

Tables every service database has (besides the service's own)::

    schema_version (component TEXT PK, version BIGINT)
        one row per service; opening a database written by another schema version is refused
    config (service TEXT PK, body TEXT JSON, created_at DOUBLE PRECISION)
        the configuration the database was seeded from; later opens use it, not theirs
    idempotency (key TEXT PK, fingerprint TEXT, status TEXT 'ok'|'refused', reply TEXT JSON,
                 created_at DOUBLE PRECISION)
        one row per applied or refused command, written in the command's own transaction
    pruned_totals (name TEXT, key TEXT, amount BIGINT, PK (name, key))
        what the rows that retention deleted had counted (see :mod:`.retention`)

All DDL is in the common subset of SQLite and PostgreSQL and idempotent (``IF NOT EXISTS``), so
several processes may open one database at once (``executescript`` serialises them). One
addition for SQLite: a table whose DDL ends in the comment :data:`CLUSTERED` (the idempotency
records, and the services' tables that every command reads or writes by their text or BIGINT
key) is created ``WITHOUT ROWID`` there, stored in the b-tree of its primary key itself: an
insert writes one b-tree instead of the table's and its key index's, and a look-up by the key
searches one instead of two. The rows are the same; a database created before keeps its tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ordersaga.db import Database
from ordersaga.errors import ConfigError
from ordersaga.participant.kit import Write
from ordersaga.participant.retention import TOTALS_DDL
from ordersaga.protocol.messages import canonical_json

__all__ = ["CLUSTERED", "ensure_schema", "load_or_seed_config", "redacted_url"]

VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    component TEXT PRIMARY KEY,
    version BIGINT NOT NULL
)
"""

#: Ends the DDL of a table that SQLite stores in its primary key's b-tree (see the docstring).
CLUSTERED = "/* WITHOUT ROWID */"

KIT_DDL = f"""
CREATE TABLE IF NOT EXISTS config (
    service TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    reply TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
) {CLUSTERED};
""" + TOTALS_DDL.strip()


def redacted_url(db: Database) -> str:
    """The database URL without a password, fit for an error message."""
    parts = urlsplit(db.url)
    if parts.password is None:
        return db.url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def ensure_schema(db: Database, component: str, version: int, ddl: str) -> None:
    """Create the kit's and the service's tables if missing; refuse another schema version."""
    await db.executescript(VERSION_DDL)
    row = await db.fetchone("SELECT version FROM schema_version WHERE component = ?", component)
    if row is not None and row["version"] != version:
        raise ConfigError(
            f"{redacted_url(db)}: the {component} schema is version {row['version']}, "
            f"this ordersaga supports version {version}"
        )
    script = f"{KIT_DDL};\n{ddl}"
    if db.dialect == "sqlite":
        script = script.replace(CLUSTERED, "WITHOUT ROWID")
    await db.executescript(
        f"{script};\n"
        f"INSERT INTO schema_version (component, version) VALUES ('{component}', {int(version)})"
        " ON CONFLICT (component) DO NOTHING"
    )


async def load_or_seed_config(
    db: Database,
    service: str,
    config: Mapping[str, Any] | None,
    seed: Sequence[Write],
    now: float,
) -> dict[str, Any]:
    """The configuration stored in ``db``; on a new database, store ``config`` and run ``seed``.

    A database that already has a configuration keeps it and ignores ``config``. Two processes
    seeding one new database at once are safe: only the one whose config row lands seeds rows.
    """
    stored = await _stored(db, service)
    if stored is not None:
        return stored
    if config is None:
        raise ConfigError(
            f"the {service} database {redacted_url(db)} is new and no configuration was given"
        )
    async with db.transaction() as tx:
        created = await tx.execute(
            "INSERT INTO config (service, body, created_at) VALUES (?, ?, ?)"
            " ON CONFLICT (service) DO NOTHING",
            service,
            canonical_json(config),
            now,
        )
        if created:
            for write in seed:
                await tx.execute(write.sql, *write.params)
    stored = await _stored(db, service)
    assert stored is not None  # just inserted, by us or by a concurrent opener
    return stored


async def _stored(db: Database, service: str) -> dict[str, Any] | None:
    row = await db.fetchone("SELECT body FROM config WHERE service = ?", service)
    if row is None:
        return None
    body: dict[str, Any] = json.loads(row["body"])
    return body

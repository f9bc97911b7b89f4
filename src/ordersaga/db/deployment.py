"""A deployment's databases bound together: the saga log knows its PostgreSQL service databases.

Each PostgreSQL service database carries a random database id (:mod:`ordersaga.db.identity`).
The saga log records, in ``ordersaga_members``, the id of each service database the first time a
process executing it sees one; from then on the log accepts only that database for the service.
This catches what a stamp alone cannot:

- a service database emptied down to nothing (its stamp dropped too) looks new; opened next to a
  log that knows another id it is refused — before it is seeded again, so stock and credit are
  not reset;
- a service database swapped for another deployment's (same component, another id) is refused;
- a new saga log (one that knows no id for the service) next to a service database that already
  holds command records — of another log, whose sagas this one would never finish nor
  compensate — is refused, naming the log. A new deployment starts from new (or still unused)
  service databases.

Who checks: whoever executes the log and sees the service databases. An in-process ``run``
(``--service-dbs postgresql://...``) reads the log's members before opening the services
(:func:`peek_members`), so a refused database is refused before anything is seeded, and binds the
new ones once the log is open. Over HTTP the services own their databases: each service's
``GET /health`` reports its database's id and whether it holds records (:func:`describe`), and a
``run --services`` or a worker checks that against the log at start, and a worker again at every
health check before claiming (a service whose database was reset under it stops the claiming).
SQLite databases are left to their data dir, which checks all its files together.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ordersaga.db.base import Database
from ordersaga.db.identity import check_shared, read_identity, redacted, table_names
from ordersaga.errors import ForeignDatabase, StorageError

__all__ = ["Member", "bind_members", "check_member", "describe", "peek_members", "read_members"]

TABLE = "ordersaga_members"
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " component TEXT PRIMARY KEY, database_id TEXT NOT NULL, bound_at DOUBLE PRECISION NOT NULL)"
)
_BIND_LOCK = 0x6F73_6D62  # pg advisory lock key ("osmb")


@dataclass(frozen=True, slots=True)
class Member:
    """A service database as seen by the process that executes the log.

    ``database_id`` None: the database carries no stamp (new, or emptied down to nothing).
    ``records``: it held command records before this process used it.
    """

    component: str
    database_id: str | None
    records: bool
    what: str  # names the database in an error (a redacted URL, or the service's base URL)


async def read_members(log: Database) -> dict[str, str]:
    """The service database ids the saga log knows, by component (none for a new log)."""
    if TABLE not in await table_names(log):
        return {}
    rows = await log.fetchall(f"SELECT component, database_id FROM {TABLE}")
    return {str(row["component"]): str(row["database_id"]) for row in rows}


async def peek_members(url: str, component: str) -> dict[str, str]:
    """:func:`read_members` of the log at ``url`` without creating anything (none if it is not
    there yet, or not a SQL database); a PostgreSQL database stamped for another ``component``
    than the log's is refused (:func:`ordersaga.db.identity.check_shared`)."""
    if not url.startswith(("postgresql://", "postgres://", "sqlite://")):
        return {}
    from ordersaga.db import open_database

    try:
        db = await open_database(url, read_only=url.startswith("sqlite"), pool_size=1)
    except (StorageError, ForeignDatabase):
        return {}  # the log's own open says what is wrong with it
    try:
        await check_shared(db, component)
        return await read_members(db)
    except StorageError:
        return {}
    finally:
        await db.close()


def check_member(known: Mapping[str, str], member: Member, log_what: str) -> None:
    """Refuse ``member`` if it is not the service database the log knows (see the module)."""
    bound = known.get(member.component)
    if bound is not None and member.database_id is None:
        raise ForeignDatabase(
            f"the {member.component} database {member.what} is refused: it is new or was"
            f" emptied (it carries no identity), but the saga log {log_what} knows the"
            f" {member.component} database {bound}; nothing was created"
        )
    if bound is not None and member.database_id != bound:
        raise ForeignDatabase(
            f"the {member.component} database {member.what} is refused: it is database"
            f" {member.database_id}, but the saga log {log_what} knows the {member.component}"
            f" database {bound} (re-created or swapped?); nothing was created"
        )
    if bound is None and member.records:
        raise ForeignDatabase(
            f"the saga log {log_what} is refused: it does not know the {member.component}"
            f" database {member.what} (id {member.database_id}), which already holds records of"
            " another saga log; use the log it belongs to, or new service databases"
        )


async def bind_members(log: Database, members: list[Member]) -> None:
    """Check ``members`` against the log and record the ids it does not know yet.

    Concurrent binders (workers starting together) bind one at a time; the loser of a race
    between two different ids is refused by the re-check.
    """
    what = redacted(log.url)
    members = [member for member in members if member.database_id is not None] + [
        member for member in members if member.database_id is None
    ]
    for member in members:
        check_member(await read_members(log), member, what)
    new = [m for m in members if m.database_id is not None]
    if not new:
        return
    async with log.transaction() as tx:
        if log.dialect != "sqlite":
            await tx.fetchone("SELECT pg_advisory_xact_lock(?)", _BIND_LOCK)
        await tx.execute(_DDL)
        for member in new:
            await tx.execute(
                f"INSERT INTO {TABLE} (component, database_id, bound_at) VALUES (?, ?, ?)"
                " ON CONFLICT (component) DO NOTHING",
                member.component,
                member.database_id,
                time.time(),
            )
    known = await read_members(log)
    for member in members:
        check_member(known, member, what)


async def describe(db: Database) -> dict[str, Any] | None:
    """What a service's ``/health`` says of its database: ``{"id", "records"}`` (PostgreSQL
    only; ``id`` None when the stamp is gone)."""
    if db.dialect == "sqlite":
        return None
    return {"id": await database_id(db), "records": await holds_records(db)}


async def database_id(db: Database) -> str | None:
    """The random id stamped in a PostgreSQL database (None: no stamp)."""
    found = await read_identity(db)
    return None if found is None else found.data_dir_id


async def holds_records(db: Database) -> bool:
    """Whether a service database holds command records (the participant kit's)."""
    if "idempotency" not in await table_names(db):
        return False
    return await db.fetchone("SELECT 1 AS one FROM idempotency LIMIT 1") is not None

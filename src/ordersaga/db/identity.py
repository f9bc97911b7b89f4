"""Which data dir, component and world a database belongs to, stamped in it at creation.

Every database ordersaga creates records one row in ``ordersaga_identity``: the id of the data
dir it was created for (none for a database that lives outside a data dir, say on PostgreSQL), the
component it holds (``inventory``, ``shipping``, ``payment``, ``saga_log``) and the fingerprint of
the world it was seeded from (none where the opener does not know the world). Opening a database
compares the row with what the opener expects, so a database swapped for another component's,
copied from another data dir, or seeded from another world is refused instead of being used, and
one that lost its contents is refused instead of being re-created.

A database created before identities existed has the component's tables but no row: it is adopted
(stamped on its first open).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ordersaga.db.base import Database
from ordersaga.errors import ForeignDatabase, StorageError

TABLE = "ordersaga_identity"
_STAMP_LOCK = 0x6F73_6964  # pg advisory lock key ("osid")
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " singleton INTEGER PRIMARY KEY CHECK (singleton = 1),"
    " data_dir_id TEXT, component TEXT NOT NULL, world TEXT)"
)


def fingerprint(data: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of JSON data (a world, a service's configuration).

    Sets are sorted first: their order (hence ``str``) changes from one process to the next.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_stable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _stable(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a database belongs to; ``None`` fields are not known (or not checked) by the opener."""

    component: str
    data_dir_id: str | None = None
    world: str | None = None

    def mismatch(self, found: Identity) -> str | None:
        """Why ``found`` (stored) does not belong where ``self`` (expected) is opened, if not."""
        if found.component != self.component:
            return f"it holds the {found.component} database, not the {self.component} one"
        if self.data_dir_id is not None and found.data_dir_id != self.data_dir_id:
            return f"it belongs to another data dir (id {found.data_dir_id})"
        if self.world is not None and found.world is not None and found.world != self.world:
            return f"it was seeded from another world (fingerprint {found.world}, not {self.world})"
        return None


async def read_identity(db: Database) -> Identity | None:
    """The stamped identity, or None if the database has none (new, or made before stamps)."""
    if not await _has_table(db, TABLE):
        return None
    row = await db.fetchone(f"SELECT data_dir_id, component, world FROM {TABLE}")
    if row is None:
        return None
    return Identity(row["component"], row["data_dir_id"], row["world"])


async def stamp_identity(db: Database, identity: Identity) -> None:
    """Record ``identity`` (a database keeps the first identity stamped in it)."""
    async with db.transaction() as tx:
        if db.dialect != "sqlite":
            # Openers starting at once (workers, replicas) would race on CREATE TABLE IF NOT
            # EXISTS (a unique violation in pg_type): one stamps at a time.
            await tx.fetchone("SELECT pg_advisory_xact_lock(?)", _STAMP_LOCK)
        await tx.execute(_DDL)
        await tx.execute(
            f"INSERT INTO {TABLE} (singleton, data_dir_id, component, world) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (singleton) DO NOTHING",
            identity.data_dir_id,
            identity.component,
            identity.world,
        )


async def table_names(db: Database) -> set[str]:
    """The names of the database's tables (both dialects)."""
    if db.dialect == "sqlite":
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = await db.fetchall(
            "SELECT table_name AS name FROM information_schema.tables"
            " WHERE table_schema = current_schema()"
        )
    return {str(row["name"]) for row in rows}


async def _has_table(db: Database, name: str) -> bool:
    return name in await table_names(db)


async def claim_identity(db: Database, expected: Identity, what: str) -> None:
    """Check ``db`` belongs where ``expected`` says, stamping a new (or pre-stamp) database.

    ``what`` names the database in the error (a file, a redacted URL).
    """
    try:
        found = await read_identity(db)
    except StorageError as exc:
        raise ForeignDatabase(f"{what}: cannot read its identity: {exc}") from exc
    if found is None:
        held = await _schema_components(db)
        if held and expected.component not in held:
            raise ForeignDatabase(
                f"{what} is refused: it holds the {', '.join(sorted(held))} database,"
                f" not the {expected.component} one"
            )
        await stamp_identity(db, expected)
        return
    why = expected.mismatch(found)
    if why is not None:
        raise ForeignDatabase(f"{what} is refused: {why}")


async def _schema_components(db: Database) -> set[str]:
    if not await _has_table(db, "schema_version"):
        return set()
    return {str(r["component"]) for r in await db.fetchall("SELECT component FROM schema_version")}


async def check_shared(
    db: Database, component: str, *, world: str | None = None, check_world: bool = False
) -> Identity | None:
    """Check a PostgreSQL database that lives outside a data dir; the identity to stamp in it
    once its tables are made (:func:`stamp_identity`), if it has none yet.

    A service database or saga log named by URL has no data dir to vouch for it, so its stamp
    carries a random database id and the world (fingerprint) it was seeded from. Refused, with
    nothing created: a database stamped for another component (a service pointed at the saga
    log's database, or at another service's), an unstamped one holding another component's
    tables, one whose stamp is there but whose tables are gone (emptied), and — when
    ``check_world`` — one seeded from another world than ``world``. SQLite files are checked by
    their data dir (:mod:`ordersaga.local.datadir`) instead.

    The stamp comes after the tables, so a process killed in between leaves an unstamped
    database with the component's tables, which the next open adopts.
    """
    if db.dialect == "sqlite":
        return None
    what = f"the {component} database {redacted(db.url)}"
    try:
        found = await read_identity(db)
        held = await _schema_components(db)
    except StorageError as exc:
        raise ForeignDatabase(f"{what}: cannot read its identity: {exc}") from exc
    if found is None:
        if held and component not in held:
            raise ForeignDatabase(
                f"{what} is refused: it holds the {', '.join(sorted(held))} database,"
                f" not the {component} one; nothing was created"
            )
        return Identity(component, uuid.uuid4().hex, world)
    expected = Identity(component, None, world if check_world else None)
    why = expected.mismatch(found)
    if why is None and component not in held:
        why = f"it was emptied (its {found.component} tables are gone)"
    if why is not None:
        raise ForeignDatabase(f"{what} is refused: {why}; nothing was created")
    return None


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

"""The services' statements are planned without a temporary table, and their state CHECKs hold.

SQLite builds a temporary b-tree (``OpenEphemeral``) for an ``IN (...)`` list of more than one
value, also one inside a CHECK constraint, on every run of the statement: a few microseconds
per write on the hot path. The state CHECKs are therefore chains of ``OR`` and a reservation's
items are looked up with a ``UNION ALL``; these tests keep it that way, and check that the
rewritten CHECKs still refuse a state outside the life cycle. Nor do the services read a column
they do not use (``SELECT *``): each one costs about as much to hand over as a bound parameter.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ordersaga.db.sqlite import SqliteDatabase
from ordersaga.errors import StorageError
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import ReplyStatus
from tests.integration.services.helpers import CASES, Case, open_inventory, reserve

#: The resource table of each service.
RESOURCES = {"inventory": "reservations", "shipping": "shipments", "payment": "payments"}


def _traced(service: KitService) -> list[str]:
    """Every statement ``service``'s SQLite connection runs from now on (values expanded)."""
    db = service.db
    assert isinstance(db, SqliteDatabase)
    statements: list[str] = []
    db._conn.set_trace_callback(statements.append)
    return statements


def _ephemeral(path: Path, statements: list[str]) -> list[str]:
    """The statements whose plan opens a temporary b-tree."""
    conn = sqlite3.connect(path)
    try:
        found = []
        for sql in set(statements):
            if sql.split(" ", 1)[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                continue
            opcodes = [row[1] for row in conn.execute(f"EXPLAIN {sql}")]
            if "OpenEphemeral" in opcodes:
                found.append(sql)
        return found
    finally:
        conn.close()


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_a_resources_life_runs_without_a_temporary_table(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "service.db"
    service = await case.open(f"sqlite:///{path}")
    try:
        statements = _traced(service)
        for command in (case.action("s1"), case.confirm("s1"), case.action("s2")):
            assert (await service.handle(command)).status is ReplyStatus.OK
        for command in (case.compensate("s2"), case.compensate("s3")):  # the last: a tombstone
            assert (await service.handle(command)).status is ReplyStatus.OK
        assert (await service.handle(case.action("s3"))).status is ReplyStatus.REFUSED
    finally:
        await service.close()
    writes = [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert len(writes) >= 6  # the claims, transitions and tombstone were all traced
    assert _ephemeral(path, statements) == []
    # Every read names the columns it uses (each column of a row costs as much as a binding).
    assert [s for s in statements if s.startswith("SELECT") and "*" in s] == []


async def test_a_reservation_of_several_items_reads_them_without_a_temporary_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inventory.db"
    service = await open_inventory(f"sqlite:///{path}")
    try:
        statements = _traced(service)
        reply = await service.handle(reserve("s1", ("B", 1), ("A", 2), ("A", 1)))
    finally:
        await service.close()
    assert reply.status is ReplyStatus.OK
    assert [line["item_id"] for line in reply.body["lines"]] == ["A", "B"]
    assert [line["quantity"] for line in reply.body["lines"]] == [3, 1]
    assert any("UNION ALL" in s for s in statements)
    assert _ephemeral(path, statements) == []


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_the_state_check_refuses_a_state_outside_the_life_cycle(
    case: Case, service: KitService
) -> None:
    assert (await service.handle(case.action("s1"))).status is ReplyStatus.OK
    table, ref = RESOURCES[case.name], f"s1:{case.name}"
    with pytest.raises(StorageError):
        async with service.db.transaction() as tx:
            await tx.execute(f"UPDATE {table} SET state = ? WHERE ref = ?", "lost", ref)
    row = await service.db.fetchone(f"SELECT state FROM {table} WHERE ref = ?", ref)
    assert row is not None and row["state"] != "lost"


#: The tables each service's commands read or write by their key (besides its resources').
_KEYED = {"inventory": ("items",), "shipping": (), "payment": ("accounts",)}


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_the_tables_commands_touch_by_key_are_stored_in_their_key_on_sqlite(
    case: Case, tmp_path: Path
) -> None:
    path = tmp_path / "service.db"
    await (await case.open(f"sqlite:///{path}")).close()
    conn = sqlite3.connect(path)
    try:
        ddl = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()
    keyed = {"idempotency", RESOURCES[case.name], *_KEYED[case.name]}
    assert {name for name in keyed if ddl[name].endswith("WITHOUT ROWID")} == keyed
    assert "ROWID" not in ddl["config"]  # the others keep their rowid

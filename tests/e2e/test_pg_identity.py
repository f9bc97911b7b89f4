"""PostgreSQL databases carry their identity (issue 9): a service database or saga log that is
foreign — another component's, another world's — or emptied is refused with exit 2 naming it,
and nothing is created in it. Real `ordersaga` processes, real PostgreSQL databases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from ordersaga.db import open_database
from ordersaga.db.identity import TABLE, Identity, stamp_identity
from ordersaga.orders.demo import demo_world
from tests.e2e.conftest import ordersaga

pytestmark = pytest.mark.pg

SERVICES = ("inventory", "shipping", "payment")
ORDER = "Order i1, User 456, Items: [{A, 1}], Payment: PayPal, Address: 1 Main St, X, US\n"
KEY = {"ORDERSAGA_DATA_KEY": "22" * 32}


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {r["table_name"] for r in rows}


async def _sql(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _refused(args: list[str], url: str) -> None:
    before = await _tables(url)
    result = ordersaga(*args, input=ORDER, env=KEY)
    assert result.code == 2, result.err
    assert url.rsplit("/", 1)[1] in result.err and "is refused" in result.err, result.err
    assert "Traceback" not in result.err and result.out == ""
    assert await _tables(url) == before  # nothing created


async def test_foreign_and_emptied_postgresql_databases_are_refused(
    pg_database_factory: Callable[[], object], tmp_path: Path
) -> None:
    store = str(await pg_database_factory())  # type: ignore[misc]
    dbs = {name: str(await pg_database_factory()) for name in SERVICES}  # type: ignore[misc]

    def run(store_url: str, service_dbs: dict[str, str]) -> list[str]:
        pairs = ",".join(f"{n}={u}" for n, u in service_dbs.items())
        return ["run", "--store", store_url, "--service-dbs", pairs, "--data-dir", str(tmp_path)]

    first = ordersaga(*run(store, dbs), input=ORDER, env=KEY)
    assert first.code == 0, first.err
    assert "ordersaga_identity" in await _tables(store)
    for url in dbs.values():
        assert "ordersaga_identity" in await _tables(url)

    # A service database pointed at the saga log's, or at another service's.
    await _refused(run(store, {**dbs, "payment": store}), store)
    await _refused(run(store, {**dbs, "payment": dbs["inventory"]}), dbs["inventory"])
    # The saga log pointed at a service's database.
    await _refused(run(dbs["shipping"], dbs), dbs["shipping"])
    # A `serve` process: the saga log's database, and a --world other than the database's.
    serve = ["serve", "payment", "--port", "0"]
    await _refused([*serve, "--db", store], store)
    world = demo_world().to_json()
    world["payment"]["credit_limits"]["456"] = "1.00"
    other = tmp_path / "other-world.json"
    other.write_text(json.dumps(world))
    await _refused([*serve, "--db", dbs["payment"], "--world", str(other)], dbs["payment"])
    # An emptied service database: its stamp is left, its tables are gone.
    emptied = await _tables(dbs["inventory"]) - {"ordersaga_identity"}
    await _sql(dbs["inventory"], f"DROP TABLE {', '.join(sorted(emptied))} CASCADE")
    await _refused(run(store, dbs), dbs["inventory"])
    # A new, empty inventory database beside a log that knows another one: refused too
    # (tests/e2e/test_pg_deployment.py); a new deployment starts from new databases.
    fresh = str(await pg_database_factory())  # type: ignore[misc]
    await _refused(run(store, {**dbs, "inventory": fresh}), fresh)


async def test_openers_starting_at_once_stamp_one_identity(
    pg_database_factory: Callable[[], object],
) -> None:
    url = str(await pg_database_factory())  # type: ignore[misc]
    dbs = [await open_database(url) for _ in range(6)]
    try:
        await asyncio.gather(
            *(stamp_identity(db, Identity("saga_log", f"id{n}")) for n, db in enumerate(dbs))
        )
        rows = await dbs[0].fetchall(f"SELECT data_dir_id FROM {TABLE}")
    finally:
        for db in dbs:
            await db.close()
    assert len(rows) == 1

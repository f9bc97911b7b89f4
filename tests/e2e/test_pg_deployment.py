"""A PostgreSQL deployment's databases are bound together (issue 9): the saga log knows the id of
each service database, so one emptied down to nothing (stamp dropped too), re-created or swapped
is refused with exit 2 naming it, before anything is seeded again; a new saga log beside service
databases holding another log's records is refused naming the log; `run --world` other than the
databases' is refused. Real `ordersaga` processes (in-process services and `serve` over HTTP),
real PostgreSQL databases."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ordersaga.orders.demo import demo_world
from tests.e2e.conftest import ordersaga
from tests.e2e.test_pg_identity import KEY, ORDER, SERVICES, _sql, _tables

pytestmark = pytest.mark.pg

ORDERSAGA = (sys.executable, "-m", "ordersaga")


async def _new(factory: Callable[[], object]) -> str:
    return str(await factory())  # type: ignore[misc]


def _run(tmp: Path, store: str, dbs: dict[str, str], *extra: str) -> list[str]:
    pairs = ",".join(f"{n}={u}" for n, u in dbs.items())
    return ["run", "--store", store, "--service-dbs", pairs, "--data-dir", str(tmp), *extra]


async def _refused(args: list[str], url: str, why: str) -> None:
    before = await _tables(url)
    result = ordersaga(*args, input=ORDER, env=KEY)
    assert result.code == 2, result.err
    assert url.rsplit("/", 1)[1] in result.err and why in result.err, result.err
    assert "Traceback" not in result.err and result.out == ""
    assert await _tables(url) == before  # nothing created, nothing seeded again


async def _members(store: str) -> dict[str, str]:
    import asyncpg

    conn = await asyncpg.connect(store)
    try:
        rows = await conn.fetch("SELECT component, database_id FROM ordersaga_members")
    finally:
        await conn.close()
    return {r["component"]: r["database_id"] for r in rows}


async def test_in_process_services_are_bound_to_their_saga_log(
    pg_database_factory: Callable[[], object], tmp_path: Path
) -> None:
    store = await _new(pg_database_factory)
    dbs = {name: await _new(pg_database_factory) for name in SERVICES}
    first = ordersaga(*_run(tmp_path, store, dbs), input=ORDER, env=KEY)
    assert first.code == 0, first.err
    assert set(await _members(store)) == set(SERVICES)

    # A second deployment, to swap databases between.
    store2 = await _new(pg_database_factory)
    dbs2 = {name: await _new(pg_database_factory) for name in SERVICES}
    assert ordersaga(*_run(tmp_path, store2, dbs2), input=ORDER, env=KEY).code == 0
    # Another deployment's shipping database (same component, another id).
    swapped = {**dbs, "shipping": dbs2["shipping"]}
    await _refused(_run(tmp_path, store, swapped), dbs2["shipping"], "re-created or swapped")
    # A new saga log beside service databases holding another log's records: the log is named.
    store3 = await _new(pg_database_factory)
    await _refused(_run(tmp_path, store3, dbs2), store3, "does not know the inventory database")
    # --world other than the one the databases were seeded from.
    world = demo_world().to_json()
    world["payment"]["credit_limits"]["456"] = "1.00"
    other = tmp_path / "other-world.json"
    other.write_text(json.dumps(world))
    await _refused(
        _run(tmp_path, store2, dbs2, "--world", str(other)), dbs2["payment"], "another world"
    )

    # Emptied down to nothing, stamp and all: every table dropped, or the schema re-made.
    tables = await _tables(dbs["payment"])
    await _sql(dbs["payment"], f"DROP TABLE {', '.join(sorted(tables))} CASCADE")
    await _refused(_run(tmp_path, store, dbs), dbs["payment"], "emptied")
    await _sql(dbs["inventory"], "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    await _refused(_run(tmp_path, store, dbs), dbs["inventory"], "emptied")
    assert await _tables(dbs["inventory"]) == set()  # not seeded again: stock is not reset

    # The intact deployment goes on.
    again = ordersaga(*_run(tmp_path, store2, dbs2), input=ORDER, env=KEY)
    assert again.code == 0, again.err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _serving(dbs: dict[str, str], log_dir: Path) -> Iterator[str]:
    """The three services served over HTTP on ``dbs``; yields the `--services` value."""
    procs: list[subprocess.Popen[bytes]] = []
    urls = {}
    try:
        for name, db in dbs.items():
            port = _free_port()
            with (log_dir / f"{name}.log").open("ab") as log:
                procs.append(
                    subprocess.Popen(
                        [*ORDERSAGA, "serve", name, "--port", str(port), "--db", db],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        for url in urls.values():
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "a service did not start"
                assert all(p.poll() is None for p in procs), "a service exited"
                time.sleep(0.1)  # polling readiness, not papering over a race
        yield ",".join(f"{n}={u}" for n, u in urls.items())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)


async def test_services_over_http_are_checked_against_the_saga_log(
    pg_database_factory: Callable[[], object], tmp_path: Path
) -> None:
    store = await _new(pg_database_factory)
    dbs = {name: await _new(pg_database_factory) for name in SERVICES}
    run = ["run", "--store", store, "--data-dir", str(tmp_path)]
    with _serving(dbs, tmp_path) as services:
        inventory = services.split(",")[0].split("=", 1)[1]
        async with httpx.AsyncClient() as client:
            health = (await client.get(f"{inventory}/health")).json()
        assert health["database"]["records"] is False and len(health["database"]["id"]) == 32
        first = ordersaga(*run, "--services", services, input=ORDER, env=KEY)
        assert first.code == 0, first.err
        assert set(await _members(store)) == set(SERVICES)
        # A new saga log beside services holding another log's records: refused, log named.
        store2 = await _new(pg_database_factory)
        fresh_run = ["run", "--store", store2, "--data-dir", str(tmp_path)]
        result = ordersaga(*fresh_run, "--services", services, input=ORDER, env=KEY)
        assert result.code == 2 and store2.rsplit("/", 1)[1] in result.err, result.err
        assert "does not know the inventory database" in result.err
        # A worker on that log is refused the same way.
        worker = ordersaga("worker", "--store", store2, "--services", services, env=KEY)
        assert worker.code == 2 and "does not know the inventory database" in worker.err
    # The inventory database emptied down to nothing: its service seeds it again at start (it
    # knows no log), but the run refuses to use it.
    await _sql(dbs["inventory"], "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    with _serving(dbs, tmp_path) as services:
        result = ordersaga(*run, "--services", services, input=ORDER, env=KEY)
        assert result.code == 2, result.err
        assert "the inventory database served at" in result.err and "swapped" in result.err
        assert "Traceback" not in result.err and result.out == ""

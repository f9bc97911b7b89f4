"""PostgreSQL: the right to execute a saga log cannot be lost silently (issue 9).

A run's sessions are terminated mid-stream (what a failover, a network cut or a DBA's
``pg_terminate_backend`` does); another run then executes the same log. The first must stop
writing (its stderr says it lost the right, exit status 75) and the audit must hold.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from tests.conftest import pg_server_url
from tests.e2e.conftest import ordersaga

SERVICES = ("inventory", "shipping", "payment")


async def _terminate(store_url: str) -> int:
    name = urlsplit(store_url).path.lstrip("/")
    conn = await asyncpg.connect(pg_server_url())
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()
    return sum(bool(r["done"]) for r in rows)


#: Every run on one PostgreSQL saga log shares its data key (the card seal).
KEY = {"ORDERSAGA_DATA_KEY": "11" * 32}


async def test_a_run_whose_sessions_are_terminated_stops_and_the_next_run_is_clean(
    pg_database_factory: Callable[[], object], tmp_path: Path
) -> None:
    orders = ordersaga("generate", "--orders", "100", "--seed", "11").out.encode()
    for trial in range(5):
        store = await pg_database_factory()  # type: ignore[misc]
        dbs = ",".join([f"{name}={await pg_database_factory()}" for name in SERVICES])  # type: ignore[misc]
        common = ["--store", store, "--service-dbs", dbs, "--fault-rate", "0.3"]
        first = subprocess.Popen(  # noqa: ASYNC220 - it runs beside the test, by design
            [sys.executable, "-m", "ordersaga", "run", "-", *common, "--seed", str(trial)],
            cwd=tmp_path,
            env={**os.environ, **KEY},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert first.stdin is not None and first.stdout is not None and first.stderr is not None
        try:
            first.stdin.write(orders)
            first.stdin.flush()
            assert first.stdout.readline().startswith(b"Order "), first.stderr.read()
            assert await _terminate(store) >= 1
            second = await asyncio.to_thread(
                ordersaga, "run", *common, "--seed", str(trial + 50), input=orders, env=KEY
            )
            assert second.code in (0, 65), second.err
        finally:
            first.stdin.close()
            first.stdout.read()
            err = first.stderr.read().decode()
            first.wait(timeout=60)
        assert first.returncode == 75, err
        assert "lost the right to execute" in err and "Traceback" not in err
        audit = ordersaga("audit", "--store", store, "--service-dbs", dbs, "--data-dir", tmp_path)
        assert audit.code == 0, audit.out + audit.err

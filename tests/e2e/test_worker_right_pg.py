"""PostgreSQL: workers whose lock sessions are terminated stop, and a run then takes over cleanly.

The distributed setup — `ordersaga serve` services, two `ordersaga worker` processes at fault
rate 0.3 on one PostgreSQL saga log, a `run --submit-only` submitter waiting for the outcomes —
loses the workers' lock sessions mid-stream (what a failover, a network cut or a DBA's
``pg_terminate_backend`` does). Each worker must stop executing (its log says it lost the right,
exit status 75); an executing ``run`` on the same log then finishes every saga, the submitter
gets every outcome, and the audit holds. Five trials on one log, a small stream each (issue 9).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.conftest import pg_server_url
from tests.integration.http.conftest import (
    SERVICES,
    ServiceProcess,
    dbs_arg,
    ordersaga_env,
    services_arg,
    sqlite_url,
)

pytestmark = pytest.mark.pg

TRIALS = 5
ORDERS = 40


async def _lock_holders(store_url: str, what: str, only: str = "") -> list[asyncpg.Record]:
    """``SELECT what`` over the other sessions holding an advisory lock in the saga log's
    database (only it), narrowed by the condition ``only``."""
    conn = await asyncpg.connect(pg_server_url())
    try:
        return await conn.fetch(
            f"SELECT {what} FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1"
            f" AND l.pid <> pg_backend_pid() {only}",
            urlsplit(store_url).path.lstrip("/"),
        )
    finally:
        await conn.close()


async def _terminate_lock_sessions(store_url: str) -> int:
    """Terminate the sessions holding an advisory lock in the saga log's database."""
    rows = await _lock_holders(store_url, "pg_terminate_backend(l.pid) AS done")
    return sum(bool(r["done"]) for r in rows)


async def _workers_admitted(store_url: str) -> int:
    """How many sessions hold the shared executor lock (a worker's lock session: see fencing)."""
    return len(await _lock_holders(store_url, "DISTINCT l.pid", "AND l.mode = 'ShareLock'"))


async def _mid_stream(store_url: str, prefix: str) -> bool:
    """Every order is in the log, some are claimed by the workers, some still unfinished."""
    conn = await asyncpg.connect(store_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS sagas, count(owner) AS owned,"
            " count(*) FILTER (WHERE status NOT IN ('confirmed', 'failed')) AS unfinished"
            " FROM sagas WHERE saga_id LIKE $1",
            f"{prefix}%",
        )
    except asyncpg.UndefinedTableError:  # nobody created the log yet
        return False
    finally:
        await conn.close()
    assert row is not None
    return bool(row["sagas"] == ORDERS and row["owned"] > 0 and row["unfinished"] > 0)


def _ordersaga(*args: str | Path, stdin: bytes = b"", timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ordersaga", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=ordersaga_env(),
    )
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


def _start(args: list[str], log: Path, stdin: int | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ordersaga", *args],
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ordersaga_env(),
        )


async def test_workers_whose_sessions_are_terminated_stop_and_a_run_takes_over_cleanly(
    pg_database_factory: Callable[[], object], tmp_path: Path
) -> None:
    store = await pg_database_factory()  # type: ignore[misc]
    assert isinstance(store, str)
    processes = {
        name: ServiceProcess(name, sqlite_url(tmp_path, name), tmp_path) for name in SERVICES
    }
    try:
        for process in processes.values():
            process.start()
        await _trials(store, processes, tmp_path)
    finally:
        for process in processes.values():
            process.kill()


async def _trials(store: str, processes: dict[str, ServiceProcess], tmp_path: Path) -> None:
    services = services_arg(processes)
    dbs = dbs_arg({name: sqlite_url(tmp_path, name) for name in SERVICES})
    for trial in range(TRIALS):
        started = time.monotonic()
        code, orders = _ordersaga(
            "generate",
            "--orders",
            ORDERS,
            "--seed",
            trial,
            "--id-prefix",
            f"t{trial}-",
            "--no-malformed",
        )
        assert code == 0
        workers = []
        for n in range(2):
            args = ["worker", "--store", store, "--services", services, "--id", f"t{trial}w{n}"]
            args += ["--fault-rate", "0.3", "--seed", str(10 * trial + n), "--lease", "2"]
            log = tmp_path / f"t{trial}w{n}.log"
            workers.append((_start(args, log), log))
        submit_log = tmp_path / f"t{trial}-submit.log"
        submitter = _start(
            ["run", "-", "--submit-only", "--store", store], submit_log, stdin=subprocess.PIPE
        )
        assert submitter.stdin is not None
        submitter.stdin.write(orders.encode())
        submitter.stdin.close()
        # Both workers are ready (their lock sessions held, their start-up done) before any lock
        # session is terminated: a worker slow to start would otherwise take its lock after the
        # termination and never be told to stop.
        for _ in range(3000):
            ready = all("ready (" in log.read_text() for _, log in workers)
            if ready and await _workers_admitted(store) == len(workers):
                break
            exited = [w.returncode for w, _ in workers if w.poll() is not None]
            assert not exited, f"a worker exited before it was admitted: {exited}"
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the workers never took their lock sessions")
        for _ in range(1500):
            if await _mid_stream(store, f"t{trial}-"):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the workers never got under way")
        assert await _terminate_lock_sessions(store) >= len(workers)
        for worker, log in workers:
            code = await asyncio.to_thread(worker.wait, 60)
            text = log.read_text()
            assert code == 75, text
            assert "lost the right to execute" in text and "Traceback" not in text, text
        # The workers are gone: an executing run on the same log finishes what they left.
        code, out = await asyncio.to_thread(
            _ordersaga, "run", "--store", store, "--services", services, "--fault-rate", "0.3",
            "--seed", str(trial + 50),
        )  # fmt: skip
        assert code == 0, out
        assert await asyncio.to_thread(submitter.wait, 60) in (0, 65), submit_log.read_text()
        code, report = _ordersaga("audit", "--store", store, "--service-dbs", dbs)
        assert code == 0, report
        print(f"trial {trial}: {time.monotonic() - started:.1f} s")

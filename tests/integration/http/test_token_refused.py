"""A service that starts refusing the token mid-run (HTTP 401) stops `run` and `worker` with a
clear message and exit 2: a configuration fault, never retried as an outage, never a failed order.
The saga stays unfinished in the log and is finished once the token is right again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.distributed.conftest import Process, create_order
from tests.integration.http.conftest import (
    SERVICES,
    ServiceProcess,
    ordersaga_env,
    services_arg,
    sqlite_url,
)

TOKEN = "service-token-0123456789abcdefghij"
OTHER = "another-token-0123456789abcdefghij"


def _line(order_id: str) -> bytes:
    line = f"Order {order_id}, User 456, Items: [{{A, 1}}], Payment: PayPal, Address: X, FR\n"
    return line.encode()


def _restart(service: ServiceProcess, token: str) -> None:
    service.stop()
    service.token = token
    service.start()


def _show(data_dir: Path, order_id: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "ordersaga", "sagas", "show", order_id, "--data-dir",
         str(data_dir), "--json"],
        capture_output=True, timeout=60, env=ordersaga_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    view: dict[str, object] = json.loads(done.stdout)
    return view


def test_run_stops_with_exit_2_when_a_service_refuses_the_token_mid_run(
    tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    services = {
        name: start_service(name, sqlite_url(tmp_path / "services", name), token=TOKEN)
        for name in SERVICES
    }
    data = tmp_path / "data"
    args = [sys.executable, "-m", "ordersaga", "run", "--data-dir", str(data)]
    args += ["--services", services_arg(services)]
    env = ordersaga_env(ORDERSAGA_SERVICE_TOKEN=TOKEN)
    run = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert run.stdin is not None and run.stdout is not None
    run.stdin.write(_line("1"))
    run.stdin.flush()
    assert run.stdout.readline() == b"Order 1 confirmed\n"  # the token is right so far
    _restart(services["payment"], OTHER)  # an operator rotated the service's token
    started = time.monotonic()
    out, err = run.communicate(_line("2"), timeout=60)
    assert run.returncode == 2, err
    assert time.monotonic() - started < 30  # stopped, not retried as an outage
    assert out == b""  # order 2 got no outcome: it is neither confirmed nor failed
    assert err.count(b"\n") == 1 and b"Traceback" not in err, err
    assert b"payment service" in err and b"refused our token" in err
    assert TOKEN.encode() not in err and OTHER.encode() not in err
    assert _show(data, "2")["status"] == "running"  # unfinished, not failed

    _restart(services["payment"], TOKEN)  # fixed: the next run finishes it
    again = subprocess.run(args, input=b"", capture_output=True, timeout=60, env=env)
    assert again.returncode == 0, again.stderr
    assert _show(data, "2")["status"] == "confirmed"


@pytest.mark.pg
async def test_a_worker_stops_with_exit_2_when_a_service_refuses_its_token(
    tmp_path: Path, start_service: Callable[..., ServiceProcess], pg_url: str
) -> None:
    from ordersaga.saga.store import PostgresSagaStore, open_store

    services = {
        name: start_service(name, sqlite_url(tmp_path / "services", name), token=TOKEN)
        for name in SERVICES
    }
    store = await open_store(pg_url)
    assert isinstance(store, PostgresSagaStore)
    stats = tmp_path / "w.json"
    args = ["worker", "--store", pg_url, "--services", services_arg(services), "--id", "w1"]
    args += ["--poll", "0.1", "--stats-file", str(stats)]
    worker = Process("w1", args, tmp_path, env=ordersaga_env(ORDERSAGA_SERVICE_TOKEN=TOKEN))
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not stats.exists():  # started: its token was right then
            assert worker.alive() and time.monotonic() < deadline, worker.log()
            await asyncio.sleep(0.05)
        _restart(services["payment"], OTHER)
        await create_order(store, "t1")
        assert worker.proc is not None
        code = worker.proc.wait(timeout=60)
        assert code == 2, worker.log()
        log = worker.log()
        assert "payment service" in log and "refused our token" in log, log
        assert "Traceback" not in log and TOKEN not in log
        entry = await store.inspect("t1")
        assert entry is not None and entry.record.status.value == "running"  # not failed
        assert entry.lease_until is None, entry  # the lease was handed back
    finally:
        worker.kill()
        await store.close()

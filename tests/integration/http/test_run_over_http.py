"""`ordersaga run` and `audit` with every service its own process over HTTP, all on PostgreSQL.

* Faults injected on the HTTP calls change no business outcome: the outcome lines at
  ``--fault-rate 0.1`` over HTTP equal those of an in-process run without faults (serial runs,
  CONTRACT section 4), and the audit of the saga log and the three service databases passes.
* A service SIGKILLed in the middle of a run and restarted two seconds later: the sagas wait for
  it (the circuit breaker holds them instead of spending their attempts), then finish; every
  order gets its line and the audit passes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.proving.generate import generate_orders
from tests.integration.http.conftest import (
    SERVICES,
    ServiceProcess,
    dbs_arg,
    ordersaga_env,
    services_arg,
)

pytestmark = pytest.mark.pg


def ordersaga(*args: str | Path, stdin: str = "", timeout: float = 120) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ordersaga", *map(str, args)],
        input=stdin.encode(),
        capture_output=True,
        timeout=timeout,
        env=ordersaga_env(),
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


async def _databases(factory: Callable[[], object]) -> tuple[str, dict[str, str]]:
    """A fresh saga log database and one fresh database per service."""
    store: str = await factory()  # type: ignore[misc]
    return store, {name: await factory() for name in SERVICES}  # type: ignore[misc]


def _start_all(
    start_service: Callable[..., ServiceProcess], dbs: dict[str, str]
) -> dict[str, ServiceProcess]:
    processes = {name: start_service(name, dbs[name], wait=False) for name in SERVICES}
    for process in processes.values():
        process.wait_healthy()
    return processes


def _audit(data: Path, store: str, dbs: dict[str, str]) -> None:
    code, out, err = ordersaga(
        "audit", "--data-dir", data, "--store", store, "--service-dbs", dbs_arg(dbs)
    )
    assert code == 0, out + err


async def test_faults_over_http_change_no_outcome_and_the_audit_passes(
    pg_database_factory: Callable[[], object],
    tmp_path: Path,
    start_service: Callable[..., ServiceProcess],
) -> None:
    store, dbs = await _databases(pg_database_factory)
    await asyncio.to_thread(_faults_change_nothing, start_service, tmp_path, store, dbs)


def _faults_change_nothing(
    start_service: Callable[..., ServiceProcess], tmp_path: Path, store: str, dbs: dict[str, str]
) -> None:
    services = _start_all(start_service, dbs)
    stream = "\n".join(generate_orders(60, seed=11, world=demo_world())) + "\n"

    http_data = tmp_path / "http"
    code, over_http, err = ordersaga(
        "run", "--data-dir", http_data, "--store", store, "--services", services_arg(services),
        "--fault-rate", "0.1", "--seed", "4", "--concurrency", "1", stdin=stream,
    )  # fmt: skip
    assert code in (0, 65), err
    assert "faults injected" in err and "request_lost 0" not in err
    code, in_process, err2 = ordersaga(
        "run", "--data-dir", tmp_path / "local", "--concurrency", "1", stdin=stream
    )
    assert code in (0, 65), err2
    assert over_http.splitlines() == in_process.splitlines()
    assert len(over_http.splitlines()) > 50
    assert "confirmed" in over_http and "failed" in over_http
    _audit(http_data, store, dbs)


async def test_a_service_killed_mid_run_and_restarted_lets_the_sagas_finish(
    pg_database_factory: Callable[[], object],
    tmp_path: Path,
    start_service: Callable[..., ServiceProcess],
) -> None:
    store, dbs = await _databases(pg_database_factory)
    await asyncio.to_thread(_kill_and_restart, start_service, tmp_path, store, dbs)


def _kill_and_restart(
    start_service: Callable[..., ServiceProcess], tmp_path: Path, store: str, dbs: dict[str, str]
) -> None:
    services = _start_all(start_service, dbs)
    data = tmp_path / "data"
    orders = [
        f"Order k{n}, User {1000 + n}, Items: [{{A, 1}}, {{B, 2}}], Payment: CreditCard,"
        f" Address: {n} Main St, Springfield, US\n"
        for n in range(120)
    ]
    run = subprocess.Popen(
        [sys.executable, "-m", "ordersaga", "run", "-", "--data-dir", str(data),
         "--store", store, "--services", services_arg(services), "--concurrency", "8", "-v"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ordersaga_env(),
    )  # fmt: skip
    assert run.stdin is not None and run.stdout is not None and run.stderr is not None
    stdout, stderr = run.stdout, run.stderr
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, b"")))
    err_chunks: list[bytes] = []
    err_reader = threading.Thread(target=lambda: err_chunks.append(stderr.read()))
    reader.start()
    err_reader.start()
    try:
        run.stdin.write("".join(orders[:60]).encode())
        run.stdin.flush()
        _wait_for(lambda: len(lines) >= 10, "the first outcomes")
        payment = services["payment"]
        payment.kill()  # SIGKILL, mid-run
        run.stdin.write("".join(orders[60:]).encode())
        run.stdin.flush()
        time.sleep(2.0)
        assert len(lines) < len(orders)  # the sagas are waiting for the payment service
        payment.start()  # same port, same database
        run.stdin.close()
        code = run.wait(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
        reader.join(timeout=10)
        err_reader.join(timeout=10)
    err = b"".join(err_chunks).decode()
    assert code == 0, err
    outcomes = [line.decode().strip() for line in lines]
    assert [line.split()[1] for line in outcomes] == [f"k{n}" for n in range(len(orders))]
    assert all(line.endswith("confirmed") for line in outcomes), err
    assert "retries 0 " not in err  # the outage was felt, and retried through
    _audit(data, store, dbs)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)

"""`ordersaga worker --saga MODULE:NAME` runs a user's saga beside the order saga.

The trip example's desks are served over HTTP by a helper process; a worker started with
``--saga trip_saga:TRIP`` (the example importable through PYTHONPATH) claims trip sagas created
in its PostgreSQL log and drives them: the first trip confirmed, the second — the only car is
gone — compensated. Bad ``--saga`` values are one-line usage errors.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersaga.protocol.messages import fingerprint
from ordersaga.saga.store import open_store
from tests.integration.http.conftest import free_port, get_json, ordersaga_env

from .conftest import Process

ROOT = Path(__file__).resolve().parents[3]
DESKS = ("flight", "hotel", "car", "charge")
WORKER = [sys.executable, "-m", "ordersaga", "worker", "--store", "postgresql://nowhere/x"]
WORKER += ["--services", "inventory=http://127.0.0.1:1"]


def example_env() -> dict[str, str]:
    env = ordersaga_env()
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "examples"), env.get("PYTHONPATH")])
    )
    return env


@pytest.fixture
def desks(tmp_path: Path) -> Iterator[dict[str, str]]:
    ports = [free_port() for _ in DESKS]
    script = Path(__file__).with_name("trip_desks.py")
    log = (tmp_path / "desks.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), *map(str, ports)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=ordersaga_env(),
    )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in zip(DESKS, ports, strict=True)}
    try:
        deadline = time.monotonic() + 30
        for url in urls.values():
            while True:
                try:
                    if get_json(f"{url}/health")[0] == 200:
                        break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "desks.log"
                ).read_text()
                time.sleep(0.05)
        yield urls
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


async def wait_terminal(store_url: str, saga_id: str) -> tuple[str, str]:
    store = await open_store(store_url)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = await store.load(saga_id)
            if record is not None and record.status.terminal:
                return record.status.value, record.reason or ""
            await asyncio.sleep(0.1)
        raise AssertionError(f"saga {saga_id} did not finish")
    finally:
        await store.close()


async def create_trip(store_url: str, trip: dict[str, object]) -> None:
    store = await open_store(store_url)
    try:
        request = {**trip, "total_cents": 123_400}
        _, created = await store.create(str(trip["trip"]), "trip", request, fingerprint(request))
        assert created
    finally:
        await store.close()


@pytest.mark.pg
async def test_a_worker_runs_a_user_saga_beside_the_order_saga(
    pg_url: str, desks: dict[str, str], tmp_path: Path
) -> None:
    # The order services are not needed by trips: an unreachable URL is only a warning.
    closed = f"http://127.0.0.1:{free_port()}"
    services = {"inventory": closed, "shipping": closed, "payment": closed, **desks}
    stats = tmp_path / "worker.json"
    args = [
        "worker",
        "--store",
        pg_url,
        "--services",
        ",".join(f"{k}={v}" for k, v in services.items()),
    ]
    args += [
        "--saga",
        "trip_saga:TRIP",
        "--poll",
        "0.1",
        "--grace",
        "1",
        "--stats-file",
        str(stats),
    ]
    worker = Process("worker", args, tmp_path, env=example_env()).start()
    try:
        trips = [
            {"trip": "T1", "flight": "LH400", "hotel": "Ritz", "car": "Mini", "account": "ada"},
            {"trip": "T2", "flight": "LH400", "hotel": "Ritz", "car": "Mini", "account": "bob"},
        ]
        await create_trip(pg_url, trips[0])
        assert await wait_terminal(pg_url, "T1") == ("confirmed", "")
        await create_trip(pg_url, trips[1])
        assert await wait_terminal(pg_url, "T2") == ("failed", "car hold: Mini is sold out")
    finally:
        code = worker.stop()
    log = worker.log()
    assert code == 0, log
    assert "confirmed 1, failed 1" in log, log
    assert get_json(f"{desks['flight']}/keys/T2:flight:compensate")[1]["state"] == "applied"


@pytest.mark.parametrize(
    ("saga", "message"),
    [
        ("no_such_module:TRIP", "cannot import 'no_such_module'"),
        ("trip_saga:NOPE", "trip_saga:NOPE is nothing, not a SagaDefinition"),
        ("trip_saga:TRIPS", "trip_saga:TRIPS is tuple, not a SagaDefinition"),
        ("trip_saga", "expected package.module:NAME"),
    ],
)
def test_a_bad_saga_reference_is_a_one_line_usage_error(saga: str, message: str) -> None:
    proc = subprocess.run(
        [*WORKER, "--saga", saga],
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=60,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_definitions_of_one_name_are_a_usage_error() -> None:
    proc = subprocess.run(
        [*WORKER, "--saga", "trip_saga:TRIP", "--saga", "trip_saga:TRIP"],
        capture_output=True,
        text=True,
        env=example_env(),
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "two saga definitions named 'trip'" in proc.stderr and "Traceback" not in proc.stderr

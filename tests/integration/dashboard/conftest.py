"""A real SQLite data dir for the dashboard's tests, and a real `ordersaga dashboard` process.

The data dir holds what an operator meets: a run of generated orders at a fault rate (retries,
business failures and their compensations), an order paid by card, and two sagas a run left
unfinished (created as a submitter creates them; ``stuck-1`` flagged for attention).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ordersaga.local.datadir import DataDir
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from ordersaga.orders.parse import Parsed, parse_line
from ordersaga.saga.store import open_store
from tests.e2e.conftest import ordersaga
from tests.integration.dashboard.browser import browser, page  # noqa: F401 (fixtures)
from tests.integration.http.conftest import free_port

CARD = "4111111111111111"
TOKEN = "correct horse battery staple"
STUCK = ("stuck-1", "stuck-2")


def _line(order_id: str, payment: str = "PayPal") -> str:
    return (
        f"Order {order_id}, User 7, Items: [{{A, 1}}], Payment: {payment},"
        " Address: 1 Main St, Springfield, US"
    )


async def _leave_unfinished(data: Path, ids: tuple[str, ...]) -> None:
    """Sagas created and never executed: what a run killed right after creating them leaves."""
    store = await open_store(DataDir(data).locations().store_url)
    try:
        for saga_id in ids:
            parsed = parse_line(_line(saga_id).encode())
            assert isinstance(parsed, Parsed)
            order = parsed.order.normalized()
            await store.create(saga_id, ORDER_SAGA_NAME, order.to_json(), order.fingerprint())
        await store.update(ids[0], needs_attention=True)
    finally:
        await store.close()


def make_log(data: Path) -> None:
    stream = ordersaga("generate", "--orders", "60", "--seed", "5", "--no-malformed").out
    stream += _line("card-1", f"CreditCard {CARD} 12/40") + "\n"
    run = ordersaga("run", "--data-dir", data, "--fault-rate", "0.2", "--seed", "3", input=stream)
    assert run.code == 0, run.err
    asyncio.run(_leave_unfinished(data, STUCK))


@pytest.fixture(scope="module")
def sqlite_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("dashboard") / "data"
    make_log(data)
    return data


@dataclass
class DashboardProcess:
    """`ordersaga dashboard` on a free loopback port."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_dashboard(
    *args: str, log_dir: Path, token: str | None = None, refresh: str = "0.5"
) -> DashboardProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "ORDERSAGA_OPERATOR_TOKEN"}
    if token is not None:
        env["ORDERSAGA_OPERATOR_TOKEN"] = token
    log = log_dir / f"dashboard-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ordersaga", "dashboard", *args, "--port", str(port),
             "--refresh", refresh],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    started = DashboardProcess(f"http://127.0.0.1:{port}", proc, log)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited:\n{started.output()}")
        try:
            with opener.open(f"{started.url}/health", timeout=1) as response:
                if response.status == 200:
                    return started
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"the dashboard did not start:\n{started.output()}")


@pytest.fixture(scope="module")
def dashboard(
    sqlite_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardProcess]:
    """The dashboard of :func:`sqlite_log`, with the operator token."""
    started = start_dashboard(
        "--data-dir", str(sqlite_log), log_dir=tmp_path_factory.mktemp("logs"), token=TOKEN
    )
    try:
        yield started
    finally:
        started.proc.terminate()
        try:
            started.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            started.proc.kill()

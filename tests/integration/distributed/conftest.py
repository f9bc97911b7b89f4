"""One distributed topology shared by the tests of this package: real processes on loopback.

Three `ordersaga serve` services (each its own PostgreSQL database), three `ordersaga worker`
processes on one PostgreSQL saga log (fault rate 0.1, a short lease so that a killed worker's
sagas are taken over quickly) and the order API. Starting it costs a few seconds of CPU, so it
is built once per package and test process (under xdist, each worker process that runs one of
these tests builds its own).

Its world is the demo world plus items and users that only one test each touches — so the tests
do not disturb each other, whatever their order:

    demo items, generated users   the serial outcome test (generated streams)
    HOT (stock 25), users 7000xx  the hot item test
    P, user 900005 (limit 7 orders)  the capped user test
    K, users 8000xx / 8100xx       the worker kill test, the API and resubmission tests
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ordersaga.orders.demo import demo_world
from ordersaga.orders.intake import saga_request
from ordersaga.orders.order_saga import ORDER_SAGA_NAME, order_saga
from ordersaga.orders.parse import Parsed, parse_line
from ordersaga.orders.vault import CardVault
from ordersaga.protocol.messages import Command, Probe, Reply
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.services.factory import ServiceConfigs, Services, data_dir_urls, open_services
from ordersaga.transport.base import Transport
from tests.conftest import pg_server_url, with_database
from tests.integration.http.conftest import (
    SERVICES,
    TEST_DATA_KEY,
    ServiceProcess,
    free_port,
    get_json,
    ordersaga_env,
    services_arg,
)

TEST_VAULT = CardVault(bytes.fromhex(TEST_DATA_KEY))
ORDER_SAGA = order_saga(TEST_VAULT)
#: The API's clients in these tests: key -> client.
API_KEYS = {"key-alice-0123456789abcdef": "alice", "key-bob-0123456789abcdef0": "bob"}
OPERATOR_TOKEN = "operator-token-0123456789abcdef"
HOT_STOCK = 25
CAPPED_USER, CAPPED_ORDERS = 900005, 7
ORDER_CENTS = 1649  # 10.00 for one unit of HOT, P or K + shipping 4.99 + 1.50 per kg
LEASE = 1.5
WORKERS = 3
FAULT_RATE = 0.1


def world_json() -> dict[str, Any]:
    world: dict[str, Any] = demo_world().to_json()
    for item in ("HOT", "P", "K"):
        stock = HOT_STOCK if item == "HOT" else 100_000
        world["items"][item] = {"price": "10.00", "stock": stock, "weight_kg": 1}
    limit = CAPPED_ORDERS * ORDER_CENTS
    world["payment"]["credit_limits"][str(CAPPED_USER)] = f"{limit // 100}.{limit % 100:02d}"
    return world


def order(order_id: str, user: int, item: str, qty: int = 1) -> str:
    return (
        f"Order {order_id}, User {user}, Items: [{{{item}, {qty}}}], Payment: PayPal,"
        " Address: 1 Main St, Springfield, US"
    )


def ordersaga(*args: str | Path, stdin: str = "", timeout: float = 120) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "ordersaga", *map(str, args)],
        input=stdin.encode(),
        capture_output=True,
        timeout=timeout,
        env=ordersaga_env(),
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


class Process:
    """An `ordersaga` child process with its output in a log file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ordersaga", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env or ordersaga_env(),
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Worker(Process):
    def __init__(self, name: str, store: str, services: str, log_dir: Path, seed: int) -> None:
        self.stats_path = log_dir / f"{name}.json"
        args = ["worker", "--store", store, "--services", services, "--id", name]
        args += ["--lease", str(LEASE), "--fault-rate", str(FAULT_RATE), "--seed", str(seed)]
        args += ["--concurrency", "32", "--grace", "2", "--stats-file", str(self.stats_path)]
        super().__init__(name, args, log_dir)

    def start(self) -> Worker:
        self.stats_path.unlink(missing_ok=True)
        super().start()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.stats_path.exists():
            if not self.alive() or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start:\n{self.log()}")
            time.sleep(0.05)

    def stats(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                result: dict[str, Any] = json.loads(self.stats_path.read_text())
                return result
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError(f"no stats from worker {self.name}")


class Topology:
    def __init__(self, admin: str, root: Path) -> None:
        self.admin = admin
        self.root = root
        self.prefix = f"ordersaga_test_{uuid.uuid4().hex[:10]}"
        self.store = with_database(admin, f"{self.prefix}_sagas")
        self.dbs = {name: with_database(admin, f"{self.prefix}_{name}") for name in SERVICES}
        self.world = root / "world.json"
        self.world.write_text(json.dumps(world_json()))
        self.services: dict[str, ServiceProcess] = {}
        self.workers: list[Worker] = []
        self.api: Process | None = None
        self.api_url = ""

    @property
    def databases(self) -> list[str]:
        return [f"{self.prefix}_{name}" for name in ("sagas", *SERVICES)]

    def start(self) -> None:
        asyncio.run(_databases(self.admin, self.databases, create=True))
        self.services = {
            name: ServiceProcess(name, self.dbs[name], self.root, world=self.world)
            for name in SERVICES
        }
        for service in self.services.values():
            service.start(wait=False)
        for service in self.services.values():
            service.wait_healthy()
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        keys = self.root / "api-keys"
        keys.write_text("".join(f"{key} {client}\n" for key, client in API_KEYS.items()))
        api_args = ["serve", "api", "--store", self.store, "--port", str(port)]
        api_args += ["--api-keys", str(keys)]
        env = ordersaga_env(ORDERSAGA_OPERATOR_TOKEN=OPERATOR_TOKEN)  # the dashboard at /ui
        api_args += ["--log-level", "warning"]
        self.api = Process("api", api_args, self.root, env=env).start()
        self.workers = [self.new_worker(i) for i in range(WORKERS)]
        for worker in self.workers:
            worker.wait_ready()
        self.wait_api()

    def new_worker(self, index: int) -> Worker:
        name = f"w{index}-{uuid.uuid4().hex[:4]}"
        return Worker(name, self.store, services_arg(self.services), self.root, 100 + index).start()

    def wait_api(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.api is not None
            if not self.api.alive():
                raise AssertionError(f"the API exited:\n{self.api.log()}")
            try:
                status, body = get_json(f"{self.api_url}/health", timeout=1)
            except (OSError, ValueError):
                status, body = 0, None
            if status == 200 and body == {"status": "ok", "service": "api"}:
                return
            time.sleep(0.05)
        raise AssertionError("the API did not become healthy")

    def close(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None:
                process.kill()
        for service in self.services.values():
            service.kill()
        asyncio.run(_databases(self.admin, self.databases, create=False))

    # -- helpers for the tests -----------------------------------------------------------------

    def submit(self, stream: str, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """`ordersaga run --submit-only` on this topology's saga log."""
        return ordersaga(
            "run", "--submit-only", "--store", self.store, *args, stdin=stream, timeout=timeout
        )

    def audit(self) -> None:
        dbs = ",".join(f"{name}={url}" for name, url in self.dbs.items())
        code, out, err = ordersaga("audit", "--store", self.store, "--service-dbs", dbs)
        assert code == 0, out + err
        assert out.startswith("audit: OK"), out

    def faults(self) -> dict[str, int]:
        """Faults injected so far, summed over the running workers."""
        total: dict[str, int] = {}
        for worker in self.workers:
            for name, n in (worker.stats()["faults"] or {}).items():
                total[name] = total.get(name, 0) + n
        return total

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.store)
            try:
                return [dict(row) for row in await conn.fetch(query, *params)]
            finally:
                await conn.close()

        return asyncio.run(fetch())


async def _databases(admin: str, names: list[str], *, create: bool) -> None:
    conn = await asyncpg.connect(admin)
    try:
        for name in names:
            if create:
                await conn.execute(f'CREATE DATABASE "{name}"')
            else:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="package")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    admin = pg_server_url()
    started = Topology(admin, tmp_path_factory.mktemp("topology"))
    try:
        started.start()
        yield started
    finally:
        started.close()


# -- in-process pieces: an engine or a Worker object against a real PostgreSQL saga log ---------


class Gate(Transport):
    """Holds every command to ``service`` until :attr:`open` is set (a paused worker)."""

    def __init__(self, inner: Transport, service: str) -> None:
        self.inner = inner
        self.service = service
        self.reached = asyncio.Event()
        self.open = asyncio.Event()

    async def send(self, command: Command) -> Reply:
        if command.service == self.service:
            self.reached.set()
            await self.open.wait()
        return await self.inner.send(command)

    async def probe(self, service: str, key: str) -> Probe:
        return await self.inner.probe(service, key)


@pytest.fixture
def store(pg_store: PostgresSagaStore) -> PostgresSagaStore:
    """The saga log these tests share (``pg_store``: a fresh database each)."""
    return pg_store


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """The three services in process, on SQLite files in ``tmp_path``, with the demo world."""
    world = demo_world()
    configs = ServiceConfigs(world.inventory, world.shipping, world.payment)
    opened = await open_services(data_dir_urls(tmp_path), configs)
    yield opened
    await opened.close()


async def create_order(store: PostgresSagaStore, order_id: str, saga_id: str | None = None) -> None:
    """Create the saga of a valid order (as a submitter would): running, nobody holds it;
    ``saga_id`` as an API client's order (``client,order id``), by default the order id."""
    line = f"Order {order_id}, User 456, Items: [{{A, 2}}], Payment: PayPal, Address: X, US"
    parsed = parse_line(line.encode())
    assert isinstance(parsed, Parsed)
    saga = saga_request(TEST_VAULT, parsed)
    await store.create(saga_id or order_id, ORDER_SAGA_NAME, saga.input, saga.fingerprint)

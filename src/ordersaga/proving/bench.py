"""`ordersaga bench`: a generated workload, end to end through the same code path as `run`.

Each run opens a fresh data dir (a temporary directory) with its real services — each on its own
SQLite database — and its real saga log (SQLite in the data dir, or a fresh PostgreSQL database),
recovers (nothing, on a new data dir), and drives the very
:class:`~ordersaga.local.pipeline.Pipeline`
that `run` drives, fed with generated order lines instead of a file. Only the sink differs: it
records each order's latency (admission to outcome) instead of printing it.

Variants: the concurrency (one run per value of a list), the fault rate, the saga log's backend,
and durability — ``durable`` (the default), ``none`` (the in-memory saga log and services with
``synchronous=OFF``: the same code otherwise), or ``compare`` (both on the same workload, with the
ratio of their throughputs: the cost of durability measured in one invocation).

Past one process (``http``, ``workers``; each run after an in-process run of the same workload
on the same saga-log backend, the baseline of its ``ratio_to_inprocess``): ``http`` serves the
three services as ``ordersaga serve`` processes on loopback (each on its SQLite file in the data
dir) and drives the engine in this process through the HTTP transport; ``workers`` (a list,
needs ``store``) starts, per count N, the services and N ``ordersaga worker`` processes on fresh
PostgreSQL databases (the topology of ``ordersaga up``, without the API) and drives the pipeline
with a :class:`~ordersaga.cluster.submit.Submitter` as its decider. Starting and stopping the
processes is not timed.

By default the workload is generated up front and not timed. With ``stream`` it is generated
while the run consumes it, as an endless input would be, and the resident set size is sampled
every ``rss_every`` orders: the figures that show memory staying bounded.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ordersaga.cluster.submit import Submitter, open_pg_store
from ordersaga.cluster.up import (
    SERVICES,
    SupervisorSettings,
    Topology,
    UpSettings,
    ensure_databases,
    pick_ports,
    plan,
    service_children,
    supervised,
    topology_data_key,
)
from ordersaga.errors import ConfigError
from ordersaga.local.pipeline import Counts, Outcome, Pipeline
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.orders.vault import CardVault
from ordersaga.orders.world import World
from ordersaga.proving.benchstats import BenchReport, LatencyHistogram, current_rss_mb, peak_rss_mb
from ordersaga.proving.generate import Kind, Mix, bench_world, generate_workload
from ordersaga.saga.recovery import recover
from ordersaga.transport.http import HttpSettings

__all__ = ["DURABILITY_MODES", "BenchOptions", "run_bench"]

DURABILITY_MODES = ("durable", "none", "compare")

#: Compensations an order of each kind needs when it fails as meant (the steps before the
#: refusing one); every other kind fails, if at all, at the first step.
_COMPENSATIONS = {
    Kind.UNSERVED_COUNTRY: 1,
    Kind.OVER_WEIGHT: 1,
    Kind.DECLINED_CARD: 2,
    Kind.EXPIRED_CARD: 2,
    Kind.UNKNOWN_METHOD: 2,
    Kind.OVER_LIMIT: 2,
}
HOT_ITEM = "HOT"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run. Shares are of all orders; ``contention`` orders ask for the hot item."""

    orders: int = 20_000
    concurrency: tuple[int, ...] = (64,)
    fault_rate: float = 0.0
    seed: int = 1
    items: int = 20
    contention: float = 0.0
    hot_stock: int | None = None  # None: the hot item never runs out (contention only)
    fail_reserve: float = 0.0
    fail_ship: float = 0.0
    fail_pay: float = 0.0
    store: str | None = None  # None: SQLite in the data dir; a postgresql:// server URL
    durability: str = "durable"
    stream: bool = False
    rss_every: int = 0  # with stream: sample RSS every N orders (0: a tenth of the run)
    ordered: bool = True
    tmp_dir: Path | None = None  # where the fresh data dirs go (default: the system's)
    keep: bool = False  # keep the data dirs (their paths are in the labels)
    http: bool = False  # also: the services as `ordersaga serve` processes, over HTTP
    workers: tuple[int, ...] = ()  # also: per N, N worker processes (needs a PostgreSQL store)

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_MODES:
            raise ConfigError(f"durability must be one of {', '.join(DURABILITY_MODES)}")
        if self.store is not None and not self.store.startswith(("postgresql://", "postgres://")):
            raise ConfigError("--store takes a postgresql:// server URL (SQLite is the default)")
        if self.workers and self.store is None:
            raise ConfigError("--workers needs --store postgresql://SERVER (the shared saga log)")
        if (self.http or self.workers) and self.durability != "durable":
            raise ConfigError("--http and --workers measure the durable setup only")
        shares = (self.contention, self.fail_reserve, self.fail_ship, self.fail_pay)
        if not all(0.0 <= s <= 1.0 for s in shares) or sum(shares[1:]) > 1.0:
            raise ConfigError("shares must lie in [0, 1], the failure shares summing to at most 1")

    def world(self) -> World:
        hot = None
        if self.contention > 0:
            hot = self.hot_stock if self.hot_stock is not None else 10**9
        return bench_world(items=self.items, hot_stock=hot, hot_item=HOT_ITEM)

    def mix(self) -> Mix:
        return Mix.clean(
            fail_reserve=self.fail_reserve, fail_ship=self.fail_ship, fail_pay=self.fail_pay
        )


class Workload:
    """The generated lines, once (iterable again) or streamed; counts expected compensations."""

    def __init__(self, options: BenchOptions, world: World) -> None:
        self._options = options
        self._world = world
        self._lines: list[bytes] | None = None
        self._expected = 0
        self._fixed_expected = 0
        if not options.stream:
            self._lines = list(self._generate())
            self._fixed_expected = self._expected

    def _generate(self) -> Iterator[bytes]:
        options = self._options
        self._expected = 0
        workload = generate_workload(
            options.orders,
            seed=options.seed,
            world=self._world,
            mix=options.mix(),
            hot_items=(HOT_ITEM,) if options.contention > 0 else (),
            hot_share=options.contention,
        )
        for generated in workload:
            if generated.expected == "failed":
                self._expected += _COMPENSATIONS.get(generated.kind, 0)
            yield generated.line.encode()

    @property
    def expected_compensations(self) -> int:
        return self._fixed_expected if self._lines is not None else self._expected

    async def numbered(self) -> AsyncIterator[tuple[int, bytes | None]]:
        lines = self._lines if self._lines is not None else self._generate()
        for lineno, line in enumerate(lines, 1):
            yield lineno, line


class _BenchSink:
    """Records each outcome's latency instead of printing it; samples RSS as orders finish."""

    def __init__(self, rss_every: int) -> None:
        self.latency = LatencyHistogram()
        self.rss_every = rss_every
        self.rss_samples: list[tuple[int, float]] = []
        self.unreadable_lines = 0

    def outcome(self, outcome: Outcome) -> None:
        self.latency.add(outcome.latency)
        if self.rss_every and self.latency.count % self.rss_every == 0:
            self.rss_samples.append((self.latency.count, current_rss_mb()))

    def unreadable(self, lineno: int, reason: str) -> None:
        self.unreadable_lines += 1

    def rejected(self, lineno: int, order_id: str, reason: str) -> None:
        return None

    def flush(self) -> None:
        return None


async def run_bench(
    options: BenchOptions,
    say: Callable[[str], None] = lambda _m: None,
    err: TextIO | None = None,
) -> list[BenchReport]:
    """Every variant ``options`` asks for, one report each (a comparison nests its baseline).

    ``err`` receives the output of the processes the distributed variants start.
    """
    world = options.world()
    if not options.stream:
        say(f"generating {options.orders} orders")
    workload = Workload(options, world)
    reports: list[BenchReport] = []
    if options.http or options.workers:
        for concurrency in options.concurrency:
            reports += await _run_distributed(options, workload, world, concurrency, say, err)
        return reports
    for concurrency in options.concurrency:
        if options.durability == "none":
            reports.append(await _run_one(options, workload, world, concurrency, False, say))
            continue
        report = await _run_one(options, workload, world, concurrency, True, say)
        if options.durability == "compare":
            report.baseline = await _run_one(options, workload, world, concurrency, False, say)
        reports.append(report)
    return reports


async def _run_one(
    options: BenchOptions,
    workload: Workload,
    world: World,
    concurrency: int,
    durable: bool,
    say: Callable[[str], None],
) -> BenchReport:
    data_dir = Path(tempfile.mkdtemp(prefix="ordersaga-bench-", dir=options.tmp_dir))
    try:
        async with _saga_log(options.store, durable) as (store_url, store_kind):
            label = f"{store_kind}{'' if durable else ' (no durability)'}, c={concurrency}"
            if options.fault_rate:
                label += f", fault rate {options.fault_rate:g}"
            if options.keep:
                label += f" [{data_dir}]"
            say(f"running {label}")
            settings = RuntimeSettings(
                data_dir=data_dir,
                world=world,
                fault_rate=options.fault_rate,
                seed=options.seed,
                durable=durable,
                store_url=store_url,
            )
            return await _measure(options, workload, settings, concurrency, label, store_kind)
    finally:
        if not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _measure(
    options: BenchOptions,
    workload: Workload,
    settings: RuntimeSettings,
    concurrency: int,
    label: str,
    store_kind: str,
) -> BenchReport:
    rss_every = (options.rss_every or max(1, options.orders // 10)) if options.stream else 0
    runtime = await open_runtime(settings)
    try:
        sink = _BenchSink(rss_every)
        pipeline = Pipeline(runtime.engine, sink, runtime.vault, concurrency, options.ordered)
        await recover(runtime.engine, concurrency=concurrency)  # as `run` does; nothing here
        cpu_started, started = time.process_time(), time.perf_counter()
        counts = await pipeline.run(workload.numbered())
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await runtime.transport.drain()
    finally:
        await runtime.close()
    kits = runtime.services
    services = () if kits is None else (kits.inventory, kits.shipping, kits.payment)
    return _report(
        label,
        store_kind,
        settings.durable,
        concurrency,
        settings.fault_rate,
        (elapsed, cpu),
        counts,
        sink,
        workload,
        lost_sends=runtime.injector.lost_sends if runtime.injector is not None else None,
        log_commits=runtime.store.stats.commits,
        log_writes=runtime.store.stats.writes,
        service_commits=sum(s.stats.commits for s in services),
        service_commands=sum(s.stats.commands for s in services),
    )


async def _run_distributed(
    options: BenchOptions,
    workload: Workload,
    world: World,
    concurrency: int,
    say: Callable[[str], None],
    err: TextIO | None,
) -> list[BenchReport]:
    """The in-process baseline, then the HTTP and the worker variants, each rated against it."""
    baseline = await _run_one(options, workload, world, concurrency, True, say)
    baseline.label = f"in-process, {baseline.label}"
    reports = [baseline]
    world_dir = Path(tempfile.mkdtemp(prefix="ordersaga-bench-world-", dir=options.tmp_dir))
    try:
        world_file = world_dir / "world.json"
        world_file.write_text(json.dumps(world.to_json()), encoding="utf-8")
        out = err or sys.stderr
        if options.http:
            reports.append(await _run_http(options, workload, world_file, concurrency, say, out))
        for workers in options.workers:
            report = await _run_workers(
                options, workload, world_file, concurrency, workers, say, out
            )
            reports.append(report)
    finally:
        shutil.rmtree(world_dir, ignore_errors=True)
    for report in reports[1:]:
        report.inprocess = baseline
    return reports


async def _run_http(
    options: BenchOptions,
    workload: Workload,
    world_file: Path,
    concurrency: int,
    say: Callable[[str], None],
    err: TextIO,
) -> BenchReport:
    """The engine here, the services as `ordersaga serve` processes (SQLite in the data dir)."""
    data_dir = Path(tempfile.mkdtemp(prefix="ordersaga-bench-", dir=options.tmp_dir))
    try:
        async with _saga_log(options.store, True) as (store_url, store_kind):
            ports = dict(zip(SERVICES, pick_ports(0)[1:], strict=True))
            dbs = {name: f"sqlite:///{data_dir / f'{name}.db'}" for name in SERVICES}
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            children = service_children(ports, dbs, world_file)
            token = secrets.token_urlsafe(32)  # the services require it, the engine sends it
            topology = Topology("", store_url or "", urls, dbs, [], children)
            topology.env["ORDERSAGA_SERVICE_TOKEN"] = token
            label = f"http services, {store_kind}, c={concurrency}"
            if options.fault_rate:
                label += f", fault rate {options.fault_rate:g}"
            if options.keep:
                label += f" [{data_dir}]"
            say(f"starting the services for {label}")
            async with supervised(topology, err):
                say(f"running {label}")
                settings = RuntimeSettings(
                    data_dir=data_dir / "orchestrator",
                    fault_rate=options.fault_rate,
                    seed=options.seed,
                    store_url=store_url,
                    http_services=urls,
                    http=HttpSettings(token=token),
                )
                report = await _measure(options, workload, settings, concurrency, label, store_kind)
        report.variant = "http"
        return report
    finally:
        if not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _run_workers(
    options: BenchOptions,
    workload: Workload,
    world_file: Path,
    concurrency: int,
    workers: int,
    say: Callable[[str], None],
    err: TextIO,
) -> BenchReport:
    """Services and ``workers`` workers as processes on fresh databases; a Submitter decides."""
    assert options.store is not None
    state_dir = Path(tempfile.mkdtemp(prefix="ordersaga-bench-", dir=options.tmp_dir))
    settings = UpSettings(
        pg_url=options.store,
        workers=workers,
        base_port=0,
        prefix=f"ordersaga_bench_{uuid.uuid4().hex[:12]}",
        fresh=True,
        world=world_file,
        concurrency=max(8, concurrency // workers),
        fault_rate=options.fault_rate,
        seed=options.seed if options.fault_rate else None,
        api=False,
    )
    topology = plan(settings, state_dir)
    names = [
        urlsplit(url).path.lstrip("/") for url in (topology.store, *topology.service_dbs.values())
    ]
    plural = "s" if workers > 1 else ""
    label = f"{workers} worker{plural} (c={settings.concurrency} each), postgresql, c={concurrency}"
    if options.fault_rate:
        label += f", fault rate {options.fault_rate:g}"
    rss_every = (options.rss_every or max(1, options.orders // 10)) if options.stream else 0
    sink = _BenchSink(rss_every)
    try:
        await ensure_databases(settings, names)
        say(f"starting the services and workers for {label}")
        async with supervised(topology, err, SupervisorSettings.of(settings)):
            say(f"running {label}")
            store = await open_pg_store(topology.store, "bench --workers")
            try:
                submitter = await Submitter.open(store, warn=say)
                try:
                    vault = CardVault(topology_data_key(topology))
                    pipeline = Pipeline(submitter, sink, vault, concurrency, options.ordered)
                    cpu_started, started = time.process_time(), time.perf_counter()
                    counts = await pipeline.run(workload.numbered())
                    elapsed = time.perf_counter() - started
                    cpu = time.process_time() - cpu_started
                finally:
                    await submitter.close()
            finally:
                await store.close()
        commits, writes = store.stats.commits, store.stats.writes
        for worker_id in topology.workers:  # each worker's last snapshot, written as it stops
            stats = _worker_store_stats(state_dir / f"{worker_id}.json")
            commits, writes = commits + stats[0], writes + stats[1]
    finally:
        await _drop_databases(options.store, names)
        shutil.rmtree(state_dir, ignore_errors=True)
    return _report(
        label,
        "postgresql",
        True,
        concurrency,
        options.fault_rate,
        (elapsed, cpu),
        counts,
        sink,
        workload,
        lost_sends=None,
        log_commits=commits,
        log_writes=writes,
        service_commits=0,  # the services are other processes: not counted
        service_commands=0,
        variant=f"workers={workers}",
        workers=workers,
    )


def _worker_store_stats(path: Path) -> tuple[int, int]:
    """A worker's saga-log commits and writes from its stats file (0, 0 if unreadable)."""
    try:
        store = json.loads(path.read_text(encoding="utf-8"))["store"]
        return int(store["commits"]), int(store["writes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0


async def _drop_databases(server_url: str, names: list[str]) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def _saga_log(store: str | None, durable: bool) -> AsyncIterator[tuple[str | None, str]]:
    """The saga log's URL for one run (None: the data dir's SQLite file) and its kind."""
    if not durable:
        yield "memory://", "memory"
    elif store is None:
        yield None, "sqlite"
    else:
        async with fresh_pg_database(store) as url:
            yield url, "postgresql"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@asynccontextmanager
async def fresh_pg_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards."""
    name = f"ordersaga_bench_{uuid.uuid4().hex[:12]}"
    host = urlsplit(server_url).hostname or "localhost"
    try:
        admin = await asyncpg.connect(server_url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise ConfigError(f"cannot reach PostgreSQL on {host}: {exc}") from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.PostgresError as exc:
        raise ConfigError(f"cannot create a benchmark database on {host}: {exc}") from None
    finally:
        await admin.close()
    try:
        yield _with_database(server_url, name)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _report(
    label: str,
    store: str,
    durable: bool,
    concurrency: int,
    fault_rate: float,
    timing: tuple[float, float],
    counts: Counts,
    sink: _BenchSink,
    workload: Workload,
    **measured: Any,
) -> BenchReport:
    """A report from a run's pipeline counts, its sink and its workload, plus what the variant
    measured itself (commits, lost sends, variant name)."""
    elapsed, cpu = timing
    return BenchReport(
        label=label,
        store=store,
        durable=durable,
        orders=counts.requests,
        concurrency=concurrency,
        fault_rate=fault_rate,
        elapsed_s=elapsed,
        cpu_s=cpu,
        confirmed=counts.confirmed,
        failed=counts.failed,
        latency=sink.latency,
        retries=counts.retries,
        compensations=counts.compensations,
        expected_compensations=workload.expected_compensations,
        peak_rss_mb=peak_rss_mb(),
        rss_samples=sink.rss_samples,
        **measured,
    )

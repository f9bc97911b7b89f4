"""How `ordersaga bench` measures a run: a sink recording each order's latency and the RSS, the
timed pipeline of an in-process run, and the report of a run (see :mod:`ordersaga.proving.bench`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ordersaga.local.pipeline import Counts, Outcome, Pipeline
from ordersaga.local.runtime import RuntimeSettings, open_runtime
from ordersaga.proving.benchload import BenchOptions, Workload
from ordersaga.proving.benchstats import BenchReport, LatencyHistogram, current_rss_mb, peak_rss_mb
from ordersaga.proving.cputree import CpuTree, database_of
from ordersaga.saga.recovery import recover


class BenchSink:
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


async def measure(
    options: BenchOptions,
    workload: Workload,
    settings: RuntimeSettings,
    concurrency: int,
    label: str,
    store_kind: str,
    pg_server: str | None,
    children: Callable[[], Mapping[int, str]] = dict,
) -> BenchReport:
    """One timed run of the pipeline in this process; ``children`` gives the pids of the
    setup's other processes and ``pg_server`` the PostgreSQL server of its saga log, whose CPU
    counts in the report's tree CPU (see :mod:`ordersaga.proving.cputree`)."""
    rss_every = (options.rss_every or max(1, options.orders // 10)) if options.stream else 0
    runtime = await open_runtime(settings)
    try:
        sink = BenchSink(rss_every)
        pipeline = Pipeline(runtime.engine, sink, runtime.vault, concurrency, options.ordered)
        await recover(runtime.engine, concurrency=concurrency)  # as `run` does; nothing here
        on_pg = (settings.store_url or "").startswith(("postgresql://", "postgres://"))
        databases = {database_of(settings.store_url or ""): "sagas"} if on_pg else {}
        async with CpuTree(children, pg_server, databases) as tree:
            cpu_started, started = time.process_time(), time.perf_counter()
            counts = await pipeline.run(workload.numbered())
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        await runtime.transport.drain()
    finally:
        await runtime.close()
    kits = runtime.services
    services = () if kits is None else (kits.inventory, kits.shipping, kits.payment)
    return bench_report(
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
        tree_cpu_s=tree.seconds,
        tree_pg_backends=tree.pg_backends,
        tree_cpu_by_process=tree.by_process,
    )


def bench_report(
    label: str,
    store: str,
    durable: bool,
    concurrency: int,
    fault_rate: float,
    timing: tuple[float, float],
    counts: Counts,
    sink: BenchSink,
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

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
processes is not timed. ``worker_cpu`` caps each worker process at that many cores with the
cgroup cpu controller (:mod:`ordersaga.proving.cpucap`), the rest uncapped: on a machine whose
cores the whole setup shares, that is how more workers can be shown to add throughput when the
workers are the bottleneck.

By default the workload is generated up front and not timed. With ``stream`` it is generated
while the run consumes it, as an endless input would be, and the resident set size is sampled
every ``rss_every`` orders: the figures that show memory staying bounded.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ordersaga.local.runtime import RuntimeSettings
from ordersaga.orders.world import World
from ordersaga.proving.benchdb import saga_log
from ordersaga.proving.benchload import BenchOptions, Workload
from ordersaga.proving.benchmeasure import measure
from ordersaga.proving.benchprocs import run_http, run_workers
from ordersaga.proving.benchstats import BenchReport
from ordersaga.proving.cpucap import CpuCaps, find_cpu_cgroup
from ordersaga.proving.machine import Machine

__all__ = ["run_bench"]


async def run_bench(
    options: BenchOptions,
    say: Callable[[str], None] = lambda _m: None,
    err: TextIO | None = None,
) -> list[BenchReport]:
    """Every variant ``options`` asks for, one report each (a comparison nests its baseline).

    ``err`` receives the output of the processes the distributed variants start.
    """
    if options.worker_cpu is not None:  # fail now, not after the in-process baseline
        with CpuCaps(find_cpu_cgroup(), options.worker_cpu, ["probe"]):
            pass
    world = options.world()
    if not options.stream:
        say(f"generating {options.orders} orders")
    workload = Workload(options, world)
    machine = Machine.probe(options.tmp_dir, options.fsync_samples)
    reports = await _run_all(options, workload, world, say, err)
    for report in reports:
        report.machine = machine
        if report.baseline is not None:
            report.baseline.machine = machine
    return reports


async def _run_all(
    options: BenchOptions,
    workload: Workload,
    world: World,
    say: Callable[[str], None],
    err: TextIO | None,
) -> list[BenchReport]:
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
        async with saga_log(options.store, durable) as (store_url, store_kind):
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
            return await measure(
                options, workload, settings, concurrency, label, store_kind, options.store
            )
    finally:
        if not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


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
            reports.append(await run_http(options, workload, world_file, concurrency, say, out))
        for workers in options.workers:
            report = await run_workers(
                options, workload, world_file, concurrency, workers, say, out
            )
            reports.append(report)
    finally:
        shutil.rmtree(world_dir, ignore_errors=True)
    for report in reports[1:]:
        report.inprocess = baseline
    return reports

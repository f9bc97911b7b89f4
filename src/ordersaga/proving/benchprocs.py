"""The variants of `ordersaga bench` past one process: the services over HTTP, and worker
processes on a shared PostgreSQL saga log (see :mod:`ordersaga.proving.bench`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from ordersaga.cluster.submit import Submitter, open_pg_store
from ordersaga.cluster.supervisor import SupervisorSettings, supervised
from ordersaga.cluster.topology import (
    SERVICES,
    Child,
    Topology,
    UpSettings,
    ensure_databases,
    pick_ports,
    plan,
    service_children,
    topology_data_key,
)
from ordersaga.local.pipeline import Counts, Pipeline
from ordersaga.local.runtime import RuntimeSettings
from ordersaga.orders.vault import CardVault
from ordersaga.proving.benchdb import drop_databases, saga_log
from ordersaga.proving.benchload import BenchOptions, Workload
from ordersaga.proving.benchmeasure import BenchSink, bench_report, measure
from ordersaga.proving.benchstats import BenchReport
from ordersaga.proving.cpucap import CpuCaps, find_cpu_cgroup
from ordersaga.proving.cputree import CpuTree
from ordersaga.transport.http import HttpSettings


async def run_http(
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
        async with saga_log(options.store, True) as (store_url, store_kind):
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
                report = await measure(
                    options,
                    workload,
                    settings,
                    concurrency,
                    label,
                    store_kind,
                    options.store,
                    lambda: _pids(children),
                )
        report.variant = "http"
        return report
    finally:
        if not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


async def run_workers(
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
    labels = {
        urlsplit(url).path.lstrip("/"): what
        for what, url in (("sagas", topology.store), *topology.service_dbs.items())
    }
    names = list(labels)
    plural = "s" if workers > 1 else ""
    capped = "" if options.worker_cpu is None else f", capped at {options.worker_cpu:g} core"
    label = (
        f"{workers} worker{plural} (c={settings.concurrency}{capped} each), postgresql,"
        f" c={concurrency}"
    )
    if options.fault_rate:
        label += f", fault rate {options.fault_rate:g}"
    rss_every = (options.rss_every or max(1, options.orders // 10)) if options.stream else 0
    sink = BenchSink(rss_every)
    caps = None
    if options.worker_cpu is not None:  # one cgroup per worker, named as in tree_cpu_by_process
        named = [worker.rsplit("-", 1)[-1] for worker in topology.workers]
        caps = CpuCaps(find_cpu_cgroup(), options.worker_cpu, named)
    try:
        await ensure_databases(settings, names)
        say(f"starting the services and workers for {label}")
        with caps if caps is not None else contextlib.nullcontext():
            async with supervised(topology, err, SupervisorSettings.of(settings)):
                say(f"running {label}")

                def pids() -> dict[int, str]:
                    running = _pids(topology.children)
                    if caps is not None:  # a restarted worker's new pid too, at every sample
                        caps.attach(running)
                    return running

                pids()  # capped before the clock starts
                counts, timing, tree, commits, writes = await _timed(
                    options, workload, topology, concurrency, sink, (pids, labels), say
                )
        for worker_id in topology.workers:  # each worker's last snapshot, written as it stops
            stats = _worker_store_stats(state_dir / f"{worker_id}.json")
            commits, writes = commits + stats[0], writes + stats[1]
    finally:
        await drop_databases(options.store, names)
        shutil.rmtree(state_dir, ignore_errors=True)
    return bench_report(
        label,
        "postgresql",
        True,
        concurrency,
        options.fault_rate,
        timing,
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
        tree_cpu_s=tree.seconds,
        tree_pg_backends=tree.pg_backends,
        tree_cpu_by_process=tree.by_process,
        worker_cpu_cap=options.worker_cpu,
        worker_throttled=caps.throttled if caps is not None else {},
    )


async def _timed(
    options: BenchOptions,
    workload: Workload,
    topology: Topology,
    concurrency: int,
    sink: BenchSink,
    tracked: tuple[Callable[[], dict[int, str]], dict[str, str]],
    say: Callable[[str], None],
) -> tuple[Counts, tuple[float, float], CpuTree, int, int]:
    """The timed run of the pipeline, a Submitter deciding: its counts, (elapsed, CPU) of this
    process, the tree's CPU (``tracked``: the setup's pids, the databases' labels) and the
    submitter's log commits and writes."""
    pids, labels = tracked
    store = await open_pg_store(topology.store, "bench --workers")
    try:
        submitter = await Submitter.open(store, warn=say)
        try:
            vault = CardVault(topology_data_key(topology))
            pipeline = Pipeline(submitter, sink, vault, concurrency, options.ordered)
            async with CpuTree(pids, options.store, labels) as tree:
                cpu_started, started = time.process_time(), time.perf_counter()
                counts = await pipeline.run(workload.numbered())
                elapsed = time.perf_counter() - started
                cpu = time.process_time() - cpu_started
        finally:
            await submitter.close()
    finally:
        await store.close()
    return counts, (elapsed, cpu), tree, store.stats.commits, store.stats.writes


def _pids(children: list[Child]) -> dict[int, str]:
    """The pids of the setup's running processes (a restarted worker's new one too), each
    with its name (a worker's without the topology's prefix)."""
    return {
        child.proc.pid: child.name.rsplit("-", 1)[-1]
        for child in children
        if child.proc is not None
    }


def _worker_store_stats(path: Path) -> tuple[int, int]:
    """A worker's saga-log commits and writes from its stats file (0, 0 if unreadable)."""
    try:
        store = json.loads(path.read_text(encoding="utf-8"))["store"]
        return int(store["commits"]), int(store["writes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0

"""`ordersaga worker` as a process: it opens the saga log, the services and the engine, runs a
:class:`~ordersaga.cluster.worker.Worker` until SIGINT/SIGTERM, writes its stats file and serves
its metrics, then closes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from ordersaga.cluster.liveness import registered
from ordersaga.cluster.submit import open_pg_store
from ordersaga.cluster.worker import Worker, WorkerCounts, WorkerSettings
from ordersaga.db.base import Database
from ordersaga.db.deployment import Member, bind_members
from ordersaga.errors import (
    AccessRefused,
    ExecutorFenced,
    ForeignDatabase,
    StorageError,
    TransportError,
)
from ordersaga.local.retention import PruneSettings, periodic_prune
from ordersaga.local.runtime import bind_deployment, connect_http_services, http_members
from ordersaga.local.telemetry import EngineTelemetry
from ordersaga.orders.order_saga import order_saga
from ordersaga.orders.vault import CardVault
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.store.signals import WORK_CHANNEL, Wakeup
from ordersaga.transport.base import Transport
from ordersaga.transport.faults import FaultInjector, FaultSettings
from ordersaga.transport.http import HttpTransport

__all__ = ["run_worker"]


#: Seconds between two health checks while every service answered and no call waits for one.
HEALTHY_RECHECK = 5.0


def _health_check(
    http: HttpTransport,
    settings: WorkerSettings,
    log_db: Database,
    stalling: Callable[[], bool],
) -> Callable[[], Awaitable[str | None]]:
    """What is wrong with the services (None: all answer, each on a database the saga log
    accepts; see :mod:`ordersaga.db.deployment`).

    Asked again after ``poll`` s (at least 0.5) while something is wrong or a call of ours waits
    for an unreachable service (``stalling``), else after :data:`HEALTHY_RECHECK` s: a service
    lost in between shows in the calls first. A database the log accepted once is accepted for
    good (the log never forgets a member), so it is checked against the log only once.
    """
    last: list[tuple[float, str | None]] = []
    accepted: set[tuple[str, str]] = set()

    async def check() -> str | None:
        now = time.monotonic()
        if last:
            at, problem = last[0]
            quick = problem is not None or stalling()
            if now - at < max(settings.poll, 0.5 if quick else HEALTHY_RECHECK):
                return problem
        problem = None
        for name, url in http.base_urls.items():
            try:
                health = await http.health(name)
                database = health.get("database")
                if isinstance(database, dict):
                    held = bool(database.get("records"))
                    member = Member(name, database.get("id"), held, f"served at {url}")
                    known = None if member.database_id is None else (name, member.database_id)
                    if known not in accepted:
                        await bind_members(log_db, [member])
                        if known is not None:
                            accepted.add(known)
            except TransportError as exc:
                problem = f"the {name} service at {url} does not answer ({exc})"
                break
            except (ForeignDatabase, StorageError) as exc:
                problem = str(exc)
                break
        last[:] = [(now, problem)]
        return problem

    return check


def _write_stats(path: Path, snapshot: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(snapshot, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def _snapshot(worker: Worker, injector: FaultInjector | None, phase: str) -> dict[str, Any]:
    calls = worker.engine.caller.stats
    return {
        "pid": os.getpid(),
        "owner": worker.owner,
        "phase": phase,
        "running": worker.running,
        "worker": asdict(worker.counts),
        "sagas": asdict(worker.engine.stats),
        "store": asdict(worker.store.stats),  # this worker's log commits and writes
        "calls": {**asdict(calls), "retries": calls.retries},
        "faults": dict(injector.counts) if injector else None,
    }


async def run_worker(settings: WorkerSettings, err: TextIO) -> WorkerCounts:
    """Open everything, work until SIGINT/SIGTERM, stop gracefully, close everything."""

    telemetry = EngineTelemetry(settings.telemetry, worker=settings.worker_id)
    events = telemetry.events

    def log(message: str) -> None:
        if events is not None:
            events.message(message)
            return
        err.write(f"ordersaga worker {settings.worker_id}: {message}\n")
        err.flush()

    try:
        return await _open_and_serve(settings, telemetry, log)
    finally:
        telemetry.close()


async def _open_and_serve(
    settings: WorkerSettings, telemetry: EngineTelemetry, log: Callable[[str], None]
) -> WorkerCounts:
    store = await open_pg_store(settings.store_url, "ordersaga worker")
    transport: Transport | None = None
    wakeup: Wakeup | None = None
    try:
        await store.lock_executors(worker=True)
        http = await connect_http_services(
            settings.services, settings.http, lambda m: log(f"warning: {m}")
        )
        transport = http
        await bind_deployment(store, await http_members(http))
        injector = None
        if settings.fault_rate > 0:
            injector = FaultInjector(transport, FaultSettings(settings.fault_rate, settings.seed))
            transport = injector
        engine = SagaEngine(
            store,
            transport,
            [order_saga(CardVault(settings.data_key or b"")), *settings.sagas],
            rng=random.Random(settings.seed),
            settings=settings.engine,
            owner=settings.worker_id,
            observer=telemetry.observer,
        )
        telemetry.attach(engine)
        try:
            wakeup = await Wakeup.open(settings.store_url, [WORK_CHANNEL])
        except StorageError as exc:
            log(f"warning: {exc}; polling every {settings.poll:g} s instead")
        worker = Worker(
            settings,
            store,
            engine,
            wakeup=wakeup,
            log=log,
            events=telemetry.events,
            # Only the order saga's services are known before a claim; a user saga (--saga)
            # builds its calls from its input, so it may need only some of the given services.
            # Its worker claims regardless; a saga stalled by an outage goes back to the pool
            # (cluster.stalls).
            health=None
            if settings.sagas
            else _health_check(http, settings, store.database, lambda: bool(engine.caller.stalled)),
        )
        async with telemetry.serving(engine, extra=[_worker_metrics(worker, injector)]) as url:
            if url is not None:
                log(f"serving metrics at {url}")
            pruning = None if settings.retention is None else PruneSettings(settings.retention)
            async with (
                registered(store, settings.worker_id, log),
                periodic_prune(store, {}, pruning, warn=log),
            ):
                counts = await _serve(worker, injector, settings, log)
        if worker.fenced is not None:
            raise ExecutorFenced(worker.fenced)
        if worker.refused is not None:
            raise AccessRefused(worker.refused)
        return counts
    finally:
        if wakeup is not None:
            await wakeup.close()
        try:
            if transport is not None:
                await transport.close()  # late deliveries land first
        finally:
            await store.close()


def _worker_metrics(worker: Worker, injector: FaultInjector | None) -> Callable[[], Any]:
    def collect() -> Any:
        from ordersaga.cluster.metrics import worker_families

        return worker_families(worker.counts, worker.running, injector)

    return collect


async def _serve(
    worker: Worker,
    injector: FaultInjector | None,
    settings: WorkerSettings,
    log: Callable[[str], None],
) -> WorkerCounts:
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, worker.stop)  # only in the main thread
            handled.append(sig)

    async def report() -> None:
        while settings.stats_file is not None:
            _write_stats(settings.stats_file, _snapshot(worker, injector, "running"))
            await asyncio.sleep(0.25)

    reporter = asyncio.create_task(report())
    log(
        f"ready (concurrency {settings.concurrency}, lease {settings.lease:g} s"
        f"{f', fault rate {settings.fault_rate:g}' if settings.fault_rate else ''})"
    )
    try:
        counts = await worker.run()
    finally:
        reporter.cancel()
        for sig in handled:
            loop.remove_signal_handler(sig)
    if settings.stats_file is not None:
        _write_stats(settings.stats_file, _snapshot(worker, injector, "stopped"))
    log(
        f"stopped: claimed {counts.claimed} ({counts.taken_over} taken over),"
        f" confirmed {counts.confirmed}, failed {counts.failed}, lost {counts.lost},"
        f" released {counts.released}"
    )
    return counts

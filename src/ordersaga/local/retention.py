"""Retention: ``ordersaga prune`` and the periodic prune of long-running processes.

One pass does two things, each in small transactions:

1. **The saga log** compacts every finished saga (confirmed or failed, not flagged for
   attention) that ended more than ``older_than`` ago to its compact record — id, fingerprint,
   outcome, reason, decided-at — so a resubmitted order still replays and a reused id still
   fails; its input and step records go (:meth:`ordersaga.saga.store.SagaStore.prune`).
2. **Each service database given** loses the resource rows and idempotency records of the same
   finished sagas, but never before the message-age limit plus its margin has passed since the
   saga ended (and each row is that old too), whatever ``older_than`` says: the argument is in
   :mod:`ordersaga.participant.retention`. What the deleted rows counted (items sold, amounts
   captured) is carried forward for the audit.

Then the files give their space back (SQLite: incremental vacuum; PostgreSQL: autovacuum, which
the small batches let keep up). Running passes concurrently, or next to the executors, is safe:
only finished sagas are touched, and each step is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ordersaga.db import Database, open_database
from ordersaga.errors import ConfigError
from ordersaga.local.datadir import DataDir
from ordersaga.orders.order_saga import RESOURCE_STEPS
from ordersaga.participant.retention import PrunedRows, prune_resources
from ordersaga.protocol.messages import MAX_MESSAGE_AGE, MESSAGE_AGE_MARGIN
from ordersaga.saga.store import SagaStore, open_store
from ordersaga.services.retention import RETENTION

__all__ = [
    "DEFAULT_RETENTION",
    "PruneReport",
    "PruneSettings",
    "periodic_prune",
    "prune",
    "prune_locations",
]

#: How long a finished saga keeps everything (``--retention``, ``prune --older-than``): 7 days.
DEFAULT_RETENTION = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class PruneSettings:
    """One pass's parameters (validated). ``max_message_age`` must be the services' own limit."""

    older_than: float = DEFAULT_RETENTION
    dry_run: bool = False
    max_message_age: float = MAX_MESSAGE_AGE
    margin: float = MESSAGE_AGE_MARGIN
    batch_size: int = 500

    def __post_init__(self) -> None:
        if not self.older_than >= 0 or not self.max_message_age > 0 or not self.margin >= 0:
            raise ValueError("retention ages must be non-negative (the message-age limit positive)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    def log_cutoff(self, now: float) -> float:
        return now - self.older_than

    def service_cutoff(self, now: float) -> float:
        return now - max(self.older_than, self.max_message_age + self.margin)


@dataclass(slots=True)
class PruneReport:
    """What a pass did (or would do, ``dry_run``)."""

    dry_run: bool
    sagas: int = 0
    steps: int = 0
    services: dict[str, PrunedRows] = field(default_factory=dict)
    bytes_before: int | None = None  # the data dir's files (SQLite only)
    bytes_after: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "sagas": self.sagas,
            "steps": self.steps,
            "services": {
                name: {"resources": rows.resources, "records": rows.records}
                for name, rows in self.services.items()
            },
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
        }

    def summary(self) -> str:
        verb = "would compact" if self.dry_run else "compacted"
        parts = [f"{verb} {self.sagas} finished sagas ({self.steps} step records)"]
        for name, rows in self.services.items():
            parts.append(f"{name} {rows.resources} resources, {rows.records} records")
        line = "; ".join(parts)
        if self.bytes_before is not None and self.bytes_after is not None:
            line += f"; data dir {_size(self.bytes_before)} -> {_size(self.bytes_after)}"
        return line


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} B"


async def prune(
    store: SagaStore,
    service_dbs: Mapping[str, Database],
    settings: PruneSettings,
    now: float,
) -> PruneReport:
    """One retention pass at time ``now`` over ``store`` and ``service_dbs`` (see the module)."""
    report = PruneReport(settings.dry_run)
    log = await store.prune(
        settings.log_cutoff(now), batch_size=settings.batch_size, dry_run=settings.dry_run
    )
    report.sagas, report.steps = log.sagas, log.steps
    cutoff = settings.service_cutoff(now)
    for name, db in service_dbs.items():
        report.services[name] = await _prune_service(store, name, db, cutoff, settings)
    return report


async def _prune_service(
    store: SagaStore, name: str, db: Database, cutoff: float, settings: PruneSettings
) -> PrunedRows:
    spec, step = RETENTION[name], RESOURCE_STEPS[name]
    pruned = PrunedRows()

    async def visit(saga_ids: Sequence[str]) -> None:
        refs = [f"{saga_id}:{step}" for saga_id in saga_ids]
        pruned.add(await prune_resources(db, spec, refs, cutoff, dry_run=settings.dry_run))

    await store.sweep(
        f"service:{name}",
        cutoff,
        visit,
        batch_size=settings.batch_size,
        dry_run=settings.dry_run,
    )
    if not settings.dry_run:
        await db.reclaim()  # cheap when there is nothing to give back
    return pruned


async def prune_locations(
    data_dir: Path,
    settings: PruneSettings,
    *,
    store_url: str | None = None,
    service_urls: Mapping[str, str] | None = None,
    now: float | None = None,
) -> PruneReport:
    """``ordersaga prune``: a pass over a data dir, or over ``store_url`` and ``service_urls``.

    With ``store_url`` only the service databases named in ``service_urls`` are pruned (a
    distributed setup's databases are not in any data dir); without it, the data dir's saga log
    and its three service files, which must all exist (nothing is created).
    """
    layout = DataDir(data_dir)
    service_urls = dict(service_urls or {})
    sqlite_dir = store_url is None
    if sqlite_dir:
        if not layout.exists():
            raise ConfigError(
                f"{data_dir} is not an ordersaga data dir (no {layout.meta_path.name})"
            )
        locations = layout.locations()
        store_url = locations.store_url
        service_urls = {**locations.service_urls, **service_urls}
        for url in (store_url, *service_urls.values()):
            path = _sqlite_path(url)
            if path is not None and not path.exists():
                raise ConfigError(f"{path}: missing from the data dir {data_dir}")
    assert store_url is not None
    before = _dir_bytes(data_dir) if sqlite_dir else None
    store = await open_store(store_url)
    dbs: dict[str, Database] = {}
    try:
        for name, url in service_urls.items():
            dbs[name] = await open_database(url)
        report = await prune(store, dbs, settings, time.time() if now is None else now)
    finally:
        await store.close()
        for db in dbs.values():
            await db.close()
    if sqlite_dir:
        report.bytes_before, report.bytes_after = before, _dir_bytes(data_dir)
    return report


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def _dir_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.iterdir() if p.is_file())


@contextlib.asynccontextmanager
async def periodic_prune(
    store: SagaStore,
    service_dbs: Mapping[str, Database],
    settings: PruneSettings | None,
    *,
    every: float | None = None,
    warn: Callable[[str], None] = lambda _m: None,
) -> AsyncIterator[None]:
    """Run a pass every ``every`` seconds (default: a tenth of the retention, 10 s to 1 h)
    while the block runs; ``settings=None`` (``--retention off``) runs none.

    A pass that fails (say the database is briefly unavailable) is reported through ``warn`` and
    tried again next time: retention must never stop the process it runs in.
    """
    if settings is None:
        yield
        return
    interval = every if every is not None else min(3600.0, max(10.0, settings.older_than / 10))

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await prune(store, service_dbs, settings, time.time())
            except Exception as exc:  # reported, retried at the next tick
                warn(f"prune failed, will retry: {exc}")

    task = asyncio.create_task(loop(), name="ordersaga-prune")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

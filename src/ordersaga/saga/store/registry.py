"""Worker liveness on a shared PostgreSQL saga log: who is registered, who still beats.

A worker registers when it starts (``workers`` row: id, host, pid, start), then heartbeats every
:data:`HEARTBEAT_EVERY` seconds and marks itself stopped when it stops cleanly. A worker killed
outright stops beating: it counts as live no longer once its last heartbeat is more than
:data:`STALE_AFTER` seconds old. Times come from the database clock, like the leases, so the
machines' clocks need not agree. The registry only informs people and submitters; it never
decides who may execute a saga (leases and fencing do, see :mod:`.postgres`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ordersaga.saga.store.model import UNFINISHED
from ordersaga.saga.store.postgres import PostgresSagaStore
from ordersaga.saga.store.schema import has_table
from ordersaga.saga.store.sqlbatch import placeholders

__all__ = ["HEARTBEAT_EVERY", "STALE_AFTER", "WorkerInfo", "WorkerRegistry"]

HEARTBEAT_EVERY = 2.0
STALE_AFTER = 10.0
_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    worker_id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    stopped_at: float | None
    live: bool
    held: int  # unfinished sagas whose lease it holds now
    now: float  # the database clock when this was read

    @property
    def state(self) -> str:
        return "live" if self.live else "stopped" if self.stopped_at else "silent"


class WorkerRegistry:
    """The ``workers`` table of ``store`` (see the module doc)."""

    def __init__(self, store: PostgresSagaStore) -> None:
        self._db = store.database

    async def register(self, worker_id: str, host: str, pid: int) -> None:
        """Announce ``worker_id`` (again: a restarted worker of the same id takes the row)."""
        await self._db.fetchone(
            "INSERT INTO workers (worker_id, host, pid, started_at, heartbeat_at, stopped_at)"
            f" VALUES (?, ?, ?, {_NOW}, {_NOW}, NULL) ON CONFLICT (worker_id) DO UPDATE SET"
            " host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,"
            " heartbeat_at = excluded.heartbeat_at, stopped_at = NULL RETURNING worker_id",
            worker_id,
            host,
            pid,
        )

    async def beat(self, worker_id: str) -> None:
        await self._db.fetchone(
            f"UPDATE workers SET heartbeat_at = {_NOW} WHERE worker_id = ? RETURNING worker_id",
            worker_id,
        )

    async def stopped(self, worker_id: str) -> None:
        await self._db.fetchone(
            f"UPDATE workers SET stopped_at = {_NOW} WHERE worker_id = ? RETURNING worker_id",
            worker_id,
        )

    async def workers(self, *, include_gone: bool = True) -> list[WorkerInfo]:
        """Every registered worker, live ones first, then by id (``include_gone=False``: the
        live ones only)."""
        if not await has_table(self._db, "workers"):
            return []
        statuses = [s.value for s in UNFINISHED]
        rows = await self._db.fetchall(
            f"SELECT w.*, {_NOW} AS now, (SELECT COUNT(*) FROM sagas s WHERE s.owner ="
            f" w.worker_id AND s.lease_until > {_NOW}"
            f" AND s.status IN ({placeholders(len(statuses))})) AS held FROM workers w",
            *statuses,
        )
        infos = [
            WorkerInfo(
                row["worker_id"],
                row["host"],
                int(row["pid"]),
                float(row["started_at"]),
                float(row["heartbeat_at"]),
                None if row["stopped_at"] is None else float(row["stopped_at"]),
                row["stopped_at"] is None and row["now"] - row["heartbeat_at"] <= STALE_AFTER,
                int(row["held"]),
                float(row["now"]),
            )
            for row in rows
        ]
        infos.sort(key=lambda w: (not w.live, w.worker_id))
        return infos if include_gone else [w for w in infos if w.live]

"""The metric families of a worker and of the order API, read at scrape time.

Imports ``prometheus_client``: only processes that serve ``/metrics`` load it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.metrics_core import Metric

from ordersaga.saga.store.base import SagaStatus
from ordersaga.telemetry.exposition import counter, gauge
from ordersaga.transport.faults import FaultInjector

__all__ = ["api_families", "worker_families"]


class WorkerCounts(Protocol):
    """What :class:`ordersaga.cluster.worker.WorkerCounts` holds (read only)."""

    @property
    def claimed(self) -> int: ...
    @property
    def taken_over(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def released(self) -> int: ...
    @property
    def errors(self) -> int: ...
    @property
    def claims(self) -> int: ...
    @property
    def renewals(self) -> int: ...


def worker_families(
    counts: WorkerCounts, running: int, injector: FaultInjector | None
) -> Iterator[Metric]:
    """A worker's claims, takeovers and leases (what :class:`WorkerCounts` keeps)."""
    yield counter("ordersaga_worker_sagas_claimed", "Sagas claimed from the log.", counts.claimed)
    yield counter(
        "ordersaga_lease_takeovers",
        "Claimed sagas that another runner had started (its lease lapsed): taken over.",
        counts.taken_over,
    )
    yield counter(
        "ordersaga_worker_sagas_lost",
        "Sagas stopped here because another worker took them over.",
        counts.lost,
    )
    yield counter(
        "ordersaga_worker_sagas_released",
        "Sagas handed back unfinished when stopping.",
        counts.released,
    )
    yield counter(
        "ordersaga_worker_saga_errors", "Sagas stopped by an error (retried later).", counts.errors
    )
    yield counter("ordersaga_worker_claims", "Claim transactions.", counts.claims)
    yield counter("ordersaga_worker_lease_renewals", "Lease renewal transactions.", counts.renewals)
    yield gauge(
        "ordersaga_worker_sagas_running", "Sagas this worker holds and drives now.", running
    )
    if injector is not None:
        yield counter(
            "ordersaga_injected_faults",
            "Faults injected into service calls (--fault-rate), by kind.",
            {(kind,): float(n) for kind, n in injector.counts.items()},
            ["kind"],
        )


def api_families(
    orders: Mapping[str, int], statuses: Mapping[SagaStatus, int] | None
) -> Iterator[Metric]:
    """The order API's submissions by result, and the sagas in the log by status."""
    yield counter(
        "ordersaga_api_orders",
        "POST /orders requests by result (accepted, replayed, conflict, rejected, ...).",
        {(result,): float(n) for result, n in orders.items()},
        ["result"],
    )
    if statuses is not None:
        yield gauge(
            "ordersaga_log_sagas",
            "Sagas in the saga log by status (read from the log at scrape time).",
            {(status.value,): float(statuses.get(status, 0)) for status in SagaStatus},
            ["status"],
        )

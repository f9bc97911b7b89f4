"""The dashboard's ``GET /metrics``: its requests, its operator actions, the log's sagas.

Imports ``prometheus_client`` (through :mod:`ordersaga.telemetry.exposition`): loaded when the
dashboard app is built.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import Metric

from ordersaga.saga.store.base import SagaStatus
from ordersaga.telemetry.exposition import MetricsRegistry, counter, gauge

__all__ = ["DashboardCounts", "dashboard_registry"]


class DashboardCounts:
    """What the dashboard counts as it serves (read at scrape time)."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()  # by route: overview, list, saga, api, ...
        self.actions: Counter[tuple[str, str]] = Counter()  # (action, result)
        self.statuses: Mapping[SagaStatus, int] | None = None  # read from the log when scraped


def _families(counts: DashboardCounts) -> Iterator[Metric]:
    yield counter(
        "ordersaga_dashboard_requests",
        "Dashboard requests by route (page views, JSON refreshes, sign-ins).",
        {(route,): float(n) for route, n in counts.requests.items()},
        ["route"],
    )
    yield counter(
        "ordersaga_dashboard_operator_actions",
        "Operator actions asked for in the dashboard, by action and result.",
        {key: float(n) for key, n in counts.actions.items()},
        ["action", "result"],
    )
    if counts.statuses is not None:
        yield gauge(
            "ordersaga_log_sagas",
            "Sagas in the saga log by status (read from the log at scrape time).",
            {(s.value,): float(counts.statuses.get(s, 0)) for s in SagaStatus},
            ["status"],
        )


def dashboard_registry(counts: DashboardCounts) -> MetricsRegistry:
    registry = MetricsRegistry()
    registry.add(lambda: _families(counts))
    return registry

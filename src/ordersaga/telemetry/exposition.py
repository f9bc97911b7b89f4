"""A per-process Prometheus registry, rendered in the text format at ``GET /metrics``.

Each part of a process adds a *collector function* (``() -> iterable of metric families``) that
reads the counters the code keeps anyway at scrape time, so counting costs the hot path nothing
more than the ``+= 1`` it already does. Every family is named ``ordersaga_*`` (CONTRACT section
7) and follows Prometheus's conventions: base units, ``_total`` counters.

The registry is an object, never the ``prometheus_client`` default registry, so two apps (or
two tests) in one process never see each other's metrics. :func:`metrics_server` serves one on
the caller's event loop (``worker`` and ``run`` with ``--metrics-port``): a scrape runs between
two steps of the loop, so it reads counters that no coroutine is half-way through changing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from ordersaga.errors import ConfigError
from ordersaga.telemetry.histogram import Histogram

__all__ = [
    "CONTENT_TYPE",
    "Collect",
    "MetricsRegistry",
    "counter",
    "gauge",
    "group_commit_family",
    "histogram_family",
    "metrics_server",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: A series' label values, in the order of its family's label names.
K = TypeVar("K", bound=tuple[str, ...])
F = TypeVar("F", CounterMetricFamily, GaugeMetricFamily)
#: A collector function: the metric families of one part of the process, read when scraped.
Collect = Callable[[], Iterable[Metric]]


class _FunctionCollector(Collector):
    def __init__(self, collect: Collect) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


class MetricsRegistry:
    """The metric families one process exposes (its own registry, see the module doc)."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        if process:  # CPU, memory, file descriptors, as ordersaga_process_*
            ProcessCollector(namespace="ordersaga", registry=self.registry)

    def add(self, collect: Collect) -> None:
        self.registry.register(_FunctionCollector(collect))

    def render(self) -> bytes:
        """The Prometheus text format (version 0.0.4) of every family."""
        return generate_latest(self.registry)


def counter(
    name: str,
    documentation: str,
    values: Mapping[tuple[str, ...], float] | float,
    labels: Sequence[str] = (),
) -> CounterMetricFamily:
    """A counter family; ``name`` without ``_total`` (the exposition adds it)."""
    return _filled(CounterMetricFamily(name, documentation, labels=list(labels)), values)


def gauge(
    name: str,
    documentation: str,
    values: Mapping[tuple[str, ...], float] | float,
    labels: Sequence[str] = (),
) -> GaugeMetricFamily:
    return _filled(GaugeMetricFamily(name, documentation, labels=list(labels)), values)


def _filled(family: F, values: Mapping[tuple[str, ...], float] | float) -> F:
    """``family`` with one sample per labelled value (sorted), or its one unlabelled value."""
    if isinstance(values, Mapping):
        for key, value in sorted(values.items()):
            family.add_metric(list(key), value)
    else:
        family.add_metric([], values)
    return family


def histogram_family(
    name: str,
    documentation: str,
    histograms: Mapping[K, Histogram],
    labels: Sequence[str] = (),
) -> HistogramMetricFamily:
    """A histogram family from :class:`Histogram` values (``name`` ends with its unit)."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for key, histogram in sorted(histograms.items()):
        family.add_metric(list(key), histogram.cumulative(), histogram.sum)
    return family


def group_commit_family(histograms: Mapping[tuple[str], Histogram]) -> HistogramMetricFamily:
    """Writes per group commit, one series per committer (the saga log, each service)."""
    return histogram_family(
        "ordersaga_group_commit_batch_size",
        "Writes carried by one group commit (one transaction), by committer.",
        histograms,
        ["committer"],
    )


@contextlib.asynccontextmanager
async def metrics_server(
    registry: MetricsRegistry, port: int, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Serve ``GET /metrics`` on ``host:port`` inside the block; yields its URL.

    Port 0 picks a free port. A port that cannot be bound is a :class:`ConfigError`.
    """

    async def metrics(_request: web.Request) -> web.Response:
        body = registry.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {host}: {exc.strerror or exc}"
            ) from None
        bound = runner.addresses[0][1] if runner.addresses else port
        yield f"http://{host}:{bound}/metrics"
    finally:
        await runner.cleanup()

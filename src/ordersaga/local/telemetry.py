"""One process's telemetry around its engine: metrics, structured events, traces.

:class:`EngineTelemetry` gives the engine its observer — always the cheap
:class:`~ordersaga.saga.observe.EngineMetrics` (plain counters and histograms), plus the event
log in ``--log-format json`` and the saga spans when tracing is configured — and, with
``--metrics-port``, serves them at ``GET /metrics`` on loopback (``run`` and ``worker``).
``prometheus_client`` is loaded only then.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordersaga.saga.events import EventLog
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.observe import EngineMetrics, SagaObserver, combine
from ordersaga.saga.spans import SagaSpans
from ordersaga.telemetry.tracing import Tracing, TracingSettings, open_tracing

__all__ = ["EngineTelemetry", "TelemetrySettings"]


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """What the command line asked for (read once, at the edge)."""

    metrics_port: int | None = None  # serve GET /metrics on 127.0.0.1:PORT (0: a free port)
    metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # text | json (json: one event per line, see saga.events)
    tracing: TracingSettings = field(default_factory=TracingSettings)


class EngineTelemetry:
    """The observers of one engine, and the metrics endpoint that exposes them."""

    def __init__(
        self,
        settings: TelemetrySettings | None = None,
        *,
        worker: str | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings or TelemetrySettings()
        self.metrics = EngineMetrics()
        self.events = EventLog(worker) if self.settings.log_format == "json" else None
        self.tracing = tracing or open_tracing(self.settings.tracing)
        observers: list[SagaObserver] = [self.metrics]
        if self.events is not None:
            observers.append(self.events)
        if self.tracing is not None:
            observers.append(SagaSpans(self.tracing))
        self.observer = combine(observers)

    def attach(self, engine: SagaEngine) -> None:
        """Listen to the engine's breakers (their openings and closings are events)."""
        if self.events is not None:
            engine.breakers.listen(self.events.breaker)

    @contextlib.asynccontextmanager
    async def serving(
        self,
        engine: SagaEngine,
        participants: Mapping[str, object] | None = None,
        extra: Sequence[Callable[[], Iterable[Any]]] = (),
    ) -> AsyncIterator[str | None]:
        """Serve the engine's metrics, the in-process ``participants``' and the ``extra``
        collectors inside the block, when a metrics port was asked for; yields the endpoint's
        URL, or None."""
        port = self.settings.metrics_port
        if port is None:
            yield None
            return
        from ordersaga.participant.metrics import kit_batch_sizes, kit_families
        from ordersaga.saga.metrics import engine_families, log_batch_sizes
        from ordersaga.telemetry.exposition import (
            MetricsRegistry,
            group_commit_family,
            metrics_server,
        )

        def committers() -> Iterable[Any]:
            sizes = {**log_batch_sizes(engine), **kit_batch_sizes(participants or {})}
            return [group_commit_family(sizes)]

        registry = MetricsRegistry()
        registry.add(lambda: engine_families(engine, self.metrics))
        registry.add(committers)
        if participants:
            registry.add(lambda: kit_families(participants))
        for collect in extra:
            registry.add(collect)
        async with metrics_server(registry, port, self.settings.metrics_host) as url:
            yield url

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.close()

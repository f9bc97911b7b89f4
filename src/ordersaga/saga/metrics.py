"""The engine's metric families, read at scrape time (imports ``prometheus_client``).

``engine_families(engine, metrics)`` reads what the engine counts anyway (:class:`EngineStats`,
the caller's :class:`CallStats`, the breakers, the saga log's commits and group-commit batches)
and what :class:`~ordersaga.saga.observe.EngineMetrics` keeps (per-step histograms and counters).
Only processes that serve ``/metrics`` import this module.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import Metric

from ordersaga.saga.breaker import BreakerState
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.observe import EngineMetrics
from ordersaga.telemetry.exposition import counter, gauge, histogram_family
from ordersaga.telemetry.histogram import Histogram

__all__ = ["engine_families", "log_batch_sizes"]


def engine_families(engine: SagaEngine, metrics: EngineMetrics) -> Iterator[Metric]:
    """Every ``ordersaga_*`` family of one engine (see the README's Telemetry section)."""
    stats = engine.stats
    calls = engine.caller.stats
    yield counter("ordersaga_sagas_started", "Sagas created and started here.", stats.started)
    yield counter(
        "ordersaga_sagas_resumed",
        "Unfinished sagas picked up from the log (recovery, a claim, a takeover).",
        stats.resumed,
    )
    yield counter(
        "ordersaga_sagas_completed",
        "Sagas this process brought to their end, by outcome.",
        {("confirmed",): stats.confirmed, ("failed",): stats.failed},
        ["outcome"],
    )
    yield counter(
        "ordersaga_compensations",
        "Compensations applied (one per undone step).",
        stats.compensations,
    )
    yield counter(
        "ordersaga_sagas_flagged",
        "Times a saga was flagged for attention (a compensation or confirmation kept failing).",
        stats.needs_attention,
    )
    running = engine.running
    yield gauge(
        "ordersaga_sagas_in_flight", "Sagas being driven by this process now.", len(running)
    )
    metrics.flagged.intersection_update(running)
    yield gauge(
        "ordersaga_sagas_needing_attention",
        "Sagas driven here now that are flagged for attention.",
        len(metrics.flagged),
    )
    yield counter(
        "ordersaga_step_calls",
        "Step calls by step, phase and outcome (succeeded, refused, unknown).",
        metrics.step_calls(),
        ["step", "phase", "outcome"],
    )
    yield counter(
        "ordersaga_step_attempts",
        "Attempts of step calls by step, phase and result (ok, refused, error: no answer).",
        metrics.step_attempts(),
        ["step", "phase", "result"],
    )
    yield counter("ordersaga_step_retries", "Attempts beyond each call's first.", calls.retries)
    yield counter("ordersaga_step_probes", "Status probes sent to services.", calls.probes)
    yield histogram_family(
        "ordersaga_step_duration_seconds",
        "One step call, retries and probe included, by step and phase.",
        metrics.step_seconds(),
        ["step", "phase"],
    )
    yield histogram_family(
        "ordersaga_saga_duration_seconds",
        "A saga from its creation in the log to its end, by outcome.",
        metrics.saga_seconds,
        ["outcome"],
    )
    breakers = engine.breakers.all()
    yield gauge(
        "ordersaga_breaker_state",
        "1 for each service's circuit breaker's current state (closed, open, half_open).",
        {
            (b.name, state.value): float(b.state is state)
            for b in breakers
            for state in BreakerState
        },
        ["service", "state"],
    )
    yield counter(
        "ordersaga_breaker_opened",
        "Times each service's circuit breaker opened.",
        {(b.name,): b.opened for b in breakers},
        ["service"],
    )
    store = engine.store
    yield counter(
        "ordersaga_saga_log_commits", "Durable commits of the saga log.", store.stats.commits
    )
    yield counter("ordersaga_saga_log_writes", "Writes to the saga log.", store.stats.writes)


def log_batch_sizes(engine: SagaEngine) -> dict[tuple[str], Histogram]:
    """The saga log's group-commit batch sizes, under the committer label ``saga_log``."""
    sizes = getattr(engine.store, "batch_sizes", None)
    return {("saga_log",): sizes} if isinstance(sizes, Histogram) else {}

"""The engine's observers: metrics as plain counters, events as structured records."""

from __future__ import annotations

import io
import json
import logging
import random

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ordersaga.protocol.messages import Command, Phase
from ordersaga.saga.breaker import Breakers, BreakerSettings, BreakerState
from ordersaga.saga.callresult import CallOutcome, CallStatus
from ordersaga.saga.events import EventLog
from ordersaga.saga.executor import SagaEngine
from ordersaga.saga.observe import ATTEMPT_RESULTS, CALL_OUTCOMES, EngineMetrics, Fanout
from ordersaga.saga.spans import SagaSpans
from ordersaga.saga.store.memory import MemoryStore
from ordersaga.saga.testing import FakeClock
from ordersaga.telemetry.logs import JsonFormatter
from ordersaga.telemetry.tracing import Tracing
from tests.promtool import parse_samples, promtool_check

from .fakes import Ledger, ScriptedTransport
from .test_executor import make_definition


def _engine(refuse_c: bool) -> tuple[SagaEngine, EngineMetrics, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"ordersaga.test.events.{refuse_c}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    failures = {"s1:a:action": 2}

    def fail(command: Command) -> str | None:
        left = failures.get(command.key, 0)
        if left:
            failures[command.key] = left - 1
            return "request"
        return None

    ledgers = {n: Ledger(n, (lambda c: refuse_c) if n == "C" else (lambda c: False)) for n in "ABC"}
    metrics = EngineMetrics()
    events = EventLog("w1", logger)
    clock = FakeClock()  # the store's too: saga durations on one clock
    engine = SagaEngine(
        MemoryStore(clock=clock),
        ScriptedTransport(ledgers, fail),
        [make_definition()],
        clock=clock,
        rng=random.Random(3),
        observer=Fanout([metrics, events]),
    )
    engine.breakers.listen(events.breaker)
    return engine, metrics, stream


async def test_metrics_count_attempts_by_result_and_sagas_by_outcome() -> None:
    engine, metrics, _ = _engine(refuse_c=True)
    clock = engine.caller._clock
    assert isinstance(clock, FakeClock)
    result = await engine.start("trip", "s1", {}, "fp")
    assert result.status.value == "failed"
    # Durations on the engine's clock: a's two backoffs are all the time that passed.
    waited = sum(clock.sleeps)
    assert waited > 0 and metrics.step_seconds()[("a", "action")].sum == pytest.approx(waited)
    assert metrics.step_seconds()[("b", "action")].sum == 0.0
    assert metrics.saga_seconds[("failed",)].sum == pytest.approx(waited)
    attempts = metrics.step_attempts()
    assert attempts[("a", "action", "error")] == 2  # two lost requests, then ok
    assert attempts[("a", "action", "ok")] == 1
    assert attempts[("c", "action", "refused")] == 1
    assert attempts[("a", "compensate", "ok")] == 1
    assert ("c", "action", "error") not in attempts
    assert metrics.step_calls()[("c", "action", "refused")] == 1
    assert metrics.step_seconds()[("a", "action")].count == 1
    assert metrics.saga_seconds[("failed",)].count == 1

    from ordersaga.saga.metrics import engine_families
    from ordersaga.telemetry.exposition import MetricsRegistry

    registry = MetricsRegistry()
    registry.add(lambda: engine_families(engine, metrics))
    text = registry.render().decode()
    promtool_check(text, "the engine's families")
    samples = parse_samples(text)
    assert samples['ordersaga_sagas_completed_total{outcome="failed"}'] == 1
    assert samples["ordersaga_compensations_total"] == 2
    assert samples["ordersaga_step_retries_total"] == 2
    assert samples['ordersaga_step_attempts_total{phase="action",result="error",step="a"}'] == 2
    assert samples['ordersaga_saga_duration_seconds_count{outcome="failed"}'] == 1


async def test_events_follow_a_saga_by_its_order_id() -> None:
    engine, _, stream = _engine(refuse_c=True)
    await engine.start("trip", "s1", {}, "fp")
    await engine.start("trip", "s2", {}, "fp2")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    s1 = [(e["event"], e.get("step"), e.get("phase")) for e in events if e["order_id"] == "s1"]
    assert s1 == [
        ("step", "a", "action"),
        ("step", "b", "action"),
        ("step", "c", "action"),
        ("decision", None, None),
        ("compensation", "b", "compensate"),
        ("compensation", "a", "compensate"),
        ("saga_end", None, None),
    ]
    first = next(e for e in events if e["order_id"] == "s1")
    assert first["attempt"] == 3 and first["worker"] == "w1" and first["status"] == "succeeded"
    assert all(e["worker"] == "w1" for e in events)


def test_breakers_tell_their_listener_when_they_open_and_close() -> None:
    seen: list[tuple[str, BreakerState]] = []
    breakers = Breakers(FakeClock(), BreakerSettings(threshold=2))
    early = breakers["inventory"]
    breakers.listen(lambda name, state: seen.append((name, state)))
    early.record_failure()
    early.record_failure()
    early.record_failure()  # already open: said once
    breakers["payment"].record_success()  # closed already: nothing to say
    early.record_success()
    assert seen == [("inventory", BreakerState.OPEN), ("inventory", BreakerState.CLOSED)]


async def test_a_saga_failed_before_any_step_logs_a_reject_decision_and_its_end() -> None:
    engine, metrics, stream = _engine(refuse_c=False)
    await engine.record_failed("trip", "s9", {}, "fp", "bad input")
    await engine.record_failed("trip", "s9", {}, "fp", "bad input")  # a replay logs nothing
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e.get("decision"), e.get("outcome"), e["reason"]) for e in events] == [
        ("decision", "reject", None, "bad input"),
        ("saga_end", None, "failed", "bad input"),
    ]
    assert metrics.saga_seconds[("failed",)].count == 1


async def test_spans_name_the_saga_and_each_call_with_their_ids() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ledgers = {n: Ledger(n, lambda c: False) for n in "ABC"}
    engine = SagaEngine(
        MemoryStore(),
        ScriptedTransport(ledgers),
        [make_definition()],
        clock=FakeClock(),
        observer=SagaSpans(Tracing(provider)),
    )
    await engine.start("trip", "s1", {}, "fp")
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert spans["saga trip"]["ordersaga.saga_id"] == "s1"
    assert spans["b action"] == {
        "ordersaga.saga_id": "s1",
        "ordersaga.step": "b",
        "ordersaga.phase": "action",
        "ordersaga.outcome": "succeeded",
        "ordersaga.attempts": 1,
    }
    assert spans["a_ok confirm"]["ordersaga.phase"] == "confirm"


def _counted_as_before(outcomes: list[CallOutcome]) -> tuple[list[int], list[int]]:
    """Calls by outcome and attempts by result, each call counted as the metrics always did."""
    calls, attempts = [0] * len(CALL_OUTCOMES), [0] * len(ATTEMPT_RESULTS)
    for outcome in outcomes:
        calls[list(CallStatus).index(outcome.status)] += 1
        last = {CallStatus.SUCCEEDED: 0, CallStatus.REFUSED: 1}.get(outcome.status)
        if outcome.probed or last is None:
            attempts[2] += outcome.attempts
        else:
            attempts[last] += 1
            attempts[2] += outcome.attempts - 1
    return calls, attempts


def test_step_metrics_count_plain_calls_as_every_other_call() -> None:
    rng = random.Random(7)
    outcomes = [
        CallOutcome(rng.choice(list(CallStatus)), attempts=rng.choice([1, 1, 2, 5]), probed=p)
        for p in (False, True)
        for _ in range(200)
    ] + [CallOutcome(CallStatus.SUCCEEDED)] * 50
    rng.shuffle(outcomes)
    metrics = EngineMetrics()
    for outcome in outcomes:
        metrics.called("s", "a", Phase.ACTION, outcome, 0.002)
    calls, attempts = _counted_as_before(outcomes)
    step = metrics.steps["a", Phase.ACTION]
    assert step.calls == calls and step.attempts == attempts
    assert step.seconds.count == len(outcomes)
    assert metrics.step_calls() == {
        ("a", "action", name): float(n) for name, n in zip(CALL_OUTCOMES, calls, strict=True) if n
    }
    by_result = zip(ATTEMPT_RESULTS, attempts, strict=True)
    assert metrics.step_attempts() == {
        ("a", "action", name): float(n) for name, n in by_result if n
    }

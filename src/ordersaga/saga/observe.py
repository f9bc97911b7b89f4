"""Observers: how metrics, structured logs and traces follow the engine without living in it.

The engine calls a :class:`SagaObserver` at five points, and nothing else of telemetry::

    stamp(saga_id, input)        a new saga is about to be created: the input to store
                                 (tracing adds the trace it belongs to; see saga.spans)
    driving(record)              around driving one saga in this process (a context manager)
    calling(saga_id, step, phase)   around one step call, retries and probe included
    called(saga_id, step, phase, outcome, seconds)   inside it, once the call has its outcome
    logged(record, what, steps)  a write to the saga log is durable (``what`` names it, like
                                 the crash points: "reserve.result", "decision.confirm", ...)

Hooks run inline on the hot path: they must be cheap, and must not raise (an observer that
fails must not fail a saga). Counters the engine keeps anyway (:class:`EngineStats`, the
caller's, the breakers') are read by collectors at scrape time, not pushed through here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ordersaga.protocol.messages import Phase
from ordersaga.saga.calls import CallOutcome, CallStatus
from ordersaga.saga.store.base import SagaRecord, StepRecord
from ordersaga.telemetry.histogram import LATENCY_SECONDS, SAGA_SECONDS, Histogram

__all__ = ["NOTHING", "EngineMetrics", "Fanout", "SagaObserver"]

#: The context manager that does nothing (reusable, reentrant).
NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()


class SagaObserver:
    """Every hook does nothing: subclass and override the ones you need (see the module doc)."""

    def stamp(self, saga_id: str, input: Mapping[str, Any]) -> Mapping[str, Any]:
        return input

    def driving(self, record: SagaRecord) -> AbstractContextManager[Any]:
        return NOTHING

    def calling(self, saga_id: str, step: str, phase: Phase) -> AbstractContextManager[Any]:
        return NOTHING

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        return None

    def logged(self, record: SagaRecord, what: str, steps: Sequence[StepRecord]) -> None:
        return None


class Fanout(SagaObserver):
    """Several observers as one, called in order (contexts nest in that order)."""

    def __init__(self, observers: Sequence[SagaObserver]) -> None:
        self.observers = tuple(observers)

    def stamp(self, saga_id: str, input: Mapping[str, Any]) -> Mapping[str, Any]:
        for observer in self.observers:
            input = observer.stamp(saga_id, input)
        return input

    @contextlib.contextmanager
    def driving(self, record: SagaRecord) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for observer in self.observers:
                stack.enter_context(observer.driving(record))
            yield

    @contextlib.contextmanager
    def calling(self, saga_id: str, step: str, phase: Phase) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for observer in self.observers:
                stack.enter_context(observer.calling(saga_id, step, phase))
            yield

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        for observer in self.observers:
            observer.called(saga_id, step, phase, outcome, seconds)

    def logged(self, record: SagaRecord, what: str, steps: Sequence[StepRecord]) -> None:
        for observer in self.observers:
            observer.logged(record, what, steps)


def combine(observers: Sequence[SagaObserver]) -> SagaObserver:
    """One observer for ``observers``: the only one itself, or a :class:`Fanout`."""
    if not observers:
        return SagaObserver()
    return observers[0] if len(observers) == 1 else Fanout(observers)


_OK, _REFUSED, _ERROR = "ok", "refused", "error"


class EngineMetrics(SagaObserver):
    """The engine's histograms and labelled counters, kept as plain numbers on the hot path.

    Per step call: its latency, its outcome, and its attempts by result. A call ends at its
    first definite answer (calls.py), so every attempt before the last got none (``error``: a
    transport error or "still in flight"), and the last got the outcome's answer — unless the
    outcome came from the probe, when every attempt was an ``error``.
    """

    def __init__(self) -> None:
        self.step_seconds: dict[tuple[str, str], Histogram] = {}
        self.step_calls: dict[tuple[str, str, str], int] = {}
        self.attempts: dict[tuple[str, str, str], int] = {}
        self.saga_seconds: dict[tuple[str], Histogram] = {}
        self.flagged: set[str] = set()  # sagas this process flagged for attention

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        key = (step, phase.value)
        histogram = self.step_seconds.get(key)
        if histogram is None:
            histogram = self.step_seconds[key] = Histogram(LATENCY_SECONDS)
        histogram.observe(seconds)
        status = outcome.status
        calls_key = (step, phase.value, status.value)
        self.step_calls[calls_key] = self.step_calls.get(calls_key, 0) + 1
        attempts = outcome.attempts
        failed = attempts
        if not outcome.probed and status is not CallStatus.UNKNOWN:
            failed -= 1
            last = (step, phase.value, _OK if status is CallStatus.SUCCEEDED else _REFUSED)
            self.attempts[last] = self.attempts.get(last, 0) + 1
        if failed:
            errors = (step, phase.value, _ERROR)
            self.attempts[errors] = self.attempts.get(errors, 0) + failed

    def logged(self, record: SagaRecord, what: str, steps: Sequence[StepRecord]) -> None:
        if record.status.terminal:
            self.flagged.discard(record.saga_id)
            key = (record.status.value,)
            histogram = self.saga_seconds.get(key)
            if histogram is None:
                histogram = self.saga_seconds[key] = Histogram(SAGA_SECONDS)
            histogram.observe(max(0.0, record.updated_at - record.created_at))
        elif record.needs_attention:
            self.flagged.add(record.saga_id)

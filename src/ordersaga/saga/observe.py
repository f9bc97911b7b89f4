"""Observers: how metrics, structured logs and traces follow the engine without living in it.

The engine calls a :class:`SagaObserver` at five points, and nothing else of telemetry::

    stamp(saga_id, input)        a new saga is about to be created: the input to store
                                 (tracing adds the trace it belongs to; see saga.spans)
    driving(record)              around driving one saga in this process (a context manager)
    calling(saga_id, step, phase)   around one step call, retries and probe included
    called(saga_id, step, phase, outcome, seconds)   inside it, once the call has its outcome
    logged(record, what, steps)  a write to the saga log is durable (``what`` names it, like
                                 the crash points: "reserve.result", "decision.confirm", ...);
                                 ``record``: the saga as the log holds it now (LoggedSaga)

Hooks run inline on the hot path: they must be cheap, and must not raise (an observer that
fails must not fail a saga). Counters the engine keeps anyway (:class:`EngineStats`, the
caller's, the breakers') are read by collectors at scrape time, not pushed through here.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ordersaga.protocol.messages import Phase
from ordersaga.saga.calls import CallOutcome, CallStatus
from ordersaga.saga.store.base import TERMINAL, SagaRecord, SagaStatus, StepRecord
from ordersaga.telemetry.histogram import LATENCY_SECONDS, SAGA_SECONDS, Histogram

__all__ = [
    "NOTHING",
    "EngineMetrics",
    "Fanout",
    "LoggedSaga",
    "SagaObserver",
    "StepMetrics",
    "combine",
]

#: The context manager that does nothing (reusable, reentrant).
NOTHING: AbstractContextManager[Any] = contextlib.nullcontext()


class LoggedSaga(Protocol):
    """What :meth:`SagaObserver.logged` reads of a saga: its record's head, as the log holds it
    once the write is durable.

    A :class:`SagaRecord`, or the engine's own view of the running saga (which the saga's later
    writes change in place, not a copy made for each write: read what you need during the
    call, keep no reference to it; its ``record`` would be one).
    """

    @property
    def saga_id(self) -> str: ...
    @property
    def status(self) -> SagaStatus: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def needs_attention(self) -> bool: ...
    @property
    def attention_reason(self) -> str | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def updated_at(self) -> float: ...


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

    def logged(self, record: LoggedSaga, what: str, steps: Sequence[StepRecord]) -> None:
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

    def logged(self, record: LoggedSaga, what: str, steps: Sequence[StepRecord]) -> None:
        for observer in self.observers:
            observer.logged(record, what, steps)


def combine(observers: Sequence[SagaObserver]) -> SagaObserver:
    """One observer for ``observers``: the only one itself, or a :class:`Fanout`."""
    if not observers:
        return SagaObserver()
    return observers[0] if len(observers) == 1 else Fanout(observers)


#: Attempt results, in the order of :attr:`StepMetrics.attempts`.
ATTEMPT_RESULTS = ("ok", "refused", "error")
#: Call outcomes, in the order of :attr:`StepMetrics.calls`.
CALL_OUTCOMES = tuple(status.value for status in CallStatus)
_OUTCOME_INDEX = {status: index for index, status in enumerate(CallStatus)}
_ATTEMPT_INDEX = {CallStatus.SUCCEEDED: 0, CallStatus.REFUSED: 1}


class StepMetrics:
    """One (step, phase)'s call latency, calls by outcome and attempts by result.

    ``plain`` counts the calls of one attempt that succeeded (nearly all of them) on their own:
    each is a ``succeeded`` call and an ``ok`` attempt, added to ``calls`` and ``attempts``
    when they are read (:attr:`calls`, :attr:`attempts`), not on the hot path.
    """

    __slots__ = ("_attempts", "_calls", "plain", "seconds")

    def __init__(self) -> None:
        self.seconds = Histogram(LATENCY_SECONDS)
        self.plain = 0
        self._calls = [0] * len(CALL_OUTCOMES)
        self._attempts = [0] * len(ATTEMPT_RESULTS)

    @property
    def calls(self) -> list[int]:
        """Calls by outcome, in the order of :data:`CALL_OUTCOMES`."""
        calls = list(self._calls)
        calls[_OUTCOME_INDEX[CallStatus.SUCCEEDED]] += self.plain
        return calls

    @property
    def attempts(self) -> list[int]:
        """Attempts by result, in the order of :data:`ATTEMPT_RESULTS`."""
        attempts = list(self._attempts)
        attempts[_ATTEMPT_INDEX[CallStatus.SUCCEEDED]] += self.plain
        return attempts

    def add(self, outcome: CallOutcome) -> None:
        """Count a call that is not plain (see the class)."""
        status = outcome.status
        self._calls[_OUTCOME_INDEX[status]] += 1
        attempts = self._attempts
        last = None if outcome.probed else _ATTEMPT_INDEX.get(status)
        if last is None:
            attempts[2] += outcome.attempts
        else:
            attempts[last] += 1
            attempts[2] += outcome.attempts - 1


_SUCCEEDED = CallStatus.SUCCEEDED
#: A finished saga's label of :attr:`EngineMetrics.saga_seconds`.
_OUTCOME_LABELS = {status: (status.value,) for status in TERMINAL}


class EngineMetrics(SagaObserver):
    """The engine's histograms and labelled counters, kept as plain numbers on the hot path.

    Per step call: its latency, its outcome, and its attempts by result. A call ends at its
    first definite answer (calls.py), so every attempt before the last got none (``error``: a
    transport error or "still in flight"), and the last got the outcome's answer — unless the
    outcome came from the probe, when every attempt was an ``error``.
    """

    def __init__(self) -> None:
        self.steps: dict[tuple[str, Phase], StepMetrics] = {}
        self.saga_seconds: dict[tuple[str], Histogram] = {}
        self.flagged: set[str] = set()  # sagas this process flagged for attention

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        metrics = self.steps.get((step, phase))
        if metrics is None:
            metrics = self.steps[step, phase] = StepMetrics()
        histogram = metrics.seconds
        histogram.counts[bisect_left(histogram.bounds, seconds)] += 1
        histogram.sum += seconds
        if outcome.status is _SUCCEEDED and outcome.attempts == 1 and not outcome.probed:
            metrics.plain += 1  # nearly every call: one attempt, answered ok
        else:
            metrics.add(outcome)

    def logged(self, record: LoggedSaga, what: str, steps: Sequence[StepRecord]) -> None:
        status = record.status
        if status in TERMINAL:
            self.flagged.discard(record.saga_id)
            key = _OUTCOME_LABELS[status]  # (status.value,): the enum's value is a property
            histogram = self.saga_seconds.get(key)
            if histogram is None:
                histogram = self.saga_seconds[key] = Histogram(SAGA_SECONDS)
            seconds = record.updated_at - record.created_at
            histogram.observe(seconds if seconds > 0.0 else 0.0)
        elif record.needs_attention:
            self.flagged.add(record.saga_id)

    # -- read by the collector at scrape time -----------------------------------------------------

    def step_calls(self) -> dict[tuple[str, ...], float]:
        return {
            (step, phase.value, outcome): float(n)
            for (step, phase), m in self.steps.items()
            for outcome, n in zip(CALL_OUTCOMES, m.calls, strict=True)
            if n
        }

    def step_attempts(self) -> dict[tuple[str, ...], float]:
        return {
            (step, phase.value, result): float(n)
            for (step, phase), m in self.steps.items()
            for result, n in zip(ATTEMPT_RESULTS, m.attempts, strict=True)
            if n
        }

    def step_seconds(self) -> dict[tuple[str, str], Histogram]:
        return {(step, phase.value): m.seconds for (step, phase), m in self.steps.items()}

"""Structured events of the engine and the workers (``--log-format json``).

One event per claim, takeover, step result, decision, compensation, saga end, flag for
attention, and breaker opening or closing, each carrying the order (saga) id, the step, the
attempt count and the worker, so that one saga's life can be followed across workers by
filtering on ``order_id``. Events go through :data:`ordersaga.telemetry.logs.EVENTS` at INFO
(breakers and attention at WARNING); the command installs this observer only in JSON mode, so
the default text mode pays nothing for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ordersaga.protocol.messages import Phase
from ordersaga.saga.breaker import BreakerState
from ordersaga.saga.calls import CallOutcome
from ordersaga.saga.observe import LoggedSaga, SagaObserver
from ordersaga.saga.store.base import SagaRecord, SagaStatus, StepRecord
from ordersaga.telemetry.logs import EVENTS, emit

__all__ = ["EventLog"]

_DECISIONS = {
    "decision.confirm": "confirm",
    "decision.compensate": "compensate",
    "create": "reject",
}


class EventLog(SagaObserver):
    """Logs the events of one process's engine (and its worker, if any) as structured records."""

    def __init__(self, worker: str | None = None, logger: logging.Logger = EVENTS) -> None:
        self.worker = worker
        self.logger = logger

    # -- engine hooks -----------------------------------------------------------------------------

    def called(
        self, saga_id: str, step: str, phase: Phase, outcome: CallOutcome, seconds: float
    ) -> None:
        event = "compensation" if phase is Phase.COMPENSATE else "step"
        emit(
            self.logger,
            event,
            order_id=saga_id,
            step=step,
            phase=phase.value,
            attempt=outcome.attempts,
            status=outcome.status.value,
            probed=outcome.probed or None,
            reason=outcome.reason,
            seconds=round(seconds, 6),
            worker=self.worker,
        )

    def logged(self, record: LoggedSaga, what: str, steps: Sequence[StepRecord]) -> None:
        decision = _DECISIONS.get(what)
        if decision is not None:
            emit(
                self.logger,
                "decision",
                order_id=record.saga_id,
                decision=decision,
                status=record.status.value,
                reason=record.reason,
                worker=self.worker,
            )
        if what == "attention":
            emit(
                self.logger,
                "needs_attention",
                logging.WARNING,
                order_id=record.saga_id,
                status=record.status.value,
                worker=self.worker,
            )
        if record.status.terminal:
            emit(
                self.logger,
                "saga_end",
                order_id=record.saga_id,
                outcome="confirmed" if record.status is SagaStatus.CONFIRMED else "failed",
                reason=record.reason,
                seconds=round(max(0.0, record.updated_at - record.created_at), 6),
                worker=self.worker,
            )

    # -- breakers and workers ---------------------------------------------------------------------

    def breaker(self, service: str, state: BreakerState) -> None:
        """A :data:`~ordersaga.saga.breaker.BreakerListener`: a breaker opened or closed."""
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        event = "breaker_open" if state is BreakerState.OPEN else "breaker_close"
        emit(self.logger, event, level, service=service, worker=self.worker)

    def claimed(self, record: SagaRecord, takeover: bool) -> None:
        """A worker claimed a saga; ``takeover``: another runner had started it."""
        emit(
            self.logger,
            "takeover" if takeover else "claim",
            order_id=record.saga_id,
            status=record.status.value,
            steps=len(record.steps),
            worker=self.worker,
        )

    def message(self, text: str, level: int = logging.INFO) -> None:
        """A free-form message of the process (start, stop, trouble), as an event."""
        emit(self.logger, "message", level, message=text, worker=self.worker)

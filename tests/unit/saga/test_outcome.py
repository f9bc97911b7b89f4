"""Why a saga failed, read back from its log record (what replays, recovery and `sagas` show)."""

from __future__ import annotations

from ordersaga.protocol.messages import Phase
from ordersaga.saga.outcome import CANCELLED_REASON, Failure, failure_of
from ordersaga.saga.store.base import SagaRecord, SagaStatus, StepRecord, StepStatus


def _failed(*steps: StepRecord) -> SagaRecord:
    return SagaRecord("o1", "order", {}, "fp", SagaStatus.FAILED, steps=steps)


def _action(step: str, status: StepStatus, reason: str | None = None) -> StepRecord:
    return StepRecord(step, Phase.ACTION, status, reason=reason)


def test_an_undelivered_step_is_the_technical_cause_like_an_unknown_one() -> None:
    reserved = _action("reserve", StepStatus.SUCCEEDED)
    assert failure_of(_failed(reserved, _action("ship", StepStatus.UNDELIVERED))) == Failure(
        "ship", "technical"
    )
    assert failure_of(_failed(reserved, _action("ship", StepStatus.UNKNOWN))) == Failure(
        "ship", "technical"
    )


def test_refused_cancelled_and_no_step_causes() -> None:
    assert failure_of(_failed(_action("pay", StepStatus.REFUSED))) == Failure("pay", "business")
    cancelled = _action("pay", StepStatus.UNKNOWN, CANCELLED_REASON)
    assert failure_of(_failed(cancelled)) == Failure("pay", "operator")
    assert failure_of(_failed()) == Failure(None, "input")

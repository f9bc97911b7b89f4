"""What a saga's log record says about its outcome: which step failed it, why, at what cost.

The same reading serves a replayed request (it reports the original saga's retries and
compensations, not zeros), a submitter that learns an outcome from the log, and the operators'
views. A failure has a *cause*:

``business``   a service refused a step (a definite answer: nothing applied)
``technical``  a step's outcome stayed unknown after the retries and the probe
``input``      the request itself was refused before any step (invalid, or its id reused)
``operator``   a person cancelled the saga before its decision (``ordersaga sagas cancel``)
"""

from __future__ import annotations

from dataclasses import dataclass

from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import Compacted, SagaRecord, SagaStatus, StepStatus

__all__ = [
    "CANCELLED_REASON",
    "CAUSES",
    "Failure",
    "compacted_of",
    "compensations_of",
    "failure_of",
    "retries_of",
]

CAUSES = ("business", "technical", "input", "operator")
#: The reason of the step records an operator's cancel writes (see ordersaga.ops.repair).
CANCELLED_REASON = "cancelled by an operator before its outcome was known"


@dataclass(frozen=True, slots=True)
class Failure:
    step: str | None  # the step that failed the saga (None: no step ran)
    cause: str


def failure_of(record: SagaRecord) -> Failure | None:
    """Why a saga was decided to fail, or None if it was not (running, or confirmed)."""
    if record.status not in (SagaStatus.FAILED, SagaStatus.COMPENSATING):
        return None
    if record.compacted is not None:  # its steps are gone: what they said was kept
        return Failure(record.compacted.step, record.compacted.cause or "input")
    for step in record.steps:
        if step.phase is not Phase.ACTION:
            continue
        if step.status is StepStatus.REFUSED:
            return Failure(step.step, "business")
        # An undelivered call (its service unreachable until the order's deadline) failed the
        # saga as much as an unknown outcome did: a technical cause, on a replay as the first time.
        if step.status in (StepStatus.UNKNOWN, StepStatus.UNDELIVERED):
            cause = "operator" if step.reason == CANCELLED_REASON else "technical"
            return Failure(step.step, cause)
    return Failure(None, "input")


def retries_of(record: SagaRecord) -> int:
    """Attempts beyond the first, over every call the log records."""
    if record.compacted is not None:
        return record.compacted.retries
    return sum(max(0, step.attempts - 1) for step in record.steps)


def compensations_of(record: SagaRecord) -> int:
    if record.compacted is not None:
        return record.compacted.compensations
    return sum(
        step.phase is Phase.COMPENSATE and step.status is StepStatus.SUCCEEDED
        for step in record.steps
    )


def compacted_of(record: SagaRecord) -> Compacted:
    """What retention keeps of ``record``'s steps so that its outcome replays as before."""
    failure = failure_of(record)
    return Compacted(
        None if failure is None else failure.step,
        None if failure is None else failure.cause,
        retries_of(record),
        compensations_of(record),
    )

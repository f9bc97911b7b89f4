"""What the engine hands back: a saga's result, the engine's settings and its counters.

Plain values, no behaviour: the executor (:mod:`ordersaga.saga.executor`) fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ordersaga.errors import ConfigError
from ordersaga.protocol.messages import MAX_MESSAGE_AGE
from ordersaga.saga.outcome import compensations_of, failure_of, retries_of
from ordersaga.saga.retry import ACTION_POLICY, FOREVER_POLICY, PROBE_POLICY, RetryPolicy
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.slots import slot_twin

__all__ = [
    "MISMATCH_REASON",
    "DecisionCallback",
    "EngineSettings",
    "EngineStats",
    "SagaResult",
    "build_saga_result",
]

#: The reason given to a request whose saga id is already used with other input.
MISMATCH_REASON = "saga id already used with different input"


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How hard the engine tries, frozen for the engine's life.

    ``action_policy`` retries a forward step (a step may override it with ``Step.retry``);
    ``forever_policy`` retries compensations and confirmations, which must finish;
    ``probe_policy`` asks a service whether a step whose outcome stayed unknown was applied.
    """

    action_policy: RetryPolicy = ACTION_POLICY
    forever_policy: RetryPolicy = FOREVER_POLICY
    probe_policy: RetryPolicy = PROBE_POLICY
    #: A compensation or confirmation failing for this long flags its saga for attention.
    attention_after: float = 30.0
    #: Never send a command first sent longer ago than this (see :mod:`.calls`); None: no limit.
    max_message_age: float | None = MAX_MESSAGE_AGE
    #: Seconds after its creation that a saga's forward steps stop waiting for an unreachable
    #: service: the order then fails, with a reason naming the service, flagged for attention.
    #: An outage alone fails no order before this.
    order_deadline: float = 600.0

    def __post_init__(self) -> None:
        if not self.order_deadline > 0:
            raise ConfigError("the order deadline must be a positive number of seconds")


@dataclass(frozen=True, slots=True)
class SagaResult:
    """How a saga ended, as seen by the caller that asked for it."""

    saga_id: str
    status: SagaStatus
    reason: str | None = None
    retries: int = 0
    compensations: int = 0
    replayed: bool = False  # decided before this request: nothing was executed for it
    mismatch: bool = False  # the id exists with other input: this request was not executed
    fingerprint: str = ""
    step: str | None = None  # a failed saga: the step that failed it (None: none ran)
    cause: str | None = None  # a failed saga: business | technical | input | operator

    @classmethod
    def of_record(cls, record: SagaRecord, *, replayed: bool = True) -> SagaResult:
        """The outcome the log records for a decided saga, with its retries, compensations
        and the step and cause of a failure (see :mod:`ordersaga.saga.outcome`)."""
        failure = failure_of(record)
        return cls(
            record.saga_id,
            record.status,
            record.reason,
            retries=retries_of(record),
            compensations=compensations_of(record),
            replayed=replayed,
            fingerprint=record.fingerprint,
            step=None if failure is None else failure.step,
            cause=None if failure is None else failure.cause,
        )

    @property
    def confirmed(self) -> bool:
        """Decided to confirm: confirmed, or confirming (a confirmation is still outstanding and
        the saga flagged for attention; it can only end confirmed)."""
        return self.status in _DECIDED_TO_CONFIRM


#: (A frozenset made once: an enum member read through its class is slow on Python 3.11, see
#: ``_ACTION`` in :mod:`.driver`.)
_DECIDED_TO_CONFIRM = frozenset({SagaStatus.CONFIRMED, SagaStatus.CONFIRMING})

_ResultSlots = slot_twin(SagaResult)
_new = object.__new__


def build_saga_result(
    saga_id: str,
    status: SagaStatus,
    reason: str | None,
    retries: int,
    compensations: int,
    replayed: bool,
    mismatch: bool,
    fingerprint: str,
    step: str | None,
    cause: str | None,
) -> SagaResult:
    """``SagaResult(...)`` with every field given, built without the frozen ``__init__`` (see
    :mod:`ordersaga.slots`): the driver makes one or two per saga."""
    result: Any = _new(_ResultSlots)
    result.saga_id = saga_id
    result.status = status
    result.reason = reason
    result.retries = retries
    result.compensations = compensations
    result.replayed = replayed
    result.mismatch = mismatch
    result.fingerprint = fingerprint
    result.step = step
    result.cause = cause
    result.__class__ = SagaResult
    built: SagaResult = result  # (typed: no cast call on this path)
    return built


class DecisionCallback(Protocol):
    """Told a saga's outcome as soon as it is decided (see :meth:`SagaEngine.start`)."""

    def __call__(self, result: SagaResult, /) -> None:
        """Called once, with the decided result, before the confirmations run."""


@dataclass(slots=True)
class EngineStats:
    """What one engine did since it was made (sagas, compensations, attention flags)."""

    started: int = 0
    resumed: int = 0
    confirmed: int = 0
    failed: int = 0
    compensations: int = 0
    needs_attention: int = 0

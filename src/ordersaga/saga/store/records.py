"""A saga's record in the log: its status and life cycle, and one record per step and phase.

The store protocol that writes them is :mod:`ordersaga.saga.store.base`, which re-exports these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ordersaga.protocol.messages import Phase
from ordersaga.slots import slot_twin

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL",
    "Attempt",
    "Compacted",
    "SagaRecord",
    "SagaStatus",
    "StepRecord",
    "StepStatus",
]


class SagaStatus(enum.StrEnum):
    """Where a saga stands (the life cycle is drawn in the module docstring)."""

    RUNNING = "running"
    COMPENSATING = "compensating"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({SagaStatus.CONFIRMED, SagaStatus.FAILED})

ALLOWED_TRANSITIONS: Mapping[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset(
        {
            SagaStatus.RUNNING,
            SagaStatus.CONFIRMING,
            SagaStatus.CONFIRMED,
            SagaStatus.COMPENSATING,
            SagaStatus.FAILED,
        }
    ),
    SagaStatus.CONFIRMING: frozenset({SagaStatus.CONFIRMING, SagaStatus.CONFIRMED}),
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATING, SagaStatus.FAILED}),
    SagaStatus.CONFIRMED: frozenset(),
    SagaStatus.FAILED: frozenset(),
}


class StepStatus(enum.StrEnum):
    """The known outcome of one phase of one step."""

    SUCCEEDED = "succeeded"  # the service applied it (result holds its reply body)
    REFUSED = "refused"  # a definite refusal: nothing applied, never compensated
    UNKNOWN = "unknown"  # retries and the probe could not tell: compensated to be safe
    #: Never reached the service (unreachable until the order's deadline): nothing to undo.
    UNDELIVERED = "undelivered"


class Attempt(NamedTuple):
    """One send of a step's command (``kind`` ``"a"``) or one status probe of its key (``"p"``).

    An attempt's ``result``: ``applied``, ``refused`` (a definite refusal), ``unknown`` (an
    answer that is not final), ``lost`` (no answer: request or response lost, or timed out) or
    ``unreachable`` (no connection: it never arrived), with the ``error`` of the last two. A
    probe's ``result`` is what it found: ``applied``, ``refused``, ``unknown`` or ``no answer``.
    """

    kind: str  # "a" attempt | "p" probe
    at: float  # wall-clock seconds it was sent
    duration: float  # seconds until its answer (or its failure)
    result: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    """The known outcome of one phase of one step.

    ``trail``: every attempt and probe, in order — empty for a plain call (one attempt,
    answered: the record's own span) and in records from before trails (see ``saga/trail.py``).
    """

    step: str
    phase: Phase
    status: StepStatus
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    attempts: int = 1
    started_at: float = 0.0  # wall-clock seconds (time.time())
    ended_at: float = 0.0
    trail: tuple[Attempt, ...] = ()
    #: ``result``'s canonical JSON when the service's reply carried it (logged as it is).
    result_json: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Compacted:
    """What a compacted saga keeps of its step records (see :mod:`ordersaga.saga.outcome`)."""

    step: str | None  # the step that failed it (None: confirmed, or no step ran)
    cause: str | None  # why it failed: business | technical | input | operator
    retries: int
    compensations: int


@dataclass(frozen=True, slots=True)
class SagaRecord:
    """A saga as the log knows it.

    ``steps`` holds one record per (step, phase), ordered by ``started_at`` and then by when the
    (step, phase) was first written (rewriting it keeps its place). ``input`` and each step's
    ``result`` went through JSON, as stored: a tuple comes back as a list.
    """

    saga_id: str
    definition: str
    input: Mapping[str, Any]
    fingerprint: str
    status: SagaStatus
    steps: tuple[StepRecord, ...] = ()
    reason: str | None = None
    needs_attention: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    #: Set once retention compacted the saga (:meth:`SagaStore.prune`): ``input`` is empty and
    #: ``steps`` gone; the id, fingerprint, status, reason, times (``updated_at``: decided at)
    #: and this summary of the steps remain, so its outcome replays exactly as before.
    compacted: Compacted | None = None
    #: Why the saga is flagged (``needs_attention``): what a person should look at. None when
    #: it is not flagged (clearing the flag clears it), or flagged by a build before it.
    attention_reason: str | None = None

    @property
    def pruned(self) -> bool:
        return self.compacted is not None

    def step(self, step: str, phase: Phase = Phase.ACTION) -> StepRecord | None:
        for record in self.steps:
            if record.step == step and record.phase is phase:
                return record
        return None


# -- building records on the engine's own paths ------------------------------------------------
#
# The engine builds ~9 records per order: through the builders below, which fill a plain twin
# class with the same slots and then give it the record's class (see :mod:`ordersaga.slots`),
# not through the frozen ``__init__`` (~15k -> ~2.5k instructions a record). They take every
# field, do no defaults processing and no checks: only for values the engine made itself.

_StepSlots = slot_twin(StepRecord)
_SagaSlots = slot_twin(SagaRecord)

_new = object.__new__


def build_step_record(
    step: str,
    phase: Phase,
    status: StepStatus,
    result: Mapping[str, Any],
    reason: str | None,
    attempts: int,
    started_at: float,
    ended_at: float,
    trail: tuple[Attempt, ...],
    result_json: str | None,
) -> StepRecord:
    """``StepRecord(...)`` with every field given, built without the frozen ``__init__``."""
    record: Any = _new(_StepSlots)
    record.step = step
    record.phase = phase
    record.status = status
    record.result = result
    record.reason = reason
    record.attempts = attempts
    record.started_at = started_at
    record.ended_at = ended_at
    record.trail = trail
    record.result_json = result_json
    record.__class__ = StepRecord
    built: StepRecord = record  # (typed: no cast call on this path)
    return built


def build_saga_record(
    saga_id: str,
    definition: str,
    input: Mapping[str, Any],
    fingerprint: str,
    status: SagaStatus,
    steps: tuple[StepRecord, ...],
    reason: str | None,
    needs_attention: bool,
    created_at: float,
    updated_at: float,
    compacted: Compacted | None,
    attention_reason: str | None,
) -> SagaRecord:
    """``SagaRecord(...)`` with every field given, built without the frozen ``__init__``."""
    record: Any = _new(_SagaSlots)
    record.saga_id = saga_id
    record.definition = definition
    record.input = input
    record.fingerprint = fingerprint
    record.status = status
    record.steps = steps
    record.reason = reason
    record.needs_attention = needs_attention
    record.created_at = created_at
    record.updated_at = updated_at
    record.compacted = compacted
    record.attention_reason = attention_reason
    record.__class__ = SagaRecord
    built: SagaRecord = record  # (typed: no cast call on this path)
    return built

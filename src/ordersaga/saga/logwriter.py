"""Writing a saga's log: its creation, each later write, the attention flag.

Every write goes between its two crash points (``log.before:<what>`` / ``log.after:<what>``),
is fenced by the worker's lease on a worker (``owner`` set), and keeps the in-memory record of
the saga's :class:`Run` in step with the log. What is written when is :mod:`.driver`'s business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ordersaga.clock import Clock
from ordersaga.protocol.messages import Phase
from ordersaga.saga.calls import CallOutcome, CallStatus
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.definition import SagaContext, SagaDefinition, Step, saga_context
from ordersaga.saga.observe import SagaObserver
from ordersaga.saga.result import DecisionCallback, EngineStats
from ordersaga.saga.store.base import SagaRecord, SagaStatus, SagaStore, StepRecord, StepStatus
from ordersaga.saga.store.records import build_saga_record, build_step_record

_STEP_STATUS = {
    CallStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    CallStatus.REFUSED: StepStatus.REFUSED,
    CallStatus.UNKNOWN: StepStatus.UNKNOWN,
    CallStatus.UNDELIVERED: StepStatus.UNDELIVERED,
}


@dataclass(slots=True)
class Run:
    """The in-memory view of one saga while it runs (mirrors what is in the log)."""

    record: SagaRecord
    definition: SagaDefinition
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    calls: int = 0
    compensations: int = 0
    on_decided: DecisionCallback | None = None
    failed_step: str | None = None
    cause: str | None = None
    fresh: bool = False  # created by this runner: no earlier process sent any of its steps
    keep_flag: bool = False  # failed by the order's deadline: stays flagged for attention
    saga_id: str = field(init=False)  # the record's (it never changes)
    _context: SagaContext | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.saga_id = self.record.saga_id

    def context(self) -> SagaContext:
        """What the step builders read: made anew only when the input changed (``results`` is
        the run's own dict, updated in place)."""
        context = self._context
        if context is None or context.input is not self.record.input:
            context = self._context = saga_context(self.saga_id, self.record.input, self.results)
        return context


class LogWriter:
    """Writes a saga's log record, each write between its crash points (see the module)."""

    def __init__(
        self,
        store: SagaStore,
        clock: Clock,
        crash: CrashPoints,
        stats: EngineStats,
        owner: str | None,
        observer: SagaObserver,
    ) -> None:
        self.store = store
        self._clock = clock
        self._crash = crash
        self._armed = crash.armed  # read once: whether the crash points can do anything
        self._stats = stats
        self._owner = owner
        self._observer = observer

    def step_record(
        self, step: Step, phase: Phase, outcome: CallOutcome, started: float
    ) -> StepRecord:
        return build_step_record(
            step.name,
            phase,
            _STEP_STATUS[outcome.status],
            outcome.body,
            outcome.reason,
            outcome.attempts,
            started,
            self._clock.time(),
            outcome.trail,
            outcome.body_json,
        )

    def create(
        self,
        saga_id: str,
        definition: str,
        input: Mapping[str, Any],
        fingerprint: str,
        status: SagaStatus,
        reason: str | None,
    ) -> Awaitable[tuple[SagaRecord, bool]]:
        """Create the saga's log record (see :meth:`SagaStore.create`), between crash points.

        Disarmed, the points cost nothing: the store's own coroutine is the creation (no
        coroutine of this writer's around it, every saga makes one).
        """
        if not self._armed:
            return self.store.create(
                saga_id, definition, input, fingerprint, status=status, reason=reason
            )
        return self._create_between_points(saga_id, definition, input, fingerprint, status, reason)

    async def _create_between_points(
        self,
        saga_id: str,
        definition: str,
        input: Mapping[str, Any],
        fingerprint: str,
        status: SagaStatus,
        reason: str | None,
    ) -> tuple[SagaRecord, bool]:
        self._crash.hit("log.before:create")
        result = await self.store.create(
            saga_id, definition, input, fingerprint, status=status, reason=reason
        )
        self._crash.hit("log.after:create")
        return result

    async def write(
        self,
        run: Run,
        what: str,
        steps: list[StepRecord],
        status: SagaStatus | None = None,
        reason: str | None = None,
        attention: bool | None = None,
        *,
        decided: bool = False,
        attention_reason: str | None = None,
    ) -> None:
        # The decision's write also erases what the decided saga no longer needs (redact).
        redact = run.definition.redact if decided else None
        input = run.record.input if redact is None else redact(run.record.input)
        replaced = input is not run.record.input  # redact returns the input itself: no change
        crash, armed = self._crash, self._armed
        if armed:  # (tests) a disarmed point costs no string formatting
            crash.hit("log.before:" + what)
        await self.store.update(
            run.saga_id,
            steps=steps,
            status=status,
            reason=reason,
            needs_attention=attention,
            owner=self._owner,
            input=input if replaced else None,
            attention_reason=attention_reason,
        )
        if armed:
            crash.hit("log.after:" + what)
        # Keep the in-memory record in step with the log.
        record = run.record
        kept = record.steps
        if steps:
            merged = {(r.step, r.phase): r for r in kept}
            for r in steps:
                merged[r.step, r.phase] = r
            kept = tuple(merged.values())
        run.record = record = build_saga_record(
            record.saga_id,
            record.definition,
            input,
            record.fingerprint,
            status or record.status,
            kept,
            reason if reason is not None else record.reason,
            record.needs_attention if attention is None else attention,
            record.created_at,
            self._clock.time(),
            None,
            record.attention_reason if attention is None else attention_reason,
        )
        self._observer.logged(record, what, steps)

    async def attention(self, run: Run, reason: str) -> None:
        """Flag the saga for a person, saying why (a step that keeps failing, and how)."""
        if run.record.needs_attention:
            return
        self._stats.needs_attention += 1
        await self.write(run, "attention", [], attention=True, attention_reason=reason)


def cancelled_blind(record: SagaRecord) -> bool:
    """Compensating, yet no step failed it: cancelled by a build that did not know its steps.

    (Every other decision to compensate logs the failing step; see ``ordersaga.ops.repair``.)
    """
    return record.status is SagaStatus.COMPENSATING and all(
        step.status is StepStatus.SUCCEEDED for step in record.steps if step.phase is Phase.ACTION
    )


def cancelled(ours: SagaRecord, stored: SagaRecord) -> bool:
    """The log turned a saga we drove forward to compensating behind our back: a cancel."""
    return ours.status is SagaStatus.RUNNING and stored.status is SagaStatus.COMPENSATING

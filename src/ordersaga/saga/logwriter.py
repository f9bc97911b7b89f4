"""Writing a saga's log: its creation, each later write, the attention flag.

Every write goes between its two crash points (``log.before:<what>`` / ``log.after:<what>``),
is fenced by the worker's lease on a worker (``owner`` set), and keeps the in-memory record of
the saga's :class:`Run` in step with the log. What is written when is :mod:`.driver`'s business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
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


class Run:
    """The in-memory view of one saga while it runs: what its log holds, kept in step with it.

    Made from the saga's record (as created, or as resumed from the log); each later write of
    :class:`LogWriter` updates the run's own fields in place (its status, reason, attention
    flag, input and step records), not a new record. :attr:`record` gives the
    :class:`SagaRecord` of those fields, built when read (once per change): the engine's own
    path reads the fields.
    """

    __slots__ = (
        "_record",
        "_steps",
        "attempts",
        "attention_reason",
        "calls",
        "cause",
        "compensations",
        "context",
        "created_at",
        "definition",
        "definition_name",
        "failed_step",
        "fingerprint",
        "fresh",
        "input",
        "keep_flag",
        "needs_attention",
        "on_decided",
        "reason",
        "results",
        "saga_id",
        "status",
        "updated_at",
    )

    def __init__(
        self,
        record: SagaRecord,
        definition: SagaDefinition,
        *,
        on_decided: DecisionCallback | None = None,
        fresh: bool = False,
    ) -> None:
        self.definition = definition
        self.on_decided = on_decided
        #: Created by this runner: no earlier process sent any of its steps.
        self.fresh = fresh
        self.results: dict[str, Mapping[str, Any]] = {}
        self.attempts = 0
        self.calls = 0
        self.compensations = 0
        self.failed_step: str | None = None
        self.cause: str | None = None
        #: Failed by the order's deadline: stays flagged for attention.
        self.keep_flag = False
        # The record's fields (saga_id, definition's name, fingerprint and created_at never
        # change; the others as the log's writes change them).
        self.saga_id = record.saga_id
        self.definition_name = record.definition
        self.fingerprint = record.fingerprint
        self.created_at = record.created_at
        self.input: Mapping[str, Any] = record.input
        self.status = record.status
        self.reason = record.reason
        self.needs_attention = record.needs_attention
        self.attention_reason = record.attention_reason
        self.updated_at = record.updated_at
        #: The step records by (step, phase), in the record's order (a rewritten one keeps its
        #: place, as in the log).
        steps = record.steps
        self._steps = {(r.step, r.phase): r for r in steps} if steps else {}
        self._record: SagaRecord | None = record  # as the fields are now (None: changed since)
        #: What the step builders read (``results`` is the run's own dict, updated in place;
        #: made anew when a write replaces the input).
        self.context: SagaContext = saga_context(self.saga_id, self.input, self.results)

    @property
    def record(self) -> SagaRecord:
        """The saga's record as the log holds it now (an immutable value of the run's fields)."""
        record = self._record
        if record is None:
            record = self._record = build_saga_record(
                self.saga_id,
                self.definition_name,
                self.input,
                self.fingerprint,
                self.status,
                tuple(self._steps.values()),
                self.reason,
                self.needs_attention,
                self.created_at,
                self.updated_at,
                None,
                self.attention_reason,
            )
        return record

    def logged(
        self,
        steps: list[StepRecord],
        status: SagaStatus | None,
        reason: str | None,
        attention: bool | None,
        attention_reason: str | None,
        input: Mapping[str, Any],
        at: float,
    ) -> None:
        """Take a durable write of the log: the record changes as the store's row did."""
        if steps:
            kept = self._steps
            for r in steps:
                kept[r.step, r.phase] = r
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason
        if attention is not None:
            self.needs_attention = attention
            self.attention_reason = attention_reason
        if input is not self.input:
            self.input = input
            self.context = saga_context(self.saga_id, input, self.results)
        self.updated_at = at
        self._record = None


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
        input = run.input if redact is None else redact(run.input)
        replaced = input is not run.input  # redact returns the input itself: no change
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
        # Keep the run in step with the log.
        run.logged(steps, status, reason, attention, attention_reason, input, self._clock.time())
        self._observer.logged(run, what, steps)

    async def attention(self, run: Run, reason: str) -> None:
        """Flag the saga for a person, saying why (a step that keeps failing, and how)."""
        if run.needs_attention:
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

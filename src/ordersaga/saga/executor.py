"""The saga executor: the only thing that runs saga definitions.

Life of a saga (every arrow is one durable write to the saga log, made *before* acting on it)::

    create ─► step 1 result ─► ... ─► pivot result + decision "confirm" ─► confirmations + end
                    │
                    └─► refused/unknown result + decision "compensate" ─► compensations + end

* Forward steps are retried under one idempotency key while their outcome is unknown; when the
  budget is spent the service is probed; a still-unknown step is compensated along with the
  earlier ones. A refused step is never compensated.
* Compensations run in reverse order and confirmations in order, each retried without an attempt
  limit and shielded from cancellation; their records and the terminal status are written in one
  write at the end. Re-running them after a crash is harmless: they are idempotent.
* The saga log is the truth. Resuming a saga reads only its record (see :mod:`recovery`).
* On a worker (``owner`` set), every log write is fenced by the worker's lease. A write the log
  refuses means another runner took the saga over or finished it: the engine stops driving it
  and returns the stored outcome if there is one, else raises :class:`OwnershipLost`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ordersaga.errors import ConfigError, ConflictError, OwnershipLost
from ordersaga.protocol.messages import Command, Phase, make_key
from ordersaga.saga.breaker import Breakers
from ordersaga.saga.calls import Caller, CallOutcome, CallStatus
from ordersaga.saga.clock import Clock, SystemClock
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.definition import SagaContext, SagaDefinition, Step
from ordersaga.saga.observe import SagaObserver
from ordersaga.saga.retry import ACTION_POLICY, FOREVER_POLICY, PROBE_POLICY, RetryPolicy
from ordersaga.saga.store.base import SagaRecord, SagaStatus, SagaStore, StepRecord, StepStatus
from ordersaga.transport.base import Transport

MISMATCH_REASON = "saga id already used with different input"
_STEP_STATUS = {
    CallStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    CallStatus.REFUSED: StepStatus.REFUSED,
    CallStatus.UNKNOWN: StepStatus.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class EngineSettings:
    action_policy: RetryPolicy = ACTION_POLICY
    forever_policy: RetryPolicy = FOREVER_POLICY
    probe_policy: RetryPolicy = PROBE_POLICY
    #: A compensation or confirmation failing for this long flags its saga for attention.
    attention_after: float = 30.0


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

    @property
    def confirmed(self) -> bool:
        """Decided to confirm: confirmed, or confirming (a confirmation is still outstanding and
        the saga flagged for attention; it can only end confirmed)."""
        return self.status in (SagaStatus.CONFIRMED, SagaStatus.CONFIRMING)


#: Told a saga's outcome as soon as it is decided (see :meth:`SagaEngine.start`).
DecisionCallback = Callable[["SagaResult"], None]


@dataclass(slots=True)
class EngineStats:
    started: int = 0
    resumed: int = 0
    confirmed: int = 0
    failed: int = 0
    compensations: int = 0
    needs_attention: int = 0


@dataclass(slots=True)
class _Run:
    """The in-memory view of one saga while it runs (mirrors what is in the log)."""

    record: SagaRecord
    definition: SagaDefinition
    results: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    calls: int = 0
    compensations: int = 0
    on_decided: DecisionCallback | None = None

    @property
    def saga_id(self) -> str:
        return self.record.saga_id

    def context(self) -> SagaContext:
        return SagaContext(self.saga_id, self.record.input, self.results)


class SagaEngine:
    """Runs sagas of the registered definitions against a store and a transport."""

    def __init__(
        self,
        store: SagaStore,
        transport: Transport,
        definitions: Sequence[SagaDefinition],
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        breakers: Breakers | None = None,
        crash: CrashPoints = NO_CRASH,
        settings: EngineSettings | None = None,
        owner: str | None = None,
        observer: SagaObserver | None = None,
    ) -> None:
        self.store = store
        #: Told what happens, for metrics, logs and traces (see :mod:`ordersaga.saga.observe`).
        self.observer = observer or SagaObserver()
        #: Set on a worker: every log write is fenced by this lease owner (see SagaStore.update).
        self.owner = owner
        self._definitions = {d.name: d for d in definitions}
        self._clock = clock or SystemClock()
        self._settings = settings or EngineSettings()
        self.breakers = breakers or Breakers(self._clock)
        self._crash = crash
        self.caller = Caller(
            transport,
            self.breakers,
            self._clock,
            rng or random.Random(),
            crash,
            self._settings.probe_policy,
        )
        self.stats = EngineStats()
        # One runner per saga id in this process: a second request for the same id waits.
        self._inflight: dict[str, asyncio.Future[SagaResult]] = {}

    @property
    def running(self) -> Collection[str]:
        """The ids of the sagas this engine is driving now."""
        return self._inflight.keys()

    # ----------------------------------------------------------------- public entry points

    async def start(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        *,
        on_decided: DecisionCallback | None = None,
    ) -> SagaResult:
        """Run a new saga, or give the outcome of the one already under ``saga_id``.

        Idempotent: the same id with the same fingerprint never runs twice (it replays the
        decided outcome, or waits for the running saga); the same id with another fingerprint
        returns a ``mismatch`` result and changes nothing.

        ``on_decided`` is called once the decision to confirm is durable, before the
        confirmations run: the outcome is known then (a confirming saga can only end
        confirmed), so a caller may report it early. The call still returns only when the
        saga has finished.
        """
        saga_def = self._definition(definition)
        running = self._inflight.get(saga_id)
        if running is not None:
            result = await asyncio.shield(running)
            return self._as_repeat(result, fingerprint)
        input = self.observer.stamp(saga_id, input)
        return await self._owned(
            saga_id, self._create_and_run(saga_def, saga_id, input, fingerprint, on_decided)
        )

    async def record_failed(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        reason: str,
    ) -> SagaResult:
        """Log a saga that failed before any step ran (e.g. its input was invalid)."""
        self._definition(definition)
        running = self._inflight.get(saga_id)
        if running is not None:
            return self._as_repeat(await asyncio.shield(running), fingerprint)

        async def decide() -> SagaResult:
            record, created = await self._log_create(
                saga_id, definition, input, fingerprint, SagaStatus.FAILED, reason
            )
            if created:
                self.stats.failed += 1
                self.observer.logged(record, "create", [])
                return SagaResult(saga_id, SagaStatus.FAILED, reason, fingerprint=fingerprint)
            return await self._existing(record, fingerprint)

        return await self._owned(saga_id, decide())

    async def resume(self, record: SagaRecord) -> SagaResult:
        """Finish an unfinished saga from its log record (recovery)."""
        running = self._inflight.get(record.saga_id)
        if running is not None:
            return await asyncio.shield(running)
        self.stats.resumed += 1
        run = _Run(record, self._definition(record.definition))
        return await self._owned(record.saga_id, self._drive(run))

    # ----------------------------------------------------------------------- ownership

    async def _owned(self, saga_id: str, work: Any) -> SagaResult:
        future: asyncio.Future[SagaResult] = asyncio.get_running_loop().create_future()
        self._inflight[saga_id] = future
        try:
            result: SagaResult = await work
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[saga_id]

    def _as_repeat(self, result: SagaResult, fingerprint: str) -> SagaResult:
        if result.fingerprint != fingerprint:
            return SagaResult(result.saga_id, SagaStatus.FAILED, MISMATCH_REASON, mismatch=True)
        return SagaResult(
            result.saga_id, result.status, result.reason, replayed=True, fingerprint=fingerprint
        )

    def _definition(self, name: str) -> SagaDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise ConfigError(f"no saga definition named {name!r}") from None

    async def _create_and_run(
        self,
        definition: SagaDefinition,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        on_decided: DecisionCallback | None = None,
    ) -> SagaResult:
        record, created = await self._log_create(
            saga_id, definition.name, input, fingerprint, SagaStatus.RUNNING, None
        )
        if not created:
            return await self._existing(record, fingerprint)
        self.stats.started += 1
        self._crash.hit("saga.created")
        return await self._drive(_Run(record, definition, on_decided=on_decided))

    async def _existing(self, record: SagaRecord, fingerprint: str) -> SagaResult:
        if record.fingerprint != fingerprint:
            return SagaResult(record.saga_id, SagaStatus.FAILED, MISMATCH_REASON, mismatch=True)
        if record.status.terminal:
            return SagaResult(
                record.saga_id, record.status, record.reason, replayed=True, fingerprint=fingerprint
            )
        # Unfinished in the log but not running here: finish it now (as recovery would).
        self.stats.resumed += 1
        result = await self._drive(_Run(record, self._definition(record.definition)))
        return SagaResult(
            result.saga_id, result.status, result.reason, replayed=True, fingerprint=fingerprint
        )

    # ------------------------------------------------------------------------- driving

    async def _drive(self, run: _Run) -> SagaResult:
        try:
            with self.observer.driving(run.record):
                return await self._drive_owned(run)
        except ConflictError as exc:
            # The log refused our write: another runner took the saga over (its lease lapsed)
            # or finished it. Stop driving it; report the stored outcome if it has one.
            stored = await self.store.load(run.saga_id)
            if stored is None or not stored.status.terminal:
                raise OwnershipLost(f"saga {run.saga_id!r}: {exc}") from exc
            return SagaResult(
                run.saga_id,
                stored.status,
                stored.reason,
                replayed=True,
                fingerprint=stored.fingerprint,
            )

    async def _drive_owned(self, run: _Run) -> SagaResult:
        for record in run.record.steps:
            if record.phase is Phase.ACTION and record.status is StepStatus.SUCCEEDED:
                run.results[record.step] = record.result
        status = run.record.status
        reason = run.record.reason
        if status is SagaStatus.RUNNING:
            status, reason = await self._forward(run)
            if status is SagaStatus.CONFIRMING and run.on_decided is not None:
                run.on_decided(self._result(run, status, reason))
        if status is SagaStatus.CONFIRMING:
            status = await _shielded(self._confirm(run))
        elif status is SagaStatus.COMPENSATING:
            status = await _shielded(self._compensate(run, reason))
        if status is SagaStatus.CONFIRMED:
            self.stats.confirmed += 1
        elif status is SagaStatus.FAILED:
            self.stats.failed += 1
        return self._result(run, status, reason)

    @staticmethod
    def _result(run: _Run, status: SagaStatus, reason: str | None) -> SagaResult:
        return SagaResult(
            run.saga_id,
            status,
            reason,
            retries=run.attempts - run.calls,
            compensations=run.compensations,
            fingerprint=run.record.fingerprint,
        )

    async def _forward(self, run: _Run) -> tuple[SagaStatus, str | None]:
        steps = run.definition.forward_steps
        for index, step in enumerate(steps):
            if step.name in run.results:
                continue
            policy = step.retry or self._settings.action_policy
            started = self._clock.time()
            outcome = await self._call(run, step, Phase.ACTION, policy)
            record = self._step_record(step, Phase.ACTION, outcome, started)
            if outcome.status is CallStatus.SUCCEEDED:
                run.results[step.name] = outcome.body
                decided = index == len(steps) - 1
                if not decided:
                    await self._log(run, f"{step.name}.result", [record])
                    continue
                status = (
                    SagaStatus.CONFIRMING
                    if run.definition.retriable_steps
                    else SagaStatus.CONFIRMED
                )
                await self._log(run, "decision.confirm", [record], status)
                return status, None
            needs_undo = bool(run.results) or outcome.status is CallStatus.UNKNOWN
            status = SagaStatus.COMPENSATING if needs_undo else SagaStatus.FAILED
            await self._log(run, "decision.compensate", [record], status, outcome.reason)
            return status, outcome.reason
        raise AssertionError("a checked definition always decides")  # pragma: no cover

    async def _compensate(self, run: _Run, reason: str | None) -> SagaStatus:
        """Undo, in reverse order, every step that succeeded or whose outcome is unknown."""
        done: list[StepRecord] = []
        for step in reversed(run.definition.forward_steps):
            action = run.record.step(step.name)
            if action is None or action.status is StepStatus.REFUSED:
                continue
            started = self._clock.time()
            outcome = await self._call(run, step, Phase.COMPENSATE, self._settings.forever_policy)
            if outcome.status is not CallStatus.SUCCEEDED:
                await self._attention(run, outcome.reason)
                return SagaStatus.COMPENSATING
            run.compensations += 1
            self.stats.compensations += 1
            done.append(self._step_record(step, Phase.COMPENSATE, outcome, started))
            self._crash.hit("compensation.during")
        await self._log(run, "end.failed", done, SagaStatus.FAILED, reason, attention=False)
        return SagaStatus.FAILED

    async def _confirm(self, run: _Run) -> SagaStatus:
        """Drive every retriable step to success, in order."""
        done: list[StepRecord] = []
        for step in run.definition.retriable_steps:
            started = self._clock.time()
            outcome = await self._call(run, step, Phase.CONFIRM, self._settings.forever_policy)
            if outcome.status is not CallStatus.SUCCEEDED:
                await self._attention(run, outcome.reason)
                return SagaStatus.CONFIRMING
            done.append(self._step_record(step, Phase.CONFIRM, outcome, started))
            self._crash.hit("confirmation.during")
        await self._log(run, "end.confirmed", done, SagaStatus.CONFIRMED, attention=False)
        return SagaStatus.CONFIRMED

    # ------------------------------------------------------------------------ helpers

    async def _call(self, run: _Run, step: Step, phase: Phase, policy: RetryPolicy) -> CallOutcome:
        builder = step.action if phase is not Phase.COMPENSATE else step.compensation
        assert builder is not None  # guaranteed by the definition check
        invocation = builder(run.context())
        command = Command(
            invocation.service,
            invocation.action,
            make_key(run.saga_id, step.key_name(), phase),
            invocation.payload,
        )

        flag = None
        if policy.unlimited:

            async def flag() -> None:
                await self._attention(run, f"{command.service} {command.action}: still failing")

        started = self._clock.monotonic()
        with self.observer.calling(run.saga_id, step.name, phase):
            outcome = await self.caller.call(
                command,
                policy,
                f"{step.name}:{phase.value}",
                on_slow=flag,
                slow_after=self._settings.attention_after,
            )
            elapsed = self._clock.monotonic() - started
            self.observer.called(run.saga_id, step.name, phase, outcome, elapsed)
        run.calls += 1
        run.attempts += outcome.attempts
        return outcome

    def _step_record(
        self, step: Step, phase: Phase, outcome: CallOutcome, started: float
    ) -> StepRecord:
        return StepRecord(
            step.name,
            phase,
            _STEP_STATUS[outcome.status],
            outcome.body,
            outcome.reason,
            outcome.attempts,
            started,
            self._clock.time(),
        )

    async def _log_create(
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

    async def _log(
        self,
        run: _Run,
        what: str,
        steps: list[StepRecord],
        status: SagaStatus | None = None,
        reason: str | None = None,
        attention: bool | None = None,
    ) -> None:
        self._crash.hit(f"log.before:{what}")
        await self.store.update(
            run.saga_id,
            steps=steps,
            status=status,
            reason=reason,
            needs_attention=attention,
            owner=self.owner,
        )
        self._crash.hit(f"log.after:{what}")
        # Keep the in-memory record in step with the log.
        merged = {(r.step, r.phase): r for r in run.record.steps}
        merged.update({(r.step, r.phase): r for r in steps})
        run.record = SagaRecord(
            run.record.saga_id,
            run.record.definition,
            run.record.input,
            run.record.fingerprint,
            status or run.record.status,
            tuple(merged.values()),
            reason if reason is not None else run.record.reason,
            run.record.needs_attention if attention is None else attention,
            run.record.created_at,
            self._clock.time(),
        )
        self.observer.logged(run.record, what, steps)

    async def _attention(self, run: _Run, reason: str | None) -> None:
        if run.record.needs_attention:
            return
        self.stats.needs_attention += 1
        await self._log(run, "attention", [], None, None, attention=True)


async def _shielded(work: Coroutine[Any, Any, SagaStatus]) -> SagaStatus:
    """Run ``work`` to its end even if the caller is cancelled (compensation must finish).

    A cancelled caller leaves ``work`` running on its own; should it then fail (say a new owner
    fenced off its last log write), its error is retrieved here so that it is not reported as
    an exception nobody retrieved: the saga's new owner finishes the job.
    """
    task = asyncio.ensure_future(work)
    task.add_done_callback(_retrieve)
    return await asyncio.shield(task)


def _retrieve(task: asyncio.Future[SagaStatus]) -> None:
    if not task.cancelled():
        task.exception()

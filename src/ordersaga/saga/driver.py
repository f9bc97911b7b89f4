"""Driving one saga through its life: forward steps, the decision, compensations, confirmations.

Life of a saga (every arrow is one durable write to the saga log, made *before* acting on it)::

    create ─► (step 1 ... step n-1 results held) ─► their records + pivot result + decision
                                                        "confirm" ─► confirmations + end
              └─► (held records) + refused/unknown result + decision "compensate"
                                                        ─► compensations + end

* **Intermediate results.** A forward step that succeeds before the decision has no log write
  of its own: its record rides in the decision's write (5 writes per confirmed order become 3:
  create, decision, end). That is safe because such a result is not a decision: a saga that
  crashes before its decision is ``running`` in the log without those records, and recovery
  re-sends those steps under the same idempotency keys — a service that applied one returns its
  stored reply (see :mod:`.recovery`); an operator's ``cancel`` marks every forward step without
  a logged outcome ``unknown``, so it is compensated. The crash points
  ``log.before:<step>.result`` / ``log.after:<step>.result`` mark the moment such a result is
  held for the decision's write. When the next step's call must retry (a lost message, an
  outage), the held results are written then (the ``<step>.result`` write of old, late), so a
  saga waiting on a failing service shows in the log — ``sagas list`` — where it waits.
* The success of the last forward step (the pivot, or the last compensatable step of a
  definition without one) decides the saga. With retriable steps left, the decision is
  ``confirming``; without, the decision and the end are one write: ``confirmed``.
* Forward steps are retried under one idempotency key while their outcome is unknown; when the
  budget is spent the service is probed; a still-unknown step is compensated along with the
  earlier ones. A refused step is never compensated. An outage is not a refusal: a service that
  cannot be reached holds the step waiting (see :mod:`.calls`) until the order's deadline; past
  it the saga fails, flagged for attention, its reason naming the service and since when.
* Compensations run in reverse order and confirmations in order, each retried without an attempt
  limit and shielded from cancellation; their records and the terminal status are written in one
  write at the end. Re-running them after a crash is harmless: they are idempotent.
* On a worker (``owner`` set), every log write is fenced by the worker's lease (see
  :meth:`ordersaga.saga.store.SagaStore.update`).

The :class:`Driver` holds no saga of its own: each saga's state is a :class:`~.logwriter.Run`,
rebuilt from its log record when a saga is resumed. Who may drive which saga is the executor's
business. Its log writes go through a :class:`~.logwriter.LogWriter`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from ordersaga.clock import Clock
from ordersaga.errors import ConflictError, OwnershipLost
from ordersaga.protocol.messages import Command, Phase
from ordersaga.saga.calls import DEADLINE_MARK, Caller, CallOutcome, CallStatus
from ordersaga.saga.crash import CrashPoints
from ordersaga.saga.definition import Step
from ordersaga.saga.logwriter import LogWriter, Run, cancelled, cancelled_blind
from ordersaga.saga.observe import SagaObserver
from ordersaga.saga.outcome import CANCELLED_REASON, failure_of
from ordersaga.saga.result import EngineSettings, EngineStats, SagaResult, build_saga_result
from ordersaga.saga.retry import RetryPolicy
from ordersaga.saga.store.base import SagaStatus, SagaStore, StepRecord, StepStatus
from ordersaga.slots import slot_twin

#: Enum members read once, here: on Python 3.11 ``Phase.ACTION`` read through its class takes the
#: metaclass's slow attribute path (``EnumType`` defines ``__getattr__``: ~0.9k instructions a
#: read, against a global's few dozen), and a saga reads dozens. The very members: ``is`` holds.
_ACTION, _COMPENSATE, _CONFIRM = Phase.ACTION, Phase.COMPENSATE, Phase.CONFIRM
_RUNNING, _COMPENSATING, _FAILED = SagaStatus.RUNNING, SagaStatus.COMPENSATING, SagaStatus.FAILED
_CONFIRMING, _CONFIRMED = SagaStatus.CONFIRMING, SagaStatus.CONFIRMED
_SUCCEEDED, _REFUSED, _UNKNOWN = CallStatus.SUCCEEDED, CallStatus.REFUSED, CallStatus.UNKNOWN
_STEP_SUCCEEDED, _STEP_UNKNOWN = StepStatus.SUCCEEDED, StepStatus.UNKNOWN
_STEP_REFUSED, _STEP_UNDELIVERED = StepStatus.REFUSED, StepStatus.UNDELIVERED

#: A step call's command is built on this plain twin of :class:`Command` (see
#: :mod:`ordersaga.slots`): six per order.
_CommandSlots = slot_twin(Command)
_new = object.__new__


class Driver:
    """Drives runs to their end, writing every decision to the log before acting on it."""

    def __init__(
        self,
        store: SagaStore,
        caller: Caller,
        clock: Clock,
        settings: EngineSettings,
        crash: CrashPoints,
        stats: EngineStats,
        owner: str | None,
        observer: SagaObserver,
    ) -> None:
        self.store = store
        self.observer = observer
        #: Whether the observer does anything around a call (a trace span); else no context.
        self._around_calls = type(observer).calling is not SagaObserver.calling
        self.log = LogWriter(store, clock, crash, stats, owner, observer)
        self.caller = caller
        self._clock = clock
        self._settings = settings
        self._crash = crash
        self._armed = crash.armed  # read once, as the caller does: crash points name each call
        self._stats = stats
        self._owner = owner

    async def drive(self, run: Run) -> SagaResult:
        """Drive ``run`` from wherever its record stands to its end.

        A write the log refuses means another runner took the saga over or finished it: stop
        driving it and return the stored outcome if there is one, else raise
        :class:`OwnershipLost`.
        """
        try:
            logged = run.record
            with self.observer.driving(logged):
                # (Driving itself is written out here, not a coroutine of its own: every
                # suspension of the saga resumes through each coroutine level.)
                for record in logged.steps:
                    if record.phase is _ACTION and record.status is _STEP_SUCCEEDED:
                        run.results[record.step] = record.result
                status = run.status
                reason = run.reason
                if status is _RUNNING:
                    status, reason = await self._forward(run)
                    if status is _CONFIRMING and run.on_decided is not None:
                        run.on_decided(self._result(run, status, reason))
                if status is _CONFIRMING:
                    status = await _shielded(self._confirm(run))
                elif status is _COMPENSATING:
                    status = await _shielded(self._compensate(run, reason))
                if status is _CONFIRMED:
                    self._stats.confirmed += 1
                elif status is _FAILED:
                    self._stats.failed += 1
                return self._result(run, status, reason)
        except ConflictError as exc:
            stored = await self.store.load(run.saga_id)
            if stored is not None and stored.status.terminal:
                return SagaResult.of_record(stored)
            if stored is not None and self._owner is None and cancelled(run.record, stored):
                # An operator cancelled the saga before its decision (ordersaga sagas cancel)
                # while this process drove it, with no lease to fence it off: compensate now.
                return await self.drive(Run(stored, run.definition))
            raise OwnershipLost(f"saga {run.saga_id!r}: {exc}") from exc

    @staticmethod
    def _result(run: Run, status: SagaStatus, reason: str | None) -> SagaResult:
        if run.cause is None and status in (_COMPENSATING, _FAILED):
            failure = failure_of(run.record)  # resumed from the log: decided before
            if failure is not None:
                run.failed_step, run.cause = failure.step, failure.cause
        return build_saga_result(
            run.saga_id,
            status,
            reason,
            run.attempts - run.calls,
            run.compensations,
            False,
            False,
            run.fingerprint,
            run.failed_step,
            run.cause,
        )

    async def _forward(self, run: Run) -> tuple[SagaStatus, str | None]:
        steps = run.definition.forward_steps
        held: list[StepRecord] = []  # succeeded steps whose records ride in the decision
        progress = None  # their write, made once there are some (see _progress)
        crash = self._crash
        for index, step in enumerate(steps):
            if step.name in run.results:
                continue
            policy = step.retry or self._settings.action_policy
            started = self._clock.time()  # the record's start, the command's stamp
            deadline = self._deadline(run, started)
            if held and progress is None:
                progress = self._progress(run, held)
            outcome = await self._call(
                run, step, _ACTION, policy, started, deadline, on_retry=progress if held else None
            )
            record = self.log.step_record(step, _ACTION, outcome, started)
            if outcome.status is _SUCCEEDED:
                run.results[step.name] = outcome.body
                decided = index == len(steps) - 1
                if not decided:
                    # Not a decision: no write of its own (see "Intermediate results" above).
                    held.append(record)
                    if self._armed:  # (tests) a disarmed point costs no call
                        crash.hit(f"log.before:{step.name}.result")
                        crash.hit(f"log.after:{step.name}.result")
                    continue
                status = _CONFIRMING if run.definition.retriable_steps else _CONFIRMED
                await self.log.write(run, "decision.confirm", [*held, record], status, decided=True)
                return status, None
            needs_undo = bool(run.results) or outcome.status is _UNKNOWN
            status = _COMPENSATING if needs_undo else _FAILED
            run.failed_step = step.name
            run.cause = "business" if outcome.status is _REFUSED else "technical"
            attention = None
            if outcome.expired:  # an outage, not the customer: someone should look
                run.keep_flag = True
                attention = True
                self._stats.needs_attention += not run.needs_attention
            await self.log.write(
                run,
                "decision.compensate",
                [*held, record],
                status,
                outcome.reason,
                attention,
                decided=True,
                attention_reason=outcome.reason if attention else None,
            )
            return status, outcome.reason
        raise AssertionError("a checked definition always decides")  # pragma: no cover

    def _progress(self, run: Run, held: list[StepRecord]) -> Callable[[str], Awaitable[None]]:
        """The write of the ``held`` results (their trails with them) when the next step's call
        must retry: a saga waiting on a failing service shows in the log where it waits (see the
        module). "Still running": refused if an operator cancelled the saga meanwhile."""

        async def progress(_how: str) -> None:
            if held:
                records = list(held)
                held.clear()
                await self.log.write(run, f"{records[-1].step}.result", records, _RUNNING)

        return progress

    async def _compensate(self, run: Run, reason: str | None) -> SagaStatus:
        """Undo, in reverse order, every step that succeeded or whose outcome is unknown."""
        done: list[StepRecord] = []
        cancelled = cancelled_blind(run.record)
        for step in reversed(run.definition.forward_steps):
            action = run.record.step(step.name)
            if action is None and cancelled:
                # It may have been in flight when the cancel came: its outcome is unknown.
                now = self._clock.time()
                action = StepRecord(
                    step.name, _ACTION, _STEP_UNKNOWN, {}, CANCELLED_REASON, 0, now, now
                )
                done.append(action)
            if action is None or action.status in (_STEP_REFUSED, _STEP_UNDELIVERED):
                continue
            started = self._clock.time()
            policy = self._settings.forever_policy
            outcome = await self._call(run, step, _COMPENSATE, policy, started)
            if outcome.status is not _SUCCEEDED:
                await self.log.attention(run, f"compensating {step.name}: {outcome.reason}")
                return _COMPENSATING
            run.compensations += 1
            self._stats.compensations += 1
            done.append(self.log.step_record(step, _COMPENSATE, outcome, started))
            if self._armed:  # (tests) a disarmed point costs no call
                self._crash.hit("compensation.during")
        keep = run.keep_flag or (reason or "").endswith(DEADLINE_MARK)
        why = reason if keep else None  # what is left to look at: the outage that failed it
        await self.log.write(
            run, "end.failed", done, _FAILED, reason, attention=keep, attention_reason=why
        )
        return _FAILED

    async def _confirm(self, run: Run) -> SagaStatus:
        """Drive every retriable step to success, in order."""
        done: list[StepRecord] = []
        for step in run.definition.retriable_steps:
            started = self._clock.time()
            policy = self._settings.forever_policy
            outcome = await self._call(run, step, _CONFIRM, policy, started)
            if outcome.status is not _SUCCEEDED:
                await self.log.attention(run, f"confirming {step.name}: {outcome.reason}")
                return _CONFIRMING
            done.append(self.log.step_record(step, _CONFIRM, outcome, started))
            if self._armed:
                self._crash.hit("confirmation.during")
        await self.log.write(run, "end.confirmed", done, _CONFIRMED, attention=False)
        return _CONFIRMED

    # ------------------------------------------------------------------------ helpers

    def _deadline(self, run: Run, now: float) -> float:
        """The order's deadline on the monotonic clock (it counts from the saga's creation);
        ``now``: the wall-clock time just read."""
        left = run.created_at + self._settings.order_deadline - now
        return self._clock.monotonic() + left

    async def _call(
        self,
        run: Run,
        step: Step,
        phase: Phase,
        policy: RetryPolicy,
        sent_at: float,
        deadline: float | None = None,
        *,
        on_retry: Callable[[str], Awaitable[None]] | None = None,
    ) -> CallOutcome:
        """The step call of ``step``'s ``phase``, its command stamped ``sent_at`` (its first send:
        the wall-clock time the step record starts at, read once by the caller)."""
        builder = step.action if phase is not _COMPENSATE else step.compensation
        assert builder is not None  # guaranteed by the definition check
        invocation = builder(run.context)
        built: Any = _new(_CommandSlots)  # Command(...) without its frozen __init__
        built.service = invocation.service
        built.action = invocation.action
        built.key = run.saga_id + step.key_suffixes[phase]  # make_key(id, key_name, phase)
        built.payload = invocation.payload
        built.sent_at = sent_at  # its first send: retries carry this stamp
        built.__class__ = Command
        command: Command = built

        flag, slow_after = on_retry, 0.0  # an action's: at its first retry
        if policy.unlimited:
            slow_after = self._settings.attention_after

            async def flag(how: str) -> None:
                what = f"{step.name} ({phase.value}): {command.service} {command.action}"
                await self.log.attention(run, f"{what} {how}")

        started = self._clock.monotonic()
        call = self.caller.call(
            command,
            policy,
            f"{step.name}:{phase}" if self._armed else "",  # only crash points read it
            on_slow=flag,
            slow_after=slow_after,
            deadline=deadline,
            fresh=run.fresh,
        )
        observer = self.observer
        if self._around_calls:
            with observer.calling(run.saga_id, step.name, phase):
                outcome = await call
                elapsed = self._clock.monotonic() - started
                observer.called(run.saga_id, step.name, phase, outcome, elapsed)
        else:
            outcome = await call
            elapsed = self._clock.monotonic() - started
            observer.called(run.saga_id, step.name, phase, outcome, elapsed)
        run.calls += 1
        run.attempts += outcome.attempts
        return outcome


def _shielded(work: Coroutine[Any, Any, SagaStatus]) -> asyncio.Future[SagaStatus]:
    """Run ``work`` to its end even if the caller is cancelled (compensation must finish).

    ``asyncio.shield`` of ``work``'s own task, written out for this one use: the caller awaits
    a future of its own that the task's one done callback (:func:`_relay`) settles, so
    cancelling the caller cancels that future, never the task. A cancelled caller leaves
    ``work`` running on its own; should it then fail (say a new owner fenced off its last log
    write), its error is retrieved there so that it is not reported as an exception nobody
    retrieved: the saga's new owner finishes the job. (Not a coroutine: the caller awaits the
    future itself, one level less for every suspension of the saga.)
    """
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    outer: asyncio.Future[SagaStatus] = loop.create_future()
    task.add_done_callback(partial(_relay, outer))
    return outer


def _relay(outer: asyncio.Future[SagaStatus], task: asyncio.Future[SagaStatus]) -> None:
    """``work``'s outcome to its caller's future, as ``asyncio.shield`` hands it over; when the
    caller left, only retrieved (see :func:`_shielded`)."""
    if outer.cancelled():
        if not task.cancelled():
            task.exception()  # mark retrieved
        return
    if task.cancelled():
        outer.cancel()
        return
    exc = task.exception()
    if exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(task.result())

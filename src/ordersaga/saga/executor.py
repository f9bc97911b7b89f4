"""The saga executor: the only thing that runs saga definitions.

:class:`SagaEngine` is the entry point: it starts sagas, records sagas decided before any step,
resumes unfinished ones, and makes sure that one process drives a saga id at most once at a time
(a second request for a running id waits for its outcome). How one saga is driven through its
steps is :mod:`ordersaga.saga.driver`; what it returns is :mod:`ordersaga.saga.result`.

* The saga log is the truth. Resuming a saga reads only its record (see :mod:`recovery`).
* On a worker (``owner`` set), every log write is fenced by the worker's lease. A write the log
  refuses means another runner took the saga over or finished it: the engine stops driving it
  and returns the stored outcome if there is one, else raises :class:`OwnershipLost`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ordersaga.clock import Clock, SystemClock
from ordersaga.errors import ConfigError
from ordersaga.saga.breaker import Breakers
from ordersaga.saga.calls import Caller
from ordersaga.saga.crash import NO_CRASH, CrashPoints
from ordersaga.saga.definition import SagaDefinition
from ordersaga.saga.driver import Driver
from ordersaga.saga.logwriter import Run
from ordersaga.saga.observe import SagaObserver
from ordersaga.saga.result import (
    MISMATCH_REASON,
    DecisionCallback,
    EngineSettings,
    EngineStats,
    SagaResult,
)
from ordersaga.saga.store.base import SagaRecord, SagaStatus, SagaStore
from ordersaga.transport.base import Transport

#: Read once: an enum member read through its class is slow on Python 3.11 (see ``_ACTION`` in
#: :mod:`.driver`).
_RUNNING = SagaStatus.RUNNING

__all__ = [
    "MISMATCH_REASON",
    "DecisionCallback",
    "EngineSettings",
    "EngineStats",
    "SagaEngine",
    "SagaResult",
]


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
        self.breakers = breakers if breakers is not None else Breakers(self._clock)
        self._crash = crash
        self._armed = crash.armed  # read once, as the driver does
        self.caller = Caller(
            transport,
            self.breakers,
            self._clock,
            rng or random.Random(),
            crash,
            self._settings.probe_policy,
            self._settings.max_message_age,
        )
        self.stats = EngineStats()
        self._driver = Driver(
            store, self.caller, self._clock, self._settings, crash, self.stats, owner, self.observer
        )
        # One runner per saga id in this process: a second request for the same id waits (for
        # a future made when it comes; see _owned).
        self._inflight: dict[str, asyncio.Future[SagaResult] | None] = {}

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
        if saga_id in self._inflight:
            result = await asyncio.shield(self._waiter(saga_id))
            return self._as_repeat(result, fingerprint)
        input = self.observer.stamp(saga_id, input)
        # _owned and _create_and_run written out here, not coroutines of their own (every
        # suspension of the saga resumes through each coroutine level; see Driver.drive).
        self._inflight[saga_id] = None
        try:
            record, created = await self._driver.log.create(
                saga_id, saga_def.name, input, fingerprint, _RUNNING, None
            )
            if created:
                self.stats.started += 1
                if self._armed:  # (tests) a disarmed point costs no call
                    self._crash.hit("saga.created")
                run = Run(record, saga_def, on_decided=on_decided, fresh=True)
                result = await self._driver.drive(run)
            else:
                result = await self._existing(record, fingerprint)
        except BaseException as exc:
            self._settle(saga_id, exc)
            raise
        self._settle(saga_id, result)
        return result

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
        if saga_id in self._inflight:
            return self._as_repeat(await asyncio.shield(self._waiter(saga_id)), fingerprint)

        async def decide() -> SagaResult:
            record, created = await self._driver.log.create(
                saga_id, definition, input, fingerprint, SagaStatus.FAILED, reason
            )
            if created:
                self.stats.failed += 1
                self.observer.logged(record, "create", [])
                return SagaResult(
                    saga_id, SagaStatus.FAILED, reason, fingerprint=fingerprint, cause="input"
                )
            return await self._existing(record, fingerprint)

        return await self._owned(saga_id, decide())

    async def resume(self, record: SagaRecord) -> SagaResult:
        """Finish an unfinished saga from its log record (recovery)."""
        if record.saga_id in self._inflight:
            return await asyncio.shield(self._waiter(record.saga_id))
        self.stats.resumed += 1
        run = Run(record, self._definition(record.definition))
        return await self._owned(record.saga_id, self._driver.drive(run))

    # ----------------------------------------------------------------------- ownership

    async def _owned(self, saga_id: str, work: Any) -> SagaResult:
        # The id is in flight; a future for its outcome is made only when a second request
        # comes to wait for it (_waiter): nearly every saga has none.
        self._inflight[saga_id] = None
        try:
            result: SagaResult = await work
        except BaseException as exc:
            self._settle(saga_id, exc)
            raise
        self._settle(saga_id, result)
        return result

    def _settle(self, saga_id: str, outcome: SagaResult | BaseException) -> None:
        """The id is no longer in flight: hand its outcome to whoever waits for it (_waiter)."""
        future = self._inflight.pop(saga_id)
        if future is None:
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
        else:
            future.set_result(outcome)

    def _waiter(self, saga_id: str) -> asyncio.Future[SagaResult]:
        """The outcome of the saga ``saga_id``, which this engine is driving now."""
        future = self._inflight[saga_id]
        if future is None:
            future = self._inflight[saga_id] = asyncio.get_running_loop().create_future()
        return future

    def _as_repeat(self, result: SagaResult, fingerprint: str) -> SagaResult:
        if result.fingerprint != fingerprint:
            return _mismatch(result.saga_id)
        return dataclasses.replace(result, replayed=True, mismatch=False)

    def _definition(self, name: str) -> SagaDefinition:
        try:
            return self._definitions[name]
        except KeyError:
            raise ConfigError(f"no saga definition named {name!r}") from None

    async def _existing(self, record: SagaRecord, fingerprint: str) -> SagaResult:
        if record.fingerprint != fingerprint:
            return _mismatch(record.saga_id)
        if record.status.terminal:
            return SagaResult.of_record(record)
        # Unfinished in the log but not running here: finish it now (as recovery would).
        self.stats.resumed += 1
        result = await self._driver.drive(Run(record, self._definition(record.definition)))
        return dataclasses.replace(result, replayed=True)


def _mismatch(saga_id: str) -> SagaResult:
    return SagaResult(saga_id, SagaStatus.FAILED, MISMATCH_REASON, mismatch=True, cause="input")

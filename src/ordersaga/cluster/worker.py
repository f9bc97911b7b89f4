"""`ordersaga worker`: one of any number of processes executing the sagas of a shared log.

A worker claims unfinished sagas from the PostgreSQL saga log, oldest first, with a lease
(:meth:`PostgresSagaStore.claim`: ``FOR UPDATE SKIP LOCKED``, so concurrent claims never hand out
the same saga), and drives each with the saga engine (``engine.resume``), talking to the
services over HTTP. Why no saga ever runs on two workers at once, and why a dead worker's sagas
are finished by the others:

* **Leases.** A claimed saga belongs to its worker until ``lease_until`` (database clock).
  The worker renews the leases of all its running sagas every ``lease / 3`` seconds. A killed
  worker renews nothing: its leases lapse and other workers claim its sagas, which resume from
  the log like after a crash (see :mod:`ordersaga.saga.recovery` for why that is safe).
* **Fencing.** Every log write of a worker's engine carries its owner id and is refused unless
  the saga is still held by it (``SagaStore.update(owner=...)``, checked in the commit under the
  row lock). A worker that was merely slow — paused past its lease while another took over —
  can therefore not write one more step result or decision: the engine stops with
  :class:`OwnershipLost`. Its only possible leftover is the one service call it had in flight,
  for the first step without a logged result, which is exactly the step the new owner sends
  (the same idempotency key) or compensates (a tombstone refuses the late copy).
* **Losing a lease.** A renewal that reports a saga no longer held cancels that saga's task;
  a worker that cannot renew at all for a whole lease cancels everything it runs.

The worker claims at most ``concurrency`` sagas at once, ``claim_batch`` per claim (so that
several workers share a burst). It wakes up when a saga is created (LISTEN/NOTIFY), when one of
its sagas ends, and every ``poll`` seconds (lapsed leases announce nothing). SIGINT/SIGTERM stop
it gracefully: no more claims, up to ``grace`` seconds for the running sagas to finish, then the
rest is cancelled and every lease released so that the other workers take over at once; a
second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ordersaga.clock import Clock, SystemClock
from ordersaga.cluster.stalls import StallWatch
from ordersaga.errors import (
    AccessRefused,
    ConfigError,
    ExecutorFenced,
    OwnershipLost,
    StorageError,
)
from ordersaga.local.retention import DEFAULT_RETENTION
from ordersaga.local.telemetry import TelemetrySettings
from ordersaga.saga.definition import SagaDefinition
from ordersaga.saga.events import EventLog
from ordersaga.saga.executor import EngineSettings, SagaEngine
from ordersaga.saga.store import PostgresSagaStore
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.saga.store.signals import DONE_CHANNEL, Wakeup
from ordersaga.transport.http import HttpSettings

__all__ = ["Worker", "WorkerCounts", "WorkerSettings", "default_worker_id"]


def default_worker_id() -> str:
    """``host:pid:random``: unique per process, readable in the log's ``owner`` column."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    store_url: str
    services: Mapping[str, str]
    worker_id: str = field(default_factory=default_worker_id)
    concurrency: int = 32
    lease: float = 10.0  # seconds a claim holds a saga; renewed every lease / 3
    claim_batch: int = 16  # sagas taken per claim at most
    poll: float = 0.25  # seconds between claims when nothing announces work
    grace: float = 10.0  # seconds a stopping worker lets its running sagas finish
    fault_rate: float = 0.0
    seed: int | None = None
    http: HttpSettings = field(default_factory=HttpSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    stats_file: Path | None = None
    #: User saga definitions run beside the order saga (``ordersaga worker --saga``).
    sagas: tuple[SagaDefinition, ...] = ()
    telemetry: TelemetrySettings = field(default_factory=TelemetrySettings)
    #: Finished sagas older than this are compacted in the log, periodically; None: never.
    retention: float | None = DEFAULT_RETENTION
    #: The data key the sagas' cards were sealed with (the submitters' and the API's).
    data_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.data_key is None:
            raise ConfigError(
                "worker: needs the data key of the saga log (ORDERSAGA_DATA_KEY or --key-file)"
            )
        if self.concurrency < 1 or self.claim_batch < 1:
            raise ConfigError("worker: concurrency and claim batch must be at least 1")
        if not self.lease > 0 or not self.poll > 0 or self.grace < 0:
            raise ConfigError("worker: lease and poll must be positive, grace at least 0")
        if not self.worker_id or len(self.worker_id) > 200:
            raise ConfigError("worker: the id must be 1-200 characters")


@dataclass(slots=True)
class WorkerCounts:
    claimed: int = 0  # sagas claimed
    taken_over: int = 0  # ... of which another runner had started (steps in the log)
    confirmed: int = 0
    failed: int = 0
    lost: int = 0  # stopped because another worker took them over (lease lapsed)
    released: int = 0  # handed back unfinished (stopping)
    errors: int = 0  # ended by an error (the saga log failed, say); retried after the lease
    claims: int = 0  # claim transactions
    renewals: int = 0  # renew transactions
    let_go: int = 0  # leases left to lapse: the saga waited for a service unreachable from here


class Worker:
    """Claims and drives sagas until :meth:`stop` (see the module doc)."""

    def __init__(
        self,
        settings: WorkerSettings,
        store: PostgresSagaStore,
        engine: SagaEngine,
        *,
        wakeup: Wakeup | None = None,
        log: Callable[[str], None] = lambda _m: None,
        events: EventLog | None = None,
        health: Callable[[], Awaitable[str | None]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock or SystemClock()  # lease renewal, its deadline, the grace period
        self.owner = settings.worker_id
        self.store = store
        self.engine = engine
        self.counts = WorkerCounts()
        self._wakeup = wakeup
        self._log = log
        self._events = events  # claims and takeovers, with --log-format json
        self._nudge = wakeup.event if wakeup is not None else asyncio.Event()
        # Each write batch that finishes sagas NOTIFYs the submitters, at its commit.
        store.announce_finished(DONE_CHANNEL)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finished: list[str] = []  # sagas handed back whose leases are still to be released
        self._stopping = False
        self._hurry = asyncio.Event()  # a second stop request: no grace period
        self._renewed_at = self._clock.monotonic()
        self._claim_failing = False
        #: Why this worker lost its right to execute the log (it then stops at once).
        self.fenced: str | None = None
        #: Why a service refused this worker's token (it then stops: a configuration fault).
        self.refused: str | None = None
        self._health = health
        self._unhealthy: str | None = None  # why claiming is paused (a service is unreachable)
        self._stalls = StallWatch(log)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def stop(self) -> None:
        """Stop claiming and finish (idempotent; a second call cancels the running sagas)."""
        if self._stopping:
            self._hurry.set()
        self._stopping = True
        self._nudge.set()

    async def run(self) -> WorkerCounts:
        renewer = asyncio.create_task(self._renew_forever(), name="ordersaga lease renewal")
        try:
            while not self._stopping:
                if not await self._claim_once():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._nudge.wait(), self.settings.poll)
                    self._nudge.clear()
            await self._drain()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._hand_back()
        return self.counts

    # -- claiming ---------------------------------------------------------------------------------

    async def _healthy(self) -> bool:
        """Whether every service answers its health check (claiming pauses while one does not).

        A saga claimed while a service is unreachable could only wait; left in the pool, a
        worker that can reach every service takes it.
        """
        if self._health is None:
            return True
        problem = await self._health()
        if problem != self._unhealthy:
            self._log(f"not claiming: {problem}" if problem else "every service answers: claiming")
            self._unhealthy = problem
        return problem is None

    async def _claim_once(self) -> bool:
        """Claim what fits; True when it filled the batch (more may be waiting)."""
        limit = min(self.settings.concurrency - self.running, self.settings.claim_batch)
        if limit <= 0 or not await self._healthy():
            return False
        try:
            records = await self.store.claim(
                self.owner, self.settings.lease, limit, include_held=False
            )
        except ExecutorFenced as exc:
            self.fenced = str(exc)
            self._log(f"lost the right to execute: {exc}; stopping")
            self.stop()
            self.stop()
            return False
        except StorageError as exc:
            if not self._claim_failing:  # once per outage, not once per poll
                self._log(f"claim failed (retrying every {self.settings.poll:g} s): {exc}")
            self._claim_failing = True
            return False
        if self._claim_failing:
            self._log("claiming again")
            self._claim_failing = False
        self.counts.claims += 1
        for record in records:
            if record.saga_id in self._tasks:
                continue  # ours already: our lease had lapsed and nobody else took it
            self.counts.claimed += 1
            takeover = bool(record.steps) or record.status is not SagaStatus.RUNNING
            self.counts.taken_over += takeover
            if self._events is not None:
                self._events.claimed(record, takeover)
            task = asyncio.create_task(self._drive(record), name=f"saga {record.saga_id}")
            self._tasks[record.saga_id] = task
            task.add_done_callback(functools.partial(self._ended, record.saga_id))
        return len(records) == limit

    def _ended(self, saga_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(saga_id, None)
        self._nudge.set()  # a slot is free

    async def _drive(self, record: SagaRecord) -> None:
        try:
            result = await self.engine.resume(record)
        except ExecutorFenced as exc:
            if self.fenced is None:
                self.fenced = str(exc)
                self._log(f"lost the right to execute: {exc}; stopping")
                self.stop()
                self.stop()  # no grace period: nothing more may be written
            return
        except AccessRefused as exc:
            # The service never looked at the call: the saga stays as it is (not failed), our
            # lease is handed back, and the worker stops for the operator to fix the token.
            if self.refused is None:
                self.refused = str(exc)
                self._log(f"{exc}; stopping (saga {record.saga_id} and the rest stay unfinished)")
                self.stop()
            self._finished.append(record.saga_id)  # released on the way out, for the others
            return
        except OwnershipLost:
            self.counts.lost += 1
            self._log(f"saga {record.saga_id}: taken over by another worker; stopped")
            return
        except Exception as exc:  # the saga log failed, or a bug: never take the worker down
            self.counts.errors += 1  # our lease lapses; another worker (or we) will retry
            self._log(f"saga {record.saga_id}: stopped by an error: {exc!r}")
            return
        if result.status.terminal:
            if result.status is SagaStatus.CONFIRMED:
                self.counts.confirmed += 1
            else:
                self.counts.failed += 1
            # Nothing to release: the write that finished the saga ended its lease; the
            # submitters were notified by its commit.
        # Not finished (a confirmation flagged for attention): the lease lapses, and the saga
        # is claimed again later, by us or another worker.

    # -- leases -----------------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        interval = self.settings.lease / 3
        while True:
            await self._clock.sleep(interval)
            await self._renew()

    async def _renew(self) -> None:
        ids, stalled = self._stalls.split(self._tasks, self.engine.caller.stalled)
        self.counts.let_go = self._stalls.let_go
        finished, self._finished = self._finished, []
        try:
            held = set(await self.store.renew(self.owner, ids, self.settings.lease))
            if stalled:  # ends their leases now, keeping them ours (see cluster.stalls)
                held |= set(await self.store.renew(self.owner, stalled, 0.0))
                ids += stalled
            self.counts.renewals += 1
            await self.store.release(self.owner, finished)
        except StorageError as exc:
            self._finished.extend(finished)
            if self._clock.monotonic() - self._renewed_at > self.settings.lease:
                self._log(f"cannot renew leases for {self.settings.lease} s ({exc}); stopping all")
                for running in list(self._tasks.values()):
                    running.cancel()
                self._renewed_at = self._clock.monotonic()  # say it once per lease, not per attempt
            return
        self._renewed_at = self._clock.monotonic()
        for saga_id in ids:
            task = self._tasks.get(saga_id)
            if saga_id not in held and task is not None:
                self.counts.lost += 1
                self._log(f"saga {saga_id}: lease lost to another worker; stopped")
                task.cancel()

    # -- stopping ---------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Give running sagas ``grace`` seconds (less after a second stop), then cancel them."""
        if self._tasks and self.settings.grace > 0:
            self._log(f"stopping: waiting up to {self.settings.grace:g} s for {self.running} sagas")
            hurry = asyncio.create_task(self._hurry.wait())
            try:
                deadline = self._clock.monotonic() + self.settings.grace
                while self._tasks and not self._hurry.is_set():
                    left = deadline - self._clock.monotonic()
                    if left <= 0:
                        break
                    await asyncio.wait(
                        [*self._tasks.values(), hurry],
                        timeout=left,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            finally:
                hurry.cancel()

    async def _hand_back(self) -> None:
        """Cancel what still runs and release every lease we hold."""
        unfinished = list(self._tasks)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.counts.released += len(unfinished)
        with contextlib.suppress(StorageError):
            await self.store.release(self.owner, unfinished + self._finished)
            self._finished = []

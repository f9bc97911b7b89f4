"""Submitting orders to workers: `ordersaga run --submit-only` (and the order API).

In the distributed setup a saga is *created* in the shared PostgreSQL log by a submitter and
*executed* by whichever worker claims it (:mod:`ordersaga.cluster.worker`). :class:`Submitter` is
the submitter's side of :class:`ordersaga.local.pipeline.Decider`: the run pipeline parses,
admits, orders and prints exactly as it does with the in-process engine, only each decision is
made elsewhere:

* ``start`` creates the saga (status ``running``, no owner) and waits until it is finished;
  if the id exists already, the log's fingerprint tells a resubmission (its outcome is replayed,
  after waiting if it is still running) from another order reusing the id (``mismatch``).
* ``record_failed`` creates the saga already ``failed`` (an invalid order), with the same
  resubmission rules.

Waiting is one query for all awaited ids at a time, run when a worker announces finished sagas
(LISTEN/NOTIFY) and otherwise every ``poll`` seconds. A decision reads each outcome summed up by
the server (:meth:`PostgresSagaStore.outcomes`: the failed step and its cause, the retries and
compensations its step records count), not the step records themselves; :meth:`Submitter.wait`
(the order API's) reads the whole record (:meth:`PostgresSagaStore.finished`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from ordersaga.cluster.liveness import warn_without_workers
from ordersaga.errors import ConfigError, StorageError
from ordersaga.local.output import StreamSink
from ordersaga.local.pipeline import Pipeline
from ordersaga.local.progress import live_progress
from ordersaga.local.run import RunOptions, RunReport
from ordersaga.local.stats import RunStats
from ordersaga.orders.vault import CardVault
from ordersaga.saga.executor import MISMATCH_REASON, DecisionCallback, SagaResult
from ordersaga.saga.store import PostgresSagaStore, open_store
from ordersaga.saga.store.base import SagaRecord, SagaStatus
from ordersaga.saga.store.signals import DONE_CHANNEL, WORK_CHANNEL, Notifier, Wakeup

__all__ = ["SubmitSettings", "Submitter", "open_pg_store", "submit_orders"]


@dataclass(frozen=True, slots=True)
class SubmitSettings:
    #: Seconds between two reads of the awaited outcomes when no worker announces any.
    poll: float = 0.1
    #: The same without a notification channel (LISTEN failed): polling is all there is.
    poll_unnotified: float = 0.01
    #: A saga log that keeps failing this long fails every request still waiting.
    give_up_after: float = 30.0
    #: Warn when no awaited saga has finished for this long (are any workers running?).
    quiet_warning: float = 15.0


async def open_pg_store(
    url: str | None, what: str, *, read_only: bool = False
) -> PostgresSagaStore:
    """The PostgreSQL saga log at ``url``; ConfigError for anything else."""
    if not url or not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{what} needs --store postgresql://... (the log the workers share)")
    store = await open_store(url, read_only=read_only)
    assert isinstance(store, PostgresSagaStore)
    return store


def outcome_of(record: SagaRecord, *, replayed: bool) -> SagaResult:
    """A finished saga's :class:`SagaResult`, read from its step records or their summary
    (:meth:`PostgresSagaStore.outcomes`); a replayed request reports what the original saga
    cost."""
    return SagaResult.of_record(record, replayed=replayed)


class Submitter:
    """Creates sagas in the shared log and waits for the workers' outcomes (a ``Decider``)."""

    def __init__(
        self,
        store: PostgresSagaStore,
        settings: SubmitSettings | None = None,
        *,
        wakeup: Wakeup | None = None,
        clock: Callable[[], float] = time.monotonic,
        warn: Callable[[str], None] = lambda _m: None,
    ) -> None:
        self.store = store
        self._warn = warn
        self._settings = settings or SubmitSettings()
        self._wakeup = wakeup
        self._clock = clock
        self._work = Notifier(store, WORK_CHANNEL)
        #: The waiters of each awaited saga: for its whole record (:meth:`wait`), for its
        #: outcome only (a decision's).
        self._waiting: dict[str, list[asyncio.Future[SagaRecord]]] = {}
        self._outcomes: dict[str, list[asyncio.Future[SagaRecord]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nudge = wakeup.event if wakeup is not None else asyncio.Event()

    @classmethod
    async def open(
        cls,
        store: PostgresSagaStore,
        settings: SubmitSettings | None = None,
        warn: Callable[[str], None] = lambda _m: None,
    ) -> Submitter:
        """A submitter listening for finished sagas (polling only, with a warning, if it can't)."""
        try:
            wakeup: Wakeup | None = await Wakeup.open(store.database.url, [DONE_CHANNEL])
        except StorageError as exc:
            warn(f"{exc}; polling the saga log instead")
            wakeup = None
        return cls(store, settings, wakeup=wakeup, warn=warn)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._work.close()
        if self._wakeup is not None:
            await self._wakeup.close()

    # -- the Decider interface -----------------------------------------------------------------

    async def start(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        *,
        on_decided: DecisionCallback | None = None,
    ) -> SagaResult:
        # The workers decide; this side learns the outcome when the saga has finished.
        del on_decided
        existing = await self.store.create_or_existing(saga_id, definition, input, fingerprint)
        if existing is not None:
            return await self._answer(existing, False, fingerprint)
        self._work.poke()
        record = await self._await(self._outcomes, saga_id)
        return outcome_of(record, replayed=False)

    async def record_failed(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        reason: str,
    ) -> SagaResult:
        record, created = await self.submit(definition, saga_id, input, fingerprint, reason)
        return await self._answer(record, created, fingerprint)

    async def submit(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        failed: str | None = None,
    ) -> tuple[SagaRecord, bool]:
        """Create the saga (already ``failed`` with reason ``failed``, if given) without waiting.

        Returns the stored record and whether this call created it (else the caller compares
        fingerprints). A new running saga is announced to the workers.
        """
        status = SagaStatus.RUNNING if failed is None else SagaStatus.FAILED
        record, created = await self.store.create(
            saga_id, definition, input, fingerprint, status=status, reason=failed
        )
        if created and failed is None:
            self._work.poke()
        return record, created

    async def _answer(self, record: SagaRecord, created: bool, fingerprint: str) -> SagaResult:
        if not created and record.fingerprint != fingerprint:
            return SagaResult(
                record.saga_id, SagaStatus.FAILED, MISMATCH_REASON, mismatch=True, cause="input"
            )
        if not record.status.terminal:
            record = await self._await(self._outcomes, record.saga_id)
        return outcome_of(record, replayed=not created)

    # -- waiting ---------------------------------------------------------------------------------

    async def wait(self, saga_id: str) -> SagaRecord:
        """The record of ``saga_id`` once it is finished."""
        return await self._await(self._waiting, saga_id)

    def _await(
        self, waiting: dict[str, list[asyncio.Future[SagaRecord]]], saga_id: str
    ) -> asyncio.Future[SagaRecord]:
        """A future of the record ``waiting`` is to receive for ``saga_id``, its waiter's own:
        a waiter giving up (cancelled) cancels nothing that another one waits for."""
        loop = self._loop
        if loop is None:  # looked up once: each lookup is a system call (getpid)
            loop = self._loop = asyncio.get_running_loop()
        future = loop.create_future()
        futures = waiting.get(saga_id)
        if futures is None:
            waiting[saga_id] = [future]
        else:
            futures[:] = [f for f in futures if not f.done()]  # forget those that gave up
            futures.append(future)
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll(), name="ordersaga submit poll")
        return future

    async def _poll(self) -> None:
        interval = self._settings.poll if self._wakeup else self._settings.poll_unnotified
        failing_since: float | None = None
        progress_at, warned = self._clock(), False
        try:
            while self._waiting or self._outcomes:
                self._nudge.clear()
                try:
                    found = await self._read()
                except StorageError as exc:
                    failing_since = failing_since or self._clock()
                    if self._clock() - failing_since > self._settings.give_up_after:
                        self._fail_all(exc)
                        return
                    found = 0
                else:
                    failing_since = None
                if found:
                    progress_at, warned = self._clock(), False
                elif not warned and self._clock() - progress_at > self._settings.quiet_warning:
                    warned = True
                    self._warn(
                        f"{len(self._waiting) + len(self._outcomes)} sagas wait for a worker;"
                        f" none finished for {self._settings.quiet_warning:g} s"
                        " (is 'ordersaga worker' running?)"
                    )
                if self._waiting or self._outcomes:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._nudge.wait(), interval)
        finally:
            self._poller = None

    async def _read(self) -> int:
        """Hand the finished of the awaited sagas to their waiters; how many there were."""
        found = 0
        for waiting, read in (
            (self._outcomes, self.store.outcomes),
            (self._waiting, self.store.finished),
        ):
            if not waiting:
                continue
            records = await read(list(waiting))
            found += len(records)
            for record in records:
                for future in waiting.pop(record.saga_id, ()):
                    if not future.done():
                        future.set_result(record)
        return found

    def _fail_all(self, exc: Exception) -> None:
        for waiting in (self._outcomes, self._waiting):
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            waiting.clear()


async def submit_orders(
    options: RunOptions,
    lines: AsyncIterator[tuple[int, bytes | None]],
    out: TextIO,
    err: TextIO,
    settings: SubmitSettings | None = None,
) -> RunReport:
    """`ordersaga run --submit-only`: the run pipeline, with workers deciding every saga."""

    def warn(message: str) -> None:
        err.write(f"ordersaga: warning: {message}\n")

    started = time.monotonic()
    stats = RunStats(options.stats_file)
    stats.enter("opening")
    if options.runtime.data_key is None:
        raise ConfigError(
            "run --submit-only needs the data key the workers use"
            " (ORDERSAGA_DATA_KEY or --key-file)"
        )
    vault = CardVault(options.runtime.data_key)
    store = await open_pg_store(options.runtime.store_url, "run --submit-only")
    try:
        submitter = await Submitter.open(store, settings, warn)
        try:
            sink = StreamSink(out, err, options.json_lines, options.verbose)
            pipeline = Pipeline(submitter, sink, vault, options.concurrency, options.ordered)
            stats.counts = pipeline.counts
            lonely = asyncio.create_task(warn_without_workers(store, warn))
            try:
                async with live_progress(pipeline.counts, options.progress), stats.periodic():
                    stats.enter("running")
                    counts = await pipeline.run(lines)
            finally:
                lonely.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lonely
        finally:
            await submitter.close()
    except BaseException:
        stats.enter("aborted")
        raise
    finally:
        await store.close()
    stats.enter("done")
    return RunReport(counts, time.monotonic() - started, None, None)

"""Group commit: the writes of concurrent coroutines share one transaction and one commit.

Used by the saga log (:mod:`ordersaga.saga.store.batching`) and by the participant services
(:mod:`ordersaga.participant.kit`); it knows nothing about either.

How it works. :meth:`GroupCommitter.submit` appends the write to the pending batch with a future
and, if no flusher is running, starts one as a task. A task's first step runs on the *next*
iteration of the event loop, so every coroutine that is ready in the current iteration adds its
write to the same batch first. The flusher takes up to ``max_batch`` writes, hands them to the
backend's ``apply`` (one transaction, one commit), and only then resolves each caller's future:
no call returns before the commit that carries its write. While a flush awaits its commit
(PostgreSQL), new writes collect in the next batch; the flusher loops until nothing is pending.
There is only ever one flusher per committer, so writes are applied in the order they were
submitted.

A failing write must not fail its neighbours. ``apply`` reports a per-write error as that write's
outcome without aborting the transaction; if the transaction as a whole fails, the batch is
re-applied one write per transaction, so each caller gets its own precise outcome.

Cancellation: a caller cancelled before its batch is taken withdraws its write; once the batch is
taken, the write is committed (or not) regardless, as with any cancelled commit.

``max_batch=1`` turns batching off: every call runs its own transaction at once (concurrently, on
a PostgreSQL pool), which is the baseline a benchmark compares against. Concurrent calls are then
no longer applied in a guaranteed order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from ordersaga.errors import StorageError
from ordersaga.telemetry.histogram import BATCH_SIZES, Histogram

W = TypeVar("W")
R = TypeVar("R")

#: Apply writes in one transaction; return one outcome per write (a value or the write's error).
ApplyBatch = Callable[[Sequence[W]], Awaitable[list[R | Exception]]]

DEFAULT_MAX_BATCH = 512


class Counters(Protocol):
    """Where a committer counts: ``commits`` (transactions) and ``writes`` (calls)."""

    commits: int
    writes: int


class GroupCommitter(Generic[W, R]):
    """Batches writes from concurrent coroutines into shared commits (see the module doc)."""

    def __init__(
        self,
        apply: ApplyBatch[W, R],
        stats: Counters,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        name: str = "saga store",
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._apply = apply
        self._stats = stats
        self.max_batch = max_batch
        self._name = name
        self._pending: list[tuple[W, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: The loop the running flusher was started on (see enqueue).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._direct = 0  # unbatched writes in flight (max_batch=1)
        self._direct_idle = asyncio.Event()
        self._direct_idle.set()
        #: Writes per transaction (one observation per batch: the metrics read it when scraped).
        self.batch_sizes = Histogram(BATCH_SIZES)

    async def submit(self, write: W) -> R:
        """Queue ``write``; return its outcome once the commit carrying it is durable."""
        return await self.enqueue(write)

    def enqueue(self, write: W) -> Awaitable[R]:
        """Queue ``write`` now; awaiting the result gives its outcome, as :meth:`submit` does.

        The hot paths use it: a plain call returning a future spares every caller one coroutine
        and one level of the stack that each suspension and resumption walks.
        """
        if self._closed:
            raise StorageError(f"the {self._name} is closed")
        self._stats.writes += 1
        if self.max_batch == 1:
            return self._submit_direct(write)
        loop = self._loop
        if self._flusher is None or loop is None:
            # A new flusher: on the running loop, which later calls share while it runs (on
            # Python 3.11 asyncio.get_running_loop() makes a getpid() system call each time).
            # Once it ends, the next call looks the loop up again: a committer may outlive a loop.
            loop = self._loop = asyncio.get_running_loop()
            self._flusher = loop.create_task(self._drain(), name=f"{self._name} group commit")
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((write, future))
        return future

    async def close(self) -> None:
        """Refuse new writes and wait until every pending one is committed."""
        self._closed = True
        while self._flusher is not None:
            await asyncio.wait([self._flusher])  # its callers get its errors, not us
        await self._direct_idle.wait()

    async def _submit_direct(self, write: W) -> R:
        self._direct += 1
        self._direct_idle.clear()
        try:
            outcome = await self._apply_one(write)
        finally:
            self._direct -= 1
            if not self._direct:
                self._direct_idle.set()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _drain(self) -> None:
        batch: list[tuple[W, asyncio.Future[R]]] = []
        try:
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                batch = [(w, f) for w, f in batch if not f.cancelled()]
                if batch:
                    await self._flush(batch)
                batch = []
        except BaseException:
            # Cancelled mid-flush (the loop is shutting down): the outcome of the taken batch
            # is unknown and the rest will never be flushed; tell every waiting caller.
            for _, future in batch + self._pending:
                if not future.done():
                    future.set_exception(
                        StorageError(f"{self._name} flush aborted: outcome unknown")
                    )
            self._pending.clear()
            raise
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[W, asyncio.Future[R]]]) -> None:
        writes = [w for w, _ in batch]
        self.batch_sizes.observe(len(writes))
        outcomes: list[R | Exception]
        try:
            outcomes = await self._apply(writes)
            self._stats.commits += 1
        except Exception as exc:
            # Find out which write broke the transaction: one transaction per write.
            outcomes = [exc] if len(writes) == 1 else [await self._apply_one(w) for w in writes]
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # the caller was cancelled meanwhile
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def _apply_one(self, write: W) -> R | Exception:
        try:
            (outcome,) = await self._apply([write])
        except Exception as exc:
            return exc
        self._stats.commits += 1
        return outcome

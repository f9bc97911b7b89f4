"""Natural batching of one service's commands: as many per request as are ready, no added wait.

A command submitted while fewer than ``max_in_flight`` requests to its service are in flight
goes out at once: the request leaves on the next iteration of the event loop, together with every
other command submitted in this one (like group commit, see
:mod:`ordersaga.db.groupcommit`); at concurrency 1 that is a request of one command, sent without
delay. While ``max_in_flight`` requests are out, new commands queue; when one comes back,
everything queued (up to ``max_batch`` commands and ``max_bytes`` of items) leaves as the next
request. So the batches grow with the load, and each request carries what piled up while the
service was busy.

Each command's caller gets its own outcome: its reply, or the error of the request that carried
it. A request lost, reset or timed out leaves *every* command in it with an unknown outcome,
exactly as a lost single request does; the engine retries or probes each under its own key.

Cancellation: a caller cancelled before its command is taken withdraws it; once taken, the
command is sent regardless (its caller no longer waits for the answer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")
R = TypeVar("R")

#: Sends one request carrying ``items``; one outcome per item (a value or that item's error).
SendBatch = Callable[[Sequence[T]], Awaitable[list[R | BaseException]]]


class Batcher(Generic[T, R]):
    """Gathers items into requests (see the module docstring); ``size`` weighs each item."""

    def __init__(
        self,
        send: SendBatch[T, R],
        size: Callable[[T], int],
        *,
        max_in_flight: int,
        max_batch: int,
        max_bytes: int,
    ) -> None:
        if max_in_flight < 1 or max_batch < 1 or max_bytes < 1:
            raise ValueError("max_in_flight, max_batch and max_bytes must be at least 1")
        self._send = send
        self._size = size
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False
        #: Requests sent and items they carried (for tests and the bench).
        self.requests = 0
        self.items = 0

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item``; the future resolves with its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled and len(self._tasks) < self._max_in_flight:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return future

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending and len(self._tasks) < self._max_in_flight:
            batch = self._take()
            if not batch:
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        total = 0
        taken = 0
        for item, future in self._pending:
            if len(batch) >= self._max_batch:
                break
            weight = self._size(item)
            if batch and total + weight > self._max_bytes:
                break
            taken += 1
            if future.cancelled():
                continue
            batch.append((item, future))
            total += weight
        del self._pending[:taken]
        return batch

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._pending:
            self._dispatch()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.requests += 1
        self.items += len(batch)
        outcomes: list[R | BaseException]
        try:
            outcomes = await self._send([item for item, _ in batch])
        except asyncio.CancelledError:  # the loop is closing: nobody is left waiting
            for _, future in batch:
                if not future.done():
                    future.set_exception(_aborted())
            raise
        except Exception as exc:  # ``send`` reports errors as outcomes: this is a bug
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue  # its caller was cancelled meanwhile
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def close(self) -> None:
        """Wait for the requests in flight and those still queued."""
        while self._tasks or self._pending:
            if not self._tasks:
                self._dispatch()
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _aborted() -> Exception:
    return RuntimeError("the request carrying this command was cancelled")

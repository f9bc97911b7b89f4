"""The run pipeline: order lines in, one outcome per request out, sagas running concurrently.

    lines ─► parse ─► admission (≤ concurrency sagas in flight) ─► saga engine
                                                                     │
    outcome sink ◄── reorder window (input order, bounded) ◄─────────┘

Memory stays bounded on an endless stream: input is read in chunks only as fast as admission
lets it in, at most ``concurrency`` sagas run at once, and at most ``window`` requests are
admitted ahead of the oldest one whose outcome is not yet printed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ordersaga.orders.intake import saga_request
from ordersaga.orders.order_saga import ORDER_SAGA_NAME
from ordersaga.orders.parse import Parsed, Rejected, Skip, Unreadable, parse_line
from ordersaga.orders.vault import CardVault
from ordersaga.saga.executor import DecisionCallback, SagaResult
from ordersaga.slots import slot_twin


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer to one order request."""

    lineno: int
    order_id: str
    confirmed: bool
    reason: str | None
    retries: int = 0
    compensations: int = 0
    replayed: bool = False
    latency: float = 0.0  # seconds from admission to decision (what a benchmark reports)
    step: str | None = None  # a failed order: the step that failed it
    cause: str | None = None  # a failed order: business | technical | input | operator

    @property
    def status(self) -> str:
        return "confirmed" if self.confirmed else "failed"


_OutcomeSlots = slot_twin(Outcome)
_new = object.__new__


def _build_outcome(
    lineno: int,
    order_id: str,
    confirmed: bool,
    reason: str | None,
    retries: int,
    compensations: int,
    replayed: bool,
    latency: float,
    step: str | None,
    cause: str | None,
) -> Outcome:
    """``Outcome(...)`` with every field given, built without the frozen ``__init__`` (one per
    order; see :mod:`ordersaga.slots`)."""
    outcome: Any = _new(_OutcomeSlots)
    outcome.lineno = lineno
    outcome.order_id = order_id
    outcome.confirmed = confirmed
    outcome.reason = reason
    outcome.retries = retries
    outcome.compensations = compensations
    outcome.replayed = replayed
    outcome.latency = latency
    outcome.step = step
    outcome.cause = cause
    outcome.__class__ = Outcome
    built: Outcome = outcome  # (typed: no cast call on this path)
    return built


class Decider(Protocol):
    """Who decides a request: the saga engine in this process, or a submitter that creates the
    saga in a shared log and waits for the workers' decision (:mod:`ordersaga.cluster.submit`).

    Both give the same answers: a new id is run; the same id with the same fingerprint replays
    (or awaits) its outcome; the same id with another fingerprint is a ``mismatch``.
    """

    async def start(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        *,
        on_decided: DecisionCallback | None = None,
    ) -> SagaResult: ...

    async def record_failed(
        self,
        definition: str,
        saga_id: str,
        input: Mapping[str, Any],
        fingerprint: str,
        reason: str,
    ) -> SagaResult: ...


class Sink(Protocol):
    """Where outcomes and diagnostics go (stdout and stderr, in the CLI)."""

    def outcome(self, outcome: Outcome) -> None: ...

    def unreadable(self, lineno: int, reason: str) -> None: ...

    def rejected(self, lineno: int, order_id: str, reason: str) -> None: ...

    def flush(self) -> None: ...


@dataclass(slots=True)
class Counts:
    requests: int = 0
    confirmed: int = 0
    failed: int = 0
    unreadable: int = 0
    rejected: int = 0
    replayed: int = 0
    mismatched: int = 0
    retries: int = 0
    compensations: int = 0
    resumed: int = 0
    in_flight: int = 0

    def add(self, outcome: Outcome) -> None:
        if outcome.confirmed:
            self.confirmed += 1
        else:
            self.failed += 1
        self.replayed += outcome.replayed
        if not outcome.replayed:  # a replayed line reports what the original saga cost
            self.retries += outcome.retries
            self.compensations += outcome.compensations


class RunAborted(Exception):
    """A saga could not be driven to a decision (e.g. the saga log failed)."""


class Gate:
    """A counting semaphore with one taker: the pipeline's reading loop, which admits requests.

    What ``asyncio.Semaphore`` does for this one use, without its coroutine per acquire (and the
    generator its ``locked`` runs): :meth:`take` takes a free slot at once and returns None, else
    returns a future that :meth:`give` resolves with the next slot given back. Every order takes
    and gives back a slot of each of the two gates.
    """

    __slots__ = ("_free", "_waiter")

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiter: asyncio.Future[None] | None = None

    def take(self) -> Awaitable[None] | None:
        """None when a slot was free (it is taken), else what to await for the next one."""
        if self._free > 0:
            self._free -= 1
            return None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def give(self) -> None:
        """Give a slot back: to the waiting taker if there is one, else to the free ones."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():  # (done: the taker was cancelled)
            waiter.set_result(None)
        else:
            self._free += 1


@dataclass(slots=True)
class Pipeline:
    engine: Decider
    sink: Sink
    vault: CardVault  # seals each order's card fields and keys its fingerprint
    concurrency: int = 32
    ordered: bool = True
    window: int = 0  # 0: max(1024, 8 * concurrency)
    counts: Counts = field(default_factory=Counts)
    _pending: dict[int, Outcome] = field(default_factory=dict)
    _next_print: int = 0
    _failure: BaseException | None = None
    _stdout_closed: bool = False

    async def run(self, lines: AsyncIterator[tuple[int, bytes | None]]) -> Counts:
        in_flight = Gate(max(1, self.concurrency))
        window = Gate(self.window or max(1024, 8 * self.concurrency))
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()  # once: asyncio.create_task looks it up every time
        seq = 0
        async for lineno, raw in lines:
            if self._failure is not None:
                break
            parsed = parse_line(raw) if raw is not None else Unreadable("line longer than 1 MiB")
            if isinstance(parsed, Skip):
                continue
            if isinstance(parsed, Unreadable):
                self.counts.unreadable += 1
                self.sink.unreadable(lineno, parsed.reason)
                continue
            if isinstance(parsed, Rejected):
                self.counts.rejected += 1
                self.sink.rejected(lineno, parsed.order_id, parsed.reason)
            self.counts.requests += 1
            if self.ordered and (wait := window.take()) is not None:
                await wait
            if (wait := in_flight.take()) is not None:
                await wait
            self.counts.in_flight += 1
            task = loop.create_task(self._one(seq, lineno, parsed, in_flight, window))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            seq += 1
        if tasks:
            await asyncio.gather(*tasks)
        self._flush()
        if self._failure is not None:
            raise RunAborted(str(self._failure)) from self._failure
        return self.counts

    async def _one(
        self,
        seq: int,
        lineno: int,
        request: Parsed | Rejected,
        in_flight: Gate,
        window: Gate,
    ) -> None:
        admitted = time.perf_counter()
        order_id = request.order.order_id if isinstance(request, Parsed) else request.order_id
        early: list[SagaResult] = []

        def outcome_of(result: SagaResult) -> Outcome:
            return _build_outcome(
                lineno,
                order_id,
                result.confirmed,  # a saga still confirming is decided: it can only end confirmed
                result.reason,
                result.retries,
                result.compensations,
                result.replayed,
                time.perf_counter() - admitted,
                result.step,
                result.cause,
            )

        def decided(result: SagaResult) -> None:
            # The decision to confirm is durable: print now, the confirmations finish after.
            early.append(result)
            self._deliver(seq, outcome_of(result), window)

        # The saga of the request (see orders.intake), decided here rather than in a coroutine
        # of its own: every suspension of the saga resumes through each coroutine level.
        try:
            saga = saga_request(self.vault, request)
            if saga.failed is not None:
                result = await self.engine.record_failed(
                    ORDER_SAGA_NAME, saga.order_id, saga.input, saga.fingerprint, saga.failed
                )
            else:
                result = await self.engine.start(
                    ORDER_SAGA_NAME, saga.order_id, saga.input, saga.fingerprint, on_decided=decided
                )
        except Exception as exc:  # the log or a database failed: stop the run, keep the data
            if self._failure is None:
                self._failure = exc
            return
        finally:
            in_flight.give()
            self.counts.in_flight -= 1
        self.counts.mismatched += result.mismatch
        if early:
            # The line is out; the summary still counts what the confirmations cost.
            self.counts.retries += result.retries - early[0].retries
            self.counts.compensations += result.compensations - early[0].compensations
        else:
            self._deliver(seq, outcome_of(result), window)

    def _deliver(self, seq: int, outcome: Outcome, window: Gate) -> None:
        self.counts.add(outcome)
        if not self.ordered:
            self._emit(outcome)
            self._flush()
            return
        self._pending[seq] = outcome
        printed = False
        while self._next_print in self._pending:
            self._emit(self._pending.pop(self._next_print))
            self._next_print += 1
            window.give()
            printed = True
        if printed:
            self._flush()

    def _emit(self, outcome: Outcome) -> None:
        if self._stdout_closed:
            return
        try:
            self.sink.outcome(outcome)
        except BrokenPipeError as exc:
            self._closed(exc)

    def _flush(self) -> None:
        if self._stdout_closed:
            return
        try:
            self.sink.flush()
        except BrokenPipeError as exc:
            self._closed(exc)

    def _closed(self, exc: BrokenPipeError) -> None:
        """Nobody reads our outcomes any more (``| head -1``): admit nothing new, finish the
        sagas in flight (so the log stays tidy), then end quietly (see cli.main)."""
        self._stdout_closed = True
        if self._failure is None:
            self._failure = exc


async def read_lines(
    read: object, *, max_line: int, chunk_size: int = 1 << 16
) -> AsyncIterator[tuple[int, bytes | None]]:
    """Split a byte stream into numbered lines as it arrives; ``None`` for an overlong line.

    ``read(n)`` is a blocking read returning up to ``n`` bytes (``b""`` at the end); it runs in a
    thread, so an endless pipe is consumed as it comes. A line longer than ``max_line`` bytes is
    not kept in memory: it is reported as ``None`` once its end is found.
    """
    assert callable(read)
    buffer = bytearray()
    overlong = False
    lineno = 0
    while True:
        chunk: bytes = await asyncio.to_thread(read, chunk_size)
        if not chunk:
            break
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not overlong:
                buffer += piece
                if len(buffer) > max_line:
                    overlong = True
                    buffer.clear()
            if end < 0:
                break
            lineno += 1
            yield lineno, None if overlong else bytes(buffer)
            buffer.clear()
            overlong = False
            start = end + 1
    if buffer or overlong:
        yield lineno + 1, None if overlong else bytes(buffer)

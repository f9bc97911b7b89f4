"""Deciding a pipelined batch's commands in waves: reads that cannot see each other go together.

In a pipelined batch (:mod:`ordersaga.db.pipelined`) every read is a round trip: the commands of
a batch are decided one after the other, each reading after the writes of those before it, so a
batch of ``n`` commands that each read once costs ``n`` round trips. Most of those reads are of
rows no earlier command of the batch writes (each command's own resource, another user's
account), so :func:`decide_in_waves` decides the commands side by side and sends the reads that
are ready together, in *waves*, with one sync point each — while every command still reads what
it would read if the batch were decided one command after the other.

How. Each command's decision runs as a coroutine driven here: a read through
:class:`WaveReader` suspends it and hands the read to the driver. A wave then takes, in batch
order, each suspended read that may go now, sends them all (after the writes queued so far) and
resumes their commands with the rows. A command's plan is *settled* — its writes queued, by
``settle`` — only once every command before it is settled, so the writes reach the server in
batch order, exactly as if the batch were decided one command at a time. A read of command ``k``
may go in a wave when

* every command before ``k`` is settled (the one a one-at-a-time run would do next), or
* ``k`` declares the rows it reads (:class:`~.plan.Footprint`) and no unsettled command before
  it may write any of them (by its declared footprint; one without a footprint may write
  anything).

Why that is the same as deciding one command after the other. Command ``k``'s read runs on the
server after every write queued before its wave: the writes of all commands settled before it,
each of them before ``k``. It runs before the writes of the commands before ``k`` that are not
settled yet — none of which touches a row it reads — and before any write of a command after
``k`` (settled only after ``k`` itself, so after ``k``'s last read). So it sees the rows exactly
as they would be after the commands before ``k``, and none of those after: as in a one-at-a-time
run. Other transactions (another replica) are no different from before: a read may run earlier
than it would have one command at a time, but within the same call and the same transaction, and
a plan decided on a row that moved since still fails its compare-and-swap (or its INSERT the
primary key), while a refusal that writes nothing is linearizable at its read (see :mod:`.kit`).

A decision that awaits anything but a :class:`WaveReader` read (against the :class:`~.plan.Action`
contract) is still served: the driver awaits it for it, before the next wave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, Generic, TypeVar

from ordersaga.db import Row, Tx
from ordersaga.participant.plan import Footprint, Plan, Prepared, Reader
from ordersaga.participant.records import RECORD, encode, write_plan
from ordersaga.protocol.messages import Phase, Reply

__all__ = ["WAVE_READER", "WINDOW", "WaveReader", "apply_in_waves", "decide_in_waves"]

#: Read once (see :mod:`ordersaga.saga.driver`): the very member.
_ACTION = Phase.ACTION

T = TypeVar("T")


class _Read:
    """One read a decision waits for: awaiting it hands it to the driver, which resumes the
    decision with its rows (a list, or, for ``one``, the first row or None)."""

    __slots__ = ("one", "params", "sql")

    def __init__(self, sql: str, params: tuple[Any, ...], one: bool) -> None:
        self.sql = sql
        self.params = params
        self.one = one

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)


class WaveReader:
    """The :class:`~.plan.Reader` of a decision driven by :func:`decide_in_waves`."""

    __slots__ = ()

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        row: Row | None = await _Read(sql, params, True)
        return row

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        rows: list[Row] = await _Read(sql, params, False)
        return rows


#: How many unsettled commands a wave looks at, from the first: the reads after them wait for a
#: later wave. It bounds a wave's cost in a large batch of commands that all touch one row (each
#: of them then reads in a wave of its own), which would otherwise grow with the square of its size.
WINDOW = 64

#: The one reader every driven decision reads through (it holds nothing).
WAVE_READER = WaveReader()


class _Decision(Generic[T]):
    """One command's decision in progress: its coroutine, the read it waits for, its outcome."""

    __slots__ = ("coro", "done", "footprint", "outcome", "read")

    def __init__(self, coro: Coroutine[Any, Any, T], footprint: Footprint | None) -> None:
        self.coro = coro
        self.footprint = footprint
        self.read: _Read | None = None
        self.done = False
        self.outcome: T | None = None

    async def step(self, value: Any) -> None:
        """Resume the decision with ``value`` until it waits for a read or ends."""
        coro = self.coro
        while True:
            try:
                waited = coro.send(value)
            except StopIteration as stop:
                self.done, self.outcome, self.read = True, stop.value, None
                return
            if type(waited) is _Read:
                self.read = waited
                return
            # Not a read (a future the decision awaits itself): wait for it on its behalf.
            await _awaited(waited)
            value = None


async def _awaited(future: Any) -> None:
    """Wait until ``future`` (what a coroutine yielded to its task) is done; ``None`` (a bare
    yield, as ``asyncio.sleep(0)`` makes) is one turn of the loop."""
    if future is None:
        await asyncio.sleep(0)
    else:
        future._asyncio_future_blocking = False  # taken, as a task takes it (then awaited)
        await future


def _may_read(fp: Footprint, written: set[Any], written_any: set[str]) -> bool:
    """Whether none of the rows ``fp`` reads may be written by the unsettled commands before."""
    if written_any:
        for table, _ in fp.reads:
            if table in written_any:
                return False
    return written.isdisjoint(fp.reads)


async def decide_in_waves(
    tx: Tx,
    decisions: Sequence[tuple[Coroutine[Any, Any, T], Footprint | None]],
    settle: Callable[[T], Awaitable[None]],
) -> None:
    """Run each ``(coroutine, footprint)`` decision to its outcome, reading through ``tx`` in
    waves, and ``settle`` each outcome in order (see the module docstring).

    The coroutines must read through :class:`WaveReader`; an exception of one (or of a read, or
    of ``settle``) closes the others and is raised.
    """
    pending = [_Decision(coro, fp) for coro, fp in decisions]
    try:
        for decision in pending:
            await decision.step(None)
        settled = 0
        count = len(pending)
        while True:
            while settled < count and pending[settled].done:
                await settle(pending[settled].outcome)  # type: ignore[arg-type]
                settled += 1
            if settled == count:
                return
            wave: list[_Decision[T]] = []
            written: set[Any] = set()
            written_any: set[str] = set()
            first = pending[settled]  # not done, so waiting for a read: it always may
            for decision in pending[settled : settled + WINDOW]:
                fp = decision.footprint
                if decision.read is not None and (
                    decision is first or (fp is not None and _may_read(fp, written, written_any))
                ):
                    wave.append(decision)
                if fp is None:
                    break  # it may write any row: no read after it may go now
                written.update(fp.writes)
                written_any.update(fp.writes_any)
            reads = [(d.read.sql, d.read.params) for d in wave if d.read is not None]
            results = await tx.fetch_each(reads)
            for decision, rows in zip(wave, results, strict=True):
                read = decision.read
                assert read is not None
                await decision.step((rows[0] if rows else None) if read.one else rows)
    finally:
        for decision in pending:
            if not decision.done:
                decision.coro.close()


#: How the kit refuses an action whose resource exists (for a plan that claims nothing).
UnlessExisting = Callable[[Reader, Prepared, Plan], Awaitable[Plan]]


async def apply_in_waves(
    tx: Tx,
    commands: Sequence[Prepared],
    now: float,
    outcomes: list[Reply | Exception],
    unless_existing: UnlessExisting,
) -> None:
    """Decide a pipelined batch's ``commands`` in waves and queue each one's writes in order,
    appending its reply to ``outcomes``: the record and the claim as plain INSERTs, not waited
    for (a repeat, or a resource taken, fails its statement and so the batch, which the kit
    then runs again isolated)."""

    async def settle(decided: tuple[Prepared, Plan]) -> None:
        cmd, plan = decided
        encoded = status, _, text = encode(plan.reply)
        await tx.write(RECORD, (cmd.key, cmd.fingerprint, status, text, now), 1)
        outcomes.append(await write_plan(tx, plan, encoded))

    decisions = []
    for cmd in commands:
        footprint = cmd.action.footprint
        rows = None if footprint is None else footprint(cmd.resource, cmd.request)
        decisions.append((_decided(cmd, now, unless_existing), rows))
    await decide_in_waves(tx, decisions, settle)


async def _decided(
    cmd: Prepared, now: float, unless_existing: UnlessExisting
) -> tuple[Prepared, Plan]:
    """``cmd``'s plan, decided through the wave reader (an action that claims nothing: or the
    refusal of its existing resource)."""
    plan = await cmd.action.decide(WAVE_READER, cmd.resource, cmd.request, now)
    if plan.claim is None and cmd.action.phase is _ACTION:
        plan = await unless_existing(WAVE_READER, cmd, plan)
    return cmd, plan

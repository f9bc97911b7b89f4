"""Retention in a SQL saga log: compacting finished sagas, and sweeps over the finished ones.

Both walk the log in creation order (``seq``) and remember, per purpose (compaction, or a
sweep's name), how far they got — ``saga_retention (name, seq)``: every saga up to ``seq`` has
been looked at — and the *holes* below it — ``saga_retention_holes (name, seq)``: the sagas that
were still running, flagged for attention, or not yet old enough. A pass first looks at its
holes again, then reads on from ``seq``, ``batch_size`` sagas at a time, and stops at the first
saga created after its cutoff (a saga cannot have ended before it was created). So a pass never
rereads the millions of compact records behind it, and each saga is dealt with once.

On PostgreSQL an identity value is taken at insert time, not at commit time, so a saga created a
moment ago may commit after one with a higher ``seq``. A pass therefore never moves its mark over
a saga created less than :data:`SETTLE` seconds before its cutoff: it deals with such sagas but
reads them again next time, so a late commit with a lower ``seq`` is still found.

Why it is safe next to the engine: only finished sagas are touched, and a finished saga takes no
update (see :func:`ordersaga.saga.store.model.check_update`), so no write of the engine can race
the compaction. Candidates are read without locks, then read again inside the compacting
transaction — under the database's write lock on SQLite, under a row lock (``FOR UPDATE``) on
PostgreSQL — and only those still due are compacted: two pruners at once do each saga once,
never from steps the other already deleted. Only finished sagas are ever locked, so a worker's
batch never waits on a pruner for a row it writes. Each batch is its own
short transaction: the hot path waits for at most one batch, and PostgreSQL's autovacuum sees the
dead rows of each batch at once instead of one huge transaction's at the end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ordersaga.db import Database, Row, Tx
from ordersaga.saga.outcome import compacted_of
from ordersaga.saga.store.base import TERMINAL, PruneStats, StepRecord
from ordersaga.saga.store.model import (
    COMPACTED_PREFIX,
    compacted_input,
    record_from_row,
    step_from_row,
)
from ordersaga.saga.store.sqlbatch import chunks, placeholders

#: The name of compaction's progress; sweeps use their own names.
COMPACTED = "compacted"
#: Seconds before a pass's cutoff within which a saga's commit may still be under way.
SETTLE = 60.0

_TERMINAL = tuple(sorted(s.value for s in TERMINAL))
_IS_COMPACTED = f"input LIKE '{COMPACTED_PREFIX}%'"
_COLUMNS = (
    "seq, saga_id, status, needs_attention, created_at, updated_at,"
    f" CASE WHEN {_IS_COMPACTED} THEN 1 ELSE 0 END AS compacted"
)
_SCAN = f"SELECT {_COLUMNS} FROM sagas WHERE seq > ? ORDER BY seq LIMIT ?"
_SAGA_ROW = (
    "seq, saga_id, definition, input, fingerprint, status, reason, needs_attention,"
    " created_at, updated_at, owner, lease_until, version"
)
# Re-checked under the transaction (and, on PostgreSQL, the row lock): a saga compacted by a
# concurrent pass meanwhile is not compacted again from its already deleted steps.
_DUE = (
    f"SELECT {_SAGA_ROW} FROM sagas WHERE saga_id IN ({{ids}}) AND status IN ({{terminal}})"
    f" AND needs_attention = 0 AND NOT ({_IS_COMPACTED}) AND updated_at < ? ORDER BY seq {{lock}}"
)
_STEPS = (
    "SELECT saga_id, step, phase, status, result, reason, attempts, started_at, ended_at"
    " FROM saga_steps WHERE saga_id IN ({ids}) ORDER BY started_at, id"
)
_SET_INPUT = (
    "UPDATE sagas SET input = v.column2 FROM (VALUES {rows}) AS v WHERE sagas.saga_id = v.column1"
)

#: Called with each batch of finished sagas a sweep visits (see :func:`sweep`).
Visitor = Callable[[Sequence[str]], Awaitable[None]]


def _finished(row: Row, before: float) -> bool:
    return (
        row["status"] in _TERMINAL
        and not row["needs_attention"]
        and float(row["updated_at"]) < before
    )


@dataclass(slots=True)
class _Step:
    """One batch of a pass: the sagas to deal with, and how the remembered progress moves."""

    due: list[str] = field(default_factory=list)
    holes: list[int] = field(default_factory=list)  # new holes
    filled: list[int] = field(default_factory=list)  # old holes dealt with now
    through: int | None = None  # the new mark, if it moves
    done: bool = False  # the pass reached its cutoff
    settling: bool = False  # a saga too recent to pass was met: the mark stays below it


def _plan(
    rows: Sequence[Row], before: float, *, compacting: bool, old_holes: bool, settling: bool
) -> _Step:
    """Sort one batch (of old holes, or read on from the mark) into a :class:`_Step`.

    Compacting, an already compacted saga needs nothing more; a sweep visits every finished saga,
    compacted or not.
    """
    step = _Step()
    settling = settling or old_holes  # old holes never move the mark
    for row in rows:
        created = float(row["created_at"])
        if not old_holes and created >= before:
            step.done = True
            break
        settling = settling or created >= before - SETTLE
        dealt_with = compacting and bool(row["compacted"])
        finished = dealt_with or _finished(row, before)
        if finished and not dealt_with:
            step.due.append(row["saga_id"])
        if old_holes:
            if finished:
                step.filled.append(int(row["seq"]))
        elif not settling:
            step.through = int(row["seq"])
            if not finished:
                step.holes.append(step.through)
    step.settling = settling
    return step


async def _state(db: Database, name: str) -> tuple[int, list[int]]:
    # The tables are part of the log's schema (see :mod:`.schema`).
    row = await db.fetchone("SELECT seq FROM saga_retention WHERE name = ?", name)
    holes = await db.fetchall(
        "SELECT seq FROM saga_retention_holes WHERE name = ? ORDER BY seq", name
    )
    return (int(row["seq"]) if row else 0), [int(h["seq"]) for h in holes]


async def _remember(tx: Tx, name: str, step: _Step) -> None:
    if step.through is not None:
        await tx.execute(
            "INSERT INTO saga_retention (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
            name,
            step.through,
        )
    for seq in step.holes:
        await tx.execute(
            "INSERT INTO saga_retention_holes (name, seq) VALUES (?, ?)"
            " ON CONFLICT (name, seq) DO NOTHING",
            name,
            seq,
        )
    for chunk in chunks(step.filled, 500):
        marks = placeholders(len(chunk))
        await tx.execute(
            f"DELETE FROM saga_retention_holes WHERE name = ? AND seq IN ({marks})", name, *chunk
        )


#: Deals with one batch's due sagas; returns (sagas, step records) dealt with.
_Handle = Callable[[Sequence[str]], Awaitable[tuple[int, int]]]


async def _walk(
    db: Database,
    name: str,
    before: float,
    batch_size: int,
    handle: _Handle,
    *,
    compacting: bool,
    dry_run: bool,
) -> tuple[int, int]:
    """One pass (see the module docstring): old holes first, then on from the mark."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    through, holes = await _state(db, name)
    sagas = steps = 0

    async def deal(step: _Step) -> None:
        nonlocal sagas, steps
        if step.due:
            n, m = await handle(step.due)
            sagas, steps = sagas + n, steps + m
        if not dry_run and (step.through is not None or step.holes or step.filled):
            async with db.transaction() as tx:
                await _remember(tx, name, step)

    for chunk in chunks(holes, batch_size):
        rows = await db.fetchall(
            f"SELECT {_COLUMNS} FROM sagas WHERE seq IN ({placeholders(len(chunk))})", *chunk
        )
        plan = _plan(rows, before, compacting=compacting, old_holes=True, settling=True)
        await deal(plan)
    settling = False
    while True:
        rows = await db.fetchall(_SCAN, through, batch_size)
        step = _plan(rows, before, compacting=compacting, old_holes=False, settling=settling)
        await deal(step)
        if step.done or len(rows) < batch_size:
            return sagas, steps
        through, settling = int(rows[-1]["seq"]), step.settling


async def compact(
    db: Database, before: float, *, batch_size: int = 500, dry_run: bool = False
) -> PruneStats:
    """Compact the finished sagas that ended before ``before`` (see the module docstring)."""

    async def handle(saga_ids: Sequence[str]) -> tuple[int, int]:
        if dry_run:
            return len(saga_ids), await _count_steps(db, saga_ids)
        async with db.transaction() as tx:
            return await _compact(tx, saga_ids, before, repack=db.dialect == "sqlite")

    sagas, steps = await _walk(
        db, COMPACTED, before, batch_size, handle, compacting=True, dry_run=dry_run
    )
    return PruneStats(sagas, steps)


async def _compact(
    tx: Tx, saga_ids: Sequence[str], before: float, *, repack: bool
) -> tuple[int, int]:
    """Compact those of ``saga_ids`` still due, in ``tx``; (sagas, step records deleted).

    A compacted saga's input becomes the summary of its steps (:func:`compacted_of`: the step
    and cause of a failure, its retries and compensations), then its steps go.
    """
    sagas = steps = 0
    for chunk in chunks(saga_ids, 100):
        rows = await tx.fetchall(
            _DUE.format(
                ids=placeholders(len(chunk)),
                terminal=placeholders(len(_TERMINAL)),
                lock="" if repack else "FOR UPDATE",
            ),
            *chunk,
            *_TERMINAL,
            before,
        )
        if not rows:
            continue
        ids = [row["saga_id"] for row in rows]
        kept = await _summaries(tx, rows)
        steps += await _delete_steps(tx, ids)
        if repack:
            await _repack(tx, rows, kept)
        else:
            values = ", ".join(["(CAST(? AS TEXT), CAST(? AS TEXT))"] * len(ids))
            params = [x for saga_id in ids for x in (saga_id, kept[saga_id])]
            await tx.execute(_SET_INPUT.format(rows=values), *params)
        sagas += len(rows)
    return sagas, steps


async def _summaries(tx: Tx, rows: Sequence[Row]) -> dict[str, str]:
    """The compacted input column of each saga row, from its step records."""
    steps: dict[str, list[StepRecord]] = {row["saga_id"]: [] for row in rows}
    step_rows = await tx.fetchall(_STEPS.format(ids=placeholders(len(steps))), *steps)
    for step_row in step_rows:
        steps[step_row["saga_id"]].append(step_from_row(step_row))
    return {
        row["saga_id"]: compacted_input(compacted_of(record_from_row(row, steps[row["saga_id"]])))
        for row in rows
    }


async def _repack(tx: Tx, rows: Sequence[Row], kept: Mapping[str, str]) -> None:
    """SQLite: write the compacted rows anew, so that they fill pages of their own.

    An UPDATE that shrinks a row leaves it in its page, and the page's other rows shrink with
    it: the table would keep a page for every few compact records, most of it empty. Deleting
    the rows (their pages come free) and inserting them again, in ``seq`` order and with the
    same ``seq``, packs them densely. The transaction holds the database's write lock
    throughout, so nobody sees them missing.
    """
    ids = [row["saga_id"] for row in rows]
    await tx.execute(f"DELETE FROM sagas WHERE saga_id IN ({placeholders(len(ids))})", *ids)
    columns = [c.strip() for c in _SAGA_ROW.split(",")]
    values = ", ".join([f"({placeholders(len(columns))})"] * len(rows))
    params = [
        kept[row["saga_id"]] if column == "input" else row[column]
        for row in rows
        for column in columns
    ]
    await tx.execute(f"INSERT INTO sagas ({_SAGA_ROW}) VALUES {values}", *params)


async def _delete_steps(tx: Tx, saga_ids: Sequence[str]) -> int:
    deleted = 0
    for chunk in chunks(saga_ids, 500):
        deleted += await tx.execute(
            f"DELETE FROM saga_steps WHERE saga_id IN ({placeholders(len(chunk))})", *chunk
        )
    return deleted


async def _count_steps(db: Database, saga_ids: Sequence[str]) -> int:
    total = 0
    for chunk in chunks(saga_ids, 500):
        row = await db.fetchone(
            f"SELECT COUNT(*) AS n FROM saga_steps WHERE saga_id IN ({placeholders(len(chunk))})",
            *chunk,
        )
        total += int(row["n"]) if row else 0
    return total


async def sweep(
    db: Database,
    name: str,
    before: float,
    visit: Visitor,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
) -> int:
    """Call ``visit`` with every finished saga that ended before ``before``, once per ``name``.

    Sagas are visited in batches, in creation order, compacted or not; progress is remembered
    after each batch's visit returns, so a visit interrupted by a crash is repeated (a visitor
    must be idempotent). Returns how many sagas were visited.
    """

    async def handle(saga_ids: Sequence[str]) -> tuple[int, int]:
        await visit(saga_ids)
        return len(saga_ids), 0

    visited, _ = await _walk(
        db, name, before, batch_size, handle, compacting=False, dry_run=dry_run
    )
    return visited


async def decided(db: Database, saga_ids: Sequence[str], before: float) -> set[str]:
    """Those of ``saga_ids`` that are finished, unflagged and ended before ``before``."""
    found: set[str] = set()
    for chunk in chunks(saga_ids, 500):
        rows = await db.fetchall(
            "SELECT saga_id, status, needs_attention, updated_at FROM sagas"
            f" WHERE saga_id IN ({placeholders(len(chunk))})",
            *chunk,
        )
        found.update(row["saga_id"] for row in rows if _finished(row, before))
    return found

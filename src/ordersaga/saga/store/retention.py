"""Retention in a SQL saga log: compacting finished sagas, and sweeps over the finished ones.

Both walk the log in creation order (``seq``) from a *watermark* kept per purpose in
``saga_retention (name, seq)``: every saga at or below a purpose's watermark has been dealt with
(compacted, or visited by a sweep), so a pass never rereads the millions of compact records
behind it. A pass reads ``batch_size`` sagas at a time and stops at the first batch created
entirely after its cutoff (a saga cannot have ended before it was created). The watermark only
moves over a run of sagas that were all dealt with: a saga still running, flagged for attention
or too young is a *hole* that holds the watermark below it, and is looked at again next time.

Why it is safe next to the engine: only finished sagas are touched, and a finished saga takes no
update (see :func:`ordersaga.saga.store.model.check_update`), so no write of the engine can race
the compaction. The candidates are read without locks; the ``UPDATE`` that compacts re-checks
the conditions itself, so two pruners at once do each saga once, and a worker's batch never
waits on a pruner for a row it writes (a running saga is never locked by a pass). Each batch is
its own short transaction: the hot path waits for at most one batch, and PostgreSQL's autovacuum
sees the dead rows of each batch at once instead of one huge transaction's at the end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ordersaga.db import Database, Row, Tx
from ordersaga.saga.store.base import TERMINAL, PruneStats
from ordersaga.saga.store.model import PRUNED_INPUT
from ordersaga.saga.store.sqlbatch import chunks, placeholders

#: The watermark of compaction; sweeps name their own.
COMPACTED = "compacted"

WATERMARKS_DDL = (
    "CREATE TABLE IF NOT EXISTS saga_retention (name TEXT PRIMARY KEY, seq BIGINT NOT NULL)"
)
_TERMINAL = tuple(sorted(s.value for s in TERMINAL))
_SCAN = (
    "SELECT seq, saga_id, status, needs_attention, created_at, updated_at,"
    f" CASE WHEN input = '{PRUNED_INPUT}' THEN 1 ELSE 0 END AS compacted"
    " FROM sagas WHERE seq > ? ORDER BY seq LIMIT ?"
)
_COMPACT = (
    f"UPDATE sagas SET input = '{PRUNED_INPUT}'"
    " WHERE saga_id IN ({ids}) AND status IN ({terminal}) AND needs_attention = 0"
    f" AND input <> '{PRUNED_INPUT}' AND updated_at < ? RETURNING saga_id"
)

#: Called with each batch of finished sagas a sweep visits (see :func:`sweep`).
Visitor = Callable[[Sequence[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch of a pass: what qualifies, where the watermark may move, whether to go on."""

    due: list[str]  # the sagas of the batch that qualify
    mark: int  # the new watermark (unchanged if the batch starts with a hole)
    last_seq: int
    more: bool


def _finished(row: Row, before: float) -> bool:
    return (
        row["status"] in _TERMINAL
        and not row["needs_attention"]
        and float(row["updated_at"]) < before
    )


def _plan(
    rows: Sequence[Row], before: float, mark: int, holes: bool, batch_size: int, *, compacting: bool
) -> tuple[_Batch, bool]:
    """What to do with one batch; also whether a hole was seen so far (it stops the watermark).

    Compacting, an already compacted saga is dealt with (it moves the watermark, it is not done
    again); a sweep visits every finished saga, compacted or not.
    """
    due: list[str] = []
    for row in rows:
        dealt_with = compacting and bool(row["compacted"])
        ok = dealt_with or _finished(row, before)
        if ok and not dealt_with:
            due.append(row["saga_id"])
        if not ok:
            holes = True
        elif not holes:
            mark = int(row["seq"])
    more = len(rows) == batch_size and any(float(r["created_at"]) < before for r in rows)
    last = int(rows[-1]["seq"]) if rows else mark
    return _Batch(due, mark, last, more), holes


async def ensure_watermarks(db: Database) -> None:
    await db.executescript(WATERMARKS_DDL)


async def read_mark(db: Database, name: str) -> int:
    row = await db.fetchone("SELECT seq FROM saga_retention WHERE name = ?", name)
    return int(row["seq"]) if row else 0


async def _write_mark(tx: Tx, name: str, seq: int) -> None:
    await tx.execute(
        "INSERT INTO saga_retention (name, seq) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
        name,
        seq,
    )


async def compact(
    db: Database, before: float, *, batch_size: int = 500, dry_run: bool = False
) -> PruneStats:
    """Compact the finished sagas that ended before ``before`` (see the module docstring)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    await ensure_watermarks(db)
    mark = after = await read_mark(db, COMPACTED)
    holes = False
    sagas = steps = 0
    while True:
        rows = await db.fetchall(_SCAN, after, batch_size)
        batch, holes = _plan(rows, before, mark, holes, batch_size, compacting=True)
        if dry_run:
            sagas += len(batch.due)
            steps += await _count_steps(db, batch.due)
        elif batch.due or batch.mark != mark:
            async with db.transaction() as tx:
                done = await _compact(tx, batch.due, before)
                steps += await _delete_steps(tx, done)
                sagas += len(done)
                await _write_mark(tx, COMPACTED, batch.mark)
        mark, after = batch.mark, batch.last_seq
        if not batch.more:
            return PruneStats(sagas, steps)


async def _compact(tx: Tx, saga_ids: Sequence[str], before: float) -> list[str]:
    done: list[str] = []
    for chunk in chunks(saga_ids, 500):
        sql = _COMPACT.format(ids=placeholders(len(chunk)), terminal=placeholders(len(_TERMINAL)))
        rows = await tx.fetchall(sql, *chunk, *_TERMINAL, before)
        done += [row["saga_id"] for row in rows]
    return done


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

    Sagas are visited in batches, in creation order, compacted or not; the sweep's watermark
    moves after each batch's visit returns, so a visit interrupted by a crash is repeated (a
    visitor must be idempotent). Returns how many sagas were visited.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    await ensure_watermarks(db)
    mark = after = await read_mark(db, name)
    holes = False
    visited = 0
    while True:
        rows = await db.fetchall(_SCAN, after, batch_size)
        batch, holes = _plan(rows, before, mark, holes, batch_size, compacting=False)
        if batch.due:
            await visit(batch.due)
            visited += len(batch.due)
        if batch.mark != mark and not dry_run:
            async with db.transaction() as tx:
                await _write_mark(tx, name, batch.mark)
        mark, after = batch.mark, batch.last_seq
        if not batch.more:
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

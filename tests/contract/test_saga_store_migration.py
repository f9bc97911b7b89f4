"""A saga log written before the attempt trail and the attention reason existed.

Such a log lacks ``saga_steps.trail`` and ``sagas.attention_reason``. Opened for writing, it
gets them (and keeps every row); opened read-only (``sagas list|show``, ``audit`` while another
process executes), nothing is added and the missing columns read as empty.
"""

from __future__ import annotations

from ordersaga.db import open_database
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import SagaFilter, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.base import Attempt
from ordersaga.saga.store.schema import missing_columns
from tests.contract.conftest import Backend

_OLD = (
    "ALTER TABLE saga_steps DROP COLUMN trail",
    "ALTER TABLE sagas DROP COLUMN attention_reason",
)


async def _old_log(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.create("old-1", "order", {"order_id": "old-1"}, "fp")
        pay = StepRecord("pay", Phase.ACTION, StepStatus.UNKNOWN, {}, "lost", 3, 1.0, 2.0)
        await store.update(
            "old-1",
            steps=[pay],
            status=SagaStatus.COMPENSATING,
            needs_attention=True,
            attention_reason="x",
        )
    finally:
        await store.close()
    db = await open_database(backend.url)
    try:
        for statement in _OLD:
            await db.executescript(statement)
        assert await missing_columns(db) == {"saga_steps.trail", "sagas.attention_reason"}
    finally:
        await db.close()


async def test_an_older_log_is_read_as_it_is_and_migrated_when_written(
    sql_backend: Backend,
) -> None:
    await _old_log(sql_backend)

    reader = await sql_backend.open(read_only=True)
    try:
        entry = await reader.inspect("old-1")
        assert entry is not None and entry.record.needs_attention
        assert entry.record.attention_reason is None
        pay = entry.record.step("pay")
        assert pay is not None and pay.attempts == 3 and pay.trail == ()
        page = await reader.list_sagas(SagaFilter())
        assert [e.record.saga_id for e in page.entries] == ["old-1"]
    finally:
        await reader.close()
    db = await open_database(sql_backend.url)
    try:
        assert len(await missing_columns(db)) == 2  # the reader added nothing
    finally:
        await db.close()

    writer = await sql_backend.open()
    try:
        trail = (Attempt("a", 5.0, 0.5, "lost", "timeout"), Attempt("a", 6.0, 0.5, "applied"))
        undo = StepRecord(
            "pay", Phase.COMPENSATE, StepStatus.SUCCEEDED, {}, None, 2, 5.0, 6.5, trail
        )
        await writer.update("old-1", steps=[undo], needs_attention=True, attention_reason="why")
        record = await writer.load("old-1")
        assert record is not None and record.attention_reason == "why"
        compensation = record.step("pay", Phase.COMPENSATE)
        assert compensation is not None and compensation.trail == trail
        old = record.step("pay")
        assert old is not None and old.trail == () and old.attempts == 3  # the old row is kept
    finally:
        await writer.close()
    db = await open_database(sql_backend.url)
    try:
        assert await missing_columns(db) == set()
    finally:
        await db.close()

"""The operator part of the store contract (list, inspect, repair, actions), on every backend."""

from __future__ import annotations

import pytest

from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import (
    OperatorAction,
    Repair,
    SagaFilter,
    SagaStatus,
    SagaStore,
    StepRecord,
    StepStatus,
)
from tests.contract.conftest import Backend

S = SagaStatus


async def _make(store: SagaStore, n: int) -> list[str]:
    """``n`` sagas s0..s{n-1}: every third failed, every fourth flagged for attention."""
    ids = []
    for i in range(n):
        saga_id = f"s{i}"
        ids.append(saga_id)
        await store.create(saga_id, "order", {"order_id": saga_id}, f"fp{i}")
        step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {}, None, 2, 1.0, 2.0)
        if i % 3 == 0:
            await store.update(saga_id, steps=[step], status=S.COMPENSATING)
            await store.update(saga_id, status=S.FAILED, reason="no stock")
        elif i % 4 == 0:
            await store.update(saga_id, steps=[step], status=S.COMPENSATING, needs_attention=True)
    return ids


async def test_list_is_newest_first_filtered_and_paged(store: SagaStore) -> None:
    ids = await _make(store, 13)
    page = await store.list_sagas(SagaFilter(limit=5))
    seen = [e.record.saga_id for e in page.entries]
    assert seen == list(reversed(ids))[:5]
    while page.next_cursor is not None:
        page = await store.list_sagas(SagaFilter(limit=5, cursor=page.next_cursor))
        seen += [e.record.saga_id for e in page.entries]
    assert seen == list(reversed(ids))  # every saga once, in order, over three pages

    failed = await store.list_sagas(SagaFilter(status=S.FAILED, limit=100))
    assert [e.record.saga_id for e in failed.entries] == ["s12", "s9", "s6", "s3", "s0"]
    assert all(e.record.status is S.FAILED for e in failed.entries)
    assert failed.next_cursor is None
    flagged = await store.list_sagas(SagaFilter(needs_attention=True, limit=100))
    assert [e.record.saga_id for e in flagged.entries] == ["s8", "s4"]
    assert flagged.entries[0].record.steps[0].attempts == 2  # steps come along

    everything = await store.list_sagas(SagaFilter(limit=100))
    cutoff = sorted(e.record.updated_at for e in everything.entries)[3]
    old = await store.list_sagas(SagaFilter(updated_before=cutoff, limit=100))
    assert {e.record.saga_id for e in old.entries} == {
        e.record.saga_id for e in everything.entries if e.record.updated_at < cutoff
    }
    assert len(old.entries) == 3

    # An id prefix (the dashboard's search): s1, s10, s11, s12; wildcards are plain characters.
    prefixed = await store.list_sagas(SagaFilter(id_prefix="s1", limit=3))
    assert [e.record.saga_id for e in prefixed.entries] == ["s12", "s11", "s10"]
    rest = await store.list_sagas(SagaFilter(id_prefix="s1", cursor=prefixed.next_cursor))
    assert [e.record.saga_id for e in rest.entries] == ["s1"]
    both = await store.list_sagas(SagaFilter(id_prefix="s1", status=S.FAILED))
    assert [e.record.saga_id for e in both.entries] == ["s12"]
    for pattern in ("s%", "s_", "S1", "s12x"):
        assert (await store.list_sagas(SagaFilter(id_prefix=pattern))).entries == []


async def test_repair_applies_with_its_action_or_not_at_all(store: SagaStore) -> None:
    await _make(store, 5)
    action = OperatorAction("s4", "retry", "alice", "service is back")
    entry = await store.repair(
        "s4", Repair(frozenset({S.COMPENSATING}), needs_attention=False), action
    )
    assert entry.record.status is S.COMPENSATING and not entry.record.needs_attention
    assert [(a.action, a.who, a.note) for a in entry.actions] == [
        ("retry", "alice", "service is back")
    ]
    assert entry.actions[0].at > 0

    refused = OperatorAction("s3", "resolve confirmed", "bob", "no")
    with pytest.raises(ConflictError):  # s3 failed: not in the expected statuses
        await store.repair("s3", Repair(frozenset({S.RUNNING}), status=S.CONFIRMED), refused)
    with pytest.raises(ConflictError):
        await store.repair("nope", Repair(frozenset(S)), refused)
    s3 = await store.inspect("s3")
    assert s3 is not None and s3.record.status is S.FAILED and s3.actions == ()

    # A repair may set any status (a person closed a running saga), and upserts steps.
    unknown = StepRecord("ship", Phase.ACTION, StepStatus.UNKNOWN, {}, "cancelled", 0, 5.0, 5.0)
    closed = await store.repair(
        "s1",
        Repair(frozenset({S.RUNNING}), status=S.CONFIRMED, steps=(unknown,)),
        OperatorAction("s1", "resolve confirmed", "carol", "done by hand"),
    )
    assert closed.record.status is S.CONFIRMED
    assert closed.record.step("ship") is not None
    with pytest.raises(ConflictError):  # finished: the engine can write nothing more
        await store.update("s1", steps=[unknown])
    assert [a.saga_id for a in await store.operator_actions()] == ["s4", "s1"]


async def test_read_only_opening_reads_while_a_writer_writes(sql_backend: Backend) -> None:
    writer = await sql_backend.open()
    try:
        await _make(writer, 3)
        reader = await sql_backend.open(read_only=True)
        try:
            page = await reader.list_sagas(SagaFilter())
            assert len(page.entries) == 3
            await writer.create("late", "order", {}, "fp")
            assert (await reader.inspect("late")) is not None
        finally:
            await reader.close()
    finally:
        await writer.close()


async def test_retry_clears_the_flag_and_its_reason(store: SagaStore) -> None:
    await store.create("f1", "order", {"order_id": "f1"}, "fp")
    await store.update(
        "f1",
        status=S.COMPENSATING,
        needs_attention=True,
        attention_reason="ship (compensate): shipping cancel still failing",
    )
    listed = await store.list_sagas(SagaFilter(needs_attention=True))
    assert [e.record.attention_reason for e in listed.entries] == [
        "ship (compensate): shipping cancel still failing"
    ]
    entry = await store.repair(
        "f1",
        Repair(frozenset({S.COMPENSATING}), needs_attention=False),
        OperatorAction("f1", "retry", "tester"),
    )
    assert not entry.record.needs_attention and entry.record.attention_reason is None

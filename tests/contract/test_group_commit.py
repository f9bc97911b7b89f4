"""Group commit: concurrent writes share commits, yet each call returns only once durable."""

from __future__ import annotations

import asyncio

from ordersaga.errors import ConflictError, StorageError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import SagaStatus, SagaStore, SqlSagaStore, StepRecord, StepStatus
from tests.contract.conftest import Backend

S = SagaStatus


def step(name: str, status: StepStatus = StepStatus.SUCCEEDED, n: int = 0) -> StepRecord:
    return StepRecord(name, Phase.ACTION, status, {"n": n}, None, 1, 1.0, 2.0)


async def saga_life(store: SagaStore, saga_id: str) -> None:
    await store.create(saga_id, "order", {"id": saga_id}, "fp")
    await store.update(saga_id, steps=[step("reserve")])
    await store.update(saga_id, steps=[step("charge")], status=S.CONFIRMING)
    await store.update(saga_id, steps=[step("ship")], status=S.CONFIRMED)


async def test_concurrent_sagas_share_commits_and_are_durable(sql_backend: Backend) -> None:
    store = await sql_backend.open()
    ids = [f"saga-{i:03d}" for i in range(200)]
    await asyncio.gather(*(saga_life(store, saga_id) for saga_id in ids))
    assert store.stats.writes == 800
    assert store.stats.commits <= store.stats.writes / 5, store.stats
    await store.close()

    reopened = await sql_backend.open()
    try:
        records = [r async for r in reopened.scan(batch_size=64)]
        assert [r.saga_id for r in records] == ids
        assert all(r.status is S.CONFIRMED for r in records)
        assert all([s.step for s in r.steps] == ["reserve", "charge", "ship"] for r in records)
    finally:
        await reopened.close()


async def test_a_forbidden_write_fails_only_its_own_caller(store: SagaStore) -> None:
    for i in range(10):
        await store.create(f"s{i}", "order", {}, "fp")
    await store.update("s3", status=S.FAILED)
    commits = store.stats.commits
    results = await asyncio.gather(
        *(store.update(f"s{i}", steps=[step("reserve")], status=S.COMPENSATING) for i in range(10)),
        return_exceptions=True,
    )
    assert isinstance(results[3], ConflictError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 9
    if isinstance(store, SqlSagaStore):
        assert store.stats.commits == commits + 1  # refused inside the batch, no retry needed
    for i in range(10):
        record = await store.load(f"s{i}")
        assert record is not None
        assert record.status is (S.FAILED if i == 3 else S.COMPENSATING)
        assert (record.step("reserve") is None) == (i == 3)


async def test_updates_of_one_saga_in_one_batch_apply_in_call_order(store: SagaStore) -> None:
    await store.create("a", "order", {}, "fp")
    await store.create("b", "order", {}, "fp")
    await store.update("b", status=S.COMPENSATING)
    results = await asyncio.gather(
        store.update("a", status=S.CONFIRMING, steps=[step("x", n=1)]),
        store.update("a", status=S.CONFIRMED, steps=[step("x", n=2), step("y")]),
        store.update("b", status=S.CONFIRMED),  # refused: b is compensating
        store.update("b", status=S.FAILED),
        return_exceptions=True,
    )
    assert results[0] is None and results[1] is None and results[3] is None
    assert isinstance(results[2], ConflictError)
    a = await store.load("a")
    assert a is not None and a.status is S.CONFIRMED
    assert [(s.step, s.result) for s in a.steps] == [("x", {"n": 2}), ("y", {"n": 0})]
    b = await store.load("b")
    assert b is not None and b.status is S.FAILED


async def test_create_pending_in_the_same_batch_is_not_created_twice(store: SagaStore) -> None:
    (first, created_1), (second, created_2), _ = await asyncio.gather(
        store.create("a", "order", {"v": 1}, "fp-1"),
        store.create("a", "order", {"v": 2}, "fp-2"),
        store.update("a", status=S.CONFIRMING),
    )
    assert (created_1, created_2) == (True, False)
    assert first.fingerprint == second.fingerprint == "fp-1"
    assert second.input == {"v": 1}
    loaded = await store.load("a")
    assert loaded is not None and loaded.status is S.CONFIRMING


async def _install_poison(store: SqlSagaStore) -> None:
    """A trigger that makes the database itself reject any step named 'poison'."""
    db = store.database
    if db.dialect == "sqlite":
        async with db.transaction() as tx:  # one statement: executescript splits at ';'
            await tx.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON saga_steps WHEN NEW.step = 'poison'"
                " BEGIN SELECT RAISE(ABORT, 'poisoned step'); END"
            )
    else:
        await db.executescript(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.step = 'poison' THEN RAISE EXCEPTION 'poisoned step'; END IF;"
            " RETURN NEW; END $$;"
            " CREATE TRIGGER poison BEFORE INSERT ON saga_steps"
            " FOR EACH ROW EXECUTE FUNCTION poison()"
        )


async def test_a_batch_the_database_rejects_is_retried_write_by_write(
    sql_store: SqlSagaStore,
) -> None:
    store = sql_store
    await _install_poison(store)
    for i in range(6):
        await store.create(f"s{i}", "order", {}, "fp")
    commits = store.stats.commits
    results = await asyncio.gather(
        *(store.update(f"s{i}", steps=[step("poison" if i == 2 else "ok")]) for i in range(6)),
        store.create("new", "order", {}, "fp"),
        return_exceptions=True,
    )
    assert isinstance(results[2], StorageError) and "poisoned" in str(results[2])
    assert [r for i, r in enumerate(results[:6]) if i != 2] == [None] * 5
    assert results[6][1] is True  # type: ignore[index]
    # The failed batch committed nothing; then one commit per write that succeeded.
    assert store.stats.commits == commits + 6
    for i in range(6):
        record = await store.load(f"s{i}")
        assert record is not None and [s.step for s in record.steps] == ([] if i == 2 else ["ok"])
    assert await store.load("new") is not None


async def test_batching_can_be_turned_off(sql_backend: Backend) -> None:
    store = await sql_backend.open(max_batch=1)
    try:
        await asyncio.gather(*(saga_life(store, f"s{i}") for i in range(20)))
        assert store.stats.commits == store.stats.writes == 80
        counts = await store.count_by_status()
        assert counts[S.CONFIRMED] == 20
    finally:
        await store.close()


async def test_batches_are_capped(sql_backend: Backend) -> None:
    store = await sql_backend.open(max_batch=16)
    try:
        await asyncio.gather(*(store.create(f"s{i}", "order", {}, "fp") for i in range(100)))
        assert store.stats.commits == 7  # ceil(100 / 16)
    finally:
        await store.close()


async def test_close_waits_for_pending_writes(sql_backend: Backend) -> None:
    store = await sql_backend.open()
    tasks = [asyncio.create_task(store.create(f"s{i}", "order", {}, "fp")) for i in range(50)]
    await asyncio.sleep(0)  # queued, not yet flushed
    await store.close()
    assert all(t.done() and t.result()[1] for t in tasks)
    reopened = await sql_backend.open()
    try:
        assert (await reopened.count_by_status())[S.RUNNING] == 50
    finally:
        await reopened.close()


async def test_a_write_cancelled_before_its_flush_is_withdrawn(sql_store: SqlSagaStore) -> None:
    task = asyncio.create_task(sql_store.create("gone", "order", {}, "fp"))
    kept = asyncio.create_task(sql_store.create("kept", "order", {}, "fp"))
    await asyncio.sleep(0)  # both queued
    task.cancel()
    await kept
    assert task.cancelled()
    assert await sql_store.load("gone") is None
    assert await sql_store.load("kept") is not None

"""What only the PostgreSQL saga log has: leases for several workers, non-durable commits."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ordersaga.db.postgres import PostgresDatabase
from ordersaga.errors import ConfigError, ConflictError, ExecutorFenced
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import PostgresSagaStore, SagaStatus, StepRecord, StepStatus, open_store

pytestmark = pytest.mark.pg


async def _sagas(store: PostgresSagaStore, n: int) -> list[str]:
    ids = [f"s{i:02d}" for i in range(n)]
    for saga_id in ids:
        await store.create(saga_id, "order", {}, "fp")
    return ids


async def test_claim_takes_unfinished_sagas_oldest_first(pg_store: PostgresSagaStore) -> None:
    ids = await _sagas(pg_store, 6)
    await pg_store.update("s01", status=SagaStatus.FAILED)
    claimed = await pg_store.claim("w1", lease_s=30, limit=3)
    assert [r.saga_id for r in claimed] == ["s00", "s02", "s03"]
    assert [r.saga_id for r in await pg_store.claim("w2", lease_s=30)] == ["s04", "s05"]
    assert await pg_store.claim("w3", lease_s=30) == []
    # The holder may claim again (extending its leases).
    assert [r.saga_id for r in await pg_store.claim("w1", 30, limit=10)] == ["s00", "s02", "s03"]
    assert len(ids) == 6


async def test_concurrent_claims_never_overlap(pg_url: str) -> None:
    stores = [await open_store(pg_url) for _ in range(4)]
    try:
        workers = [s for s in stores if isinstance(s, PostgresSagaStore)]
        await _sagas(workers[0], 40)
        claims = await asyncio.gather(
            *(w.claim(f"w{i}", lease_s=30, limit=15) for i, w in enumerate(workers))
        )
        claimed = [r.saga_id for batch in claims for r in batch]
        assert len(claimed) == len(set(claimed)) == 40
    finally:
        for s in stores:
            await s.close()


async def test_an_expired_lease_is_taken_over(pg_store: PostgresSagaStore) -> None:
    await _sagas(pg_store, 2)
    assert len(await pg_store.claim("dead", lease_s=0.05)) == 2
    assert await pg_store.claim("alive", lease_s=30) == []
    await asyncio.sleep(0.1)
    assert [r.saga_id for r in await pg_store.claim("alive", lease_s=30)] == ["s00", "s01"]
    assert await pg_store.renew("dead", ["s00", "s01"], lease_s=30) == []
    assert await pg_store.renew("alive", ["s01", "s00", "nope"], lease_s=30) == ["s01", "s00"]


async def test_release_gives_sagas_back(pg_store: PostgresSagaStore) -> None:
    await _sagas(pg_store, 3)
    await pg_store.claim("w1", lease_s=30)
    await pg_store.release("w2", ["s00"])  # not its lease: ignored
    await pg_store.release("w1", ["s00", "s02"])
    assert [r.saga_id for r in await pg_store.claim("w2", lease_s=30)] == ["s00", "s02"]
    assert await pg_store.renew("w1", [], lease_s=30) == []
    with pytest.raises(ValueError):
        await pg_store.claim("w1", lease_s=0)


async def test_finished_sagas_are_never_claimed(pg_store: PostgresSagaStore) -> None:
    await _sagas(pg_store, 2)
    await pg_store.update("s00", status=SagaStatus.CONFIRMING)
    await pg_store.update("s00", status=SagaStatus.CONFIRMED)
    claimed = await pg_store.claim("w1", lease_s=30)
    assert [r.saga_id for r in claimed] == ["s01"]


async def test_non_durable_commits_keep_the_semantics(pg_url: str) -> None:
    store = await open_store(pg_url, durable=False)
    try:
        await asyncio.gather(*(store.create(f"s{i}", "order", {}, "fp") for i in range(20)))
        await store.update("s0", status=SagaStatus.FAILED)
        assert (await store.count_by_status())[SagaStatus.FAILED] == 1
        assert store.stats.commits == 2
    finally:
        await store.close()


async def test_claim_can_leave_out_the_sagas_the_owner_holds(pg_store: PostgresSagaStore) -> None:
    await _sagas(pg_store, 4)
    assert [r.saga_id for r in await pg_store.claim("w1", 30, limit=2)] == ["s00", "s01"]
    fresh = await pg_store.claim("w1", 30, limit=2, include_held=False)
    assert [r.saga_id for r in fresh] == ["s02", "s03"]
    assert await pg_store.claim("w1", 30, include_held=False) == []


async def test_an_update_fenced_by_its_owner_applies_only_while_it_holds_the_saga(
    pg_store: PostgresSagaStore,
) -> None:
    await _sagas(pg_store, 1)
    reserve = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"n": 1})
    with pytest.raises(ConflictError):  # nobody holds it yet
        await pg_store.update("s00", steps=[reserve], owner="w1")
    await pg_store.claim("w1", lease_s=0.05)
    await pg_store.update("s00", steps=[reserve], owner="w1")
    await asyncio.sleep(0.1)
    await pg_store.update("s00", status=SagaStatus.COMPENSATING, owner="w1")  # lapsed, not lost
    assert [r.saga_id for r in await pg_store.claim("w2", lease_s=30)] == ["s00"]
    with pytest.raises(ConflictError):  # taken over: the old owner can write nothing more
        await pg_store.update("s00", status=SagaStatus.FAILED, owner="w1")
    await pg_store.update("s00", status=SagaStatus.FAILED, owner="w2")
    record = await pg_store.load("s00")
    assert record is not None and record.status is SagaStatus.FAILED
    assert record.step("reserve") is not None


async def test_finished_reads_only_the_finished_of_the_given_sagas(
    pg_store: PostgresSagaStore,
) -> None:
    await _sagas(pg_store, 4)
    reserve = StepRecord("reserve", Phase.ACTION, StepStatus.REFUSED, {}, "no stock")
    await pg_store.update("s01", steps=[reserve], status=SagaStatus.FAILED, reason="no stock")
    await pg_store.update("s02", status=SagaStatus.CONFIRMING)
    await pg_store.update("s03", status=SagaStatus.FAILED)
    finished = await pg_store.finished(["s00", "s01", "s02", "nope"])
    assert [(r.saga_id, r.status, r.reason) for r in finished] == [
        ("s01", SagaStatus.FAILED, "no stock")
    ]
    assert finished[0].steps == (reserve,)
    assert await pg_store.finished([]) == []


async def test_a_run_and_workers_never_execute_one_log_at_once(pg_url: str) -> None:
    stores = [await open_store(pg_url) for _ in range(4)]
    try:
        worker_a, worker_b, run, late = (s for s in stores if isinstance(s, PostgresSagaStore))
        await worker_a.lock_executors(worker=True)
        await worker_b.lock_executors(worker=True)  # any number of workers
        with pytest.raises(ConfigError):  # but no run executing sagas itself beside them
            await run.lock_executors(worker=False, wait=0)
        await worker_a.close()
        await worker_b.close()  # closing the store gives the lock back
        await run.lock_executors(worker=False)
        for worker in (True, False):  # one run: no worker, no second run
            with pytest.raises(ConfigError):
                await late.lock_executors(worker=worker, wait=0.2)
    finally:
        for store in stores:
            await store.close()


async def test_a_stale_executor_cannot_write_once_another_holds_the_right(pg_url: str) -> None:
    """The epoch is checked inside every write transaction (issue 9): a run whose right was
    taken over (its epoch incremented) writes nothing more and says why."""
    run = await open_store(pg_url)
    assert isinstance(run, PostgresSagaStore)
    try:
        await run.lock_executors(worker=False)
        await _sagas(run, 1)
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE executors SET epoch = epoch + 1, holder = 'newcomer'")
        finally:
            await conn.close()
        with pytest.raises(ExecutorFenced, match="newcomer"):
            await run.update("s00", status=SagaStatus.COMPENSATING)
        with pytest.raises(ExecutorFenced):
            await run.claim("late", lease_s=30)
        assert (await run.load("s00")).status is SagaStatus.RUNNING  # type: ignore[union-attr]
    finally:
        await run.close()


async def test_a_terminated_lock_session_stops_the_writer(pg_url: str) -> None:
    worker = await open_store(pg_url)
    assert isinstance(worker, PostgresSagaStore)
    try:
        await worker.lock_executors(worker=True)
        await _sagas(worker, 1)
        conn = await asyncpg.connect(pg_url)
        try:
            # Only this test database's lock sessions: other tests' sessions are not ours.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        finally:
            await conn.close()
        # The loss is noticed when the lock session is next used (or its socket's end is
        # read); a write before that is harmless, since nobody else can have started yet.
        right = worker.executor_right
        assert right is not None and await right.confirm_lost()
        with pytest.raises(ExecutorFenced, match="terminated"):
            await worker.update("s00", status=SagaStatus.COMPENSATING)
        successor = await open_store(pg_url)  # the right is free for the next executor
        try:
            assert isinstance(successor, PostgresSagaStore)
            await successor.lock_executors(worker=False, wait=2)
            await successor.update("s00", status=SagaStatus.COMPENSATING)
        finally:
            await successor.close()
    finally:
        await worker.close()


async def test_a_submitters_creates_commit_in_one_statement(
    pg_store: PostgresSagaStore, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of creates only, from a store that executes nothing, is one INSERT that commits
    by itself; an id that exists is not created again, and the rows are a batch's rows."""
    transactions: list[str] = []
    database = type(pg_store.database)  # a write batch is a pipeline() transaction
    original = database.pipeline

    def counting(self: PostgresDatabase) -> Any:
        transactions.append("write")
        return original(self)

    monkeypatch.setattr(database, "pipeline", counting)
    await pg_store.create("dup", "order", {"n": 1}, "fp1")
    results = await asyncio.gather(
        pg_store.create("c1", "order", {"n": 2}, "fp2"),
        pg_store.create("dup", "order", {"n": 3}, "fp3"),
        pg_store.create("c2", "order", {}, "fp4", status=SagaStatus.FAILED, reason="invalid"),
    )
    assert [created for _, created in results] == [True, False, True]
    assert results[1][0].fingerprint == "fp1" and results[1][0].input == {"n": 1}
    assert transactions == [] and pg_store.stats.commits == 2
    # The same id twice in one batch: the batch path (the second create finds the first).
    twice = await asyncio.gather(*(pg_store.create("t1", "order", {}, "fp") for _ in range(2)))
    assert [created for _, created in twice] == [True, False]
    assert transactions == ["write"]
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch(
            "SELECT saga_id, status, reason, needs_attention, version, owner, lease_until,"
            " updated_at = created_at AS same FROM sagas ORDER BY seq"
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in rows] == [
        ("dup", "running", None, 0, 1, None, None, True),
        ("c1", "running", None, 0, 1, None, None, True),
        ("c2", "failed", "invalid", 0, 1, None, None, True),
        ("t1", "running", None, 0, 1, None, None, True),
    ]
    loaded = await pg_store.load("c2")
    assert loaded is not None and loaded.status is SagaStatus.FAILED and loaded.steps == ()

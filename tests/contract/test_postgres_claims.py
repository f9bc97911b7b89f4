"""The PostgreSQL saga log's worker statements: batch claims, renewals, fixed statement texts."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ordersaga.db import pipelined
from ordersaga.db import postgres as pgdb
from ordersaga.errors import ExecutorFenced
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import PostgresSagaStore, SagaStatus, StepRecord, StepStatus, open_store
from ordersaga.saga.store.postgres import _claim_sql

pytestmark = pytest.mark.pg


async def _open(pg_url: str) -> PostgresSagaStore:
    store = await open_store(pg_url)
    assert isinstance(store, PostgresSagaStore)
    return store


async def _sagas(store: PostgresSagaStore, n: int) -> list[str]:
    ids = [f"s{i:03d}" for i in range(n)]
    await asyncio.gather(*(store.create(saga_id, "order", {}, "fp") for saga_id in ids))
    return ids


async def _holders(pg_url: str) -> dict[str, tuple[str | None, float | None]]:
    conn = await asyncpg.connect(pg_url)
    try:
        rows = await conn.fetch("SELECT saga_id, owner, lease_until FROM sagas")
    finally:
        await conn.close()
    return {row["saga_id"]: (row["owner"], row["lease_until"]) for row in rows}


async def test_racing_batch_claims_hand_each_saga_to_one_worker(pg_url: str) -> None:
    workers = [await _open(pg_url) for _ in range(4)]
    try:
        ids = await _sagas(workers[0], 150)

        async def take_all(store: PostgresSagaStore, owner: str) -> list[str]:
            taken: list[str] = []
            while batch := await store.claim(owner, 30, limit=7, include_held=False):
                taken += [record.saga_id for record in batch]
            return taken

        claims = await asyncio.gather(*(take_all(w, f"w{i}") for i, w in enumerate(workers)))
    finally:
        for store in workers:
            await store.close()
    claimed = [saga_id for taken in claims for saga_id in taken]
    assert len(claimed) == len(set(claimed)) and sorted(claimed) == ids
    holders = await _holders(pg_url)
    for i, taken in enumerate(claims):
        assert {holders[saga_id][0] for saga_id in taken} <= {f"w{i}"}


async def test_a_claim_returns_the_sagas_oldest_first_with_their_steps(
    pg_store: PostgresSagaStore,
) -> None:
    await _sagas(pg_store, 3)
    step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"ref": "r"}, attempts=2)
    await pg_store.update("s001", steps=[step])
    claimed = await pg_store.claim("w1", 30, limit=10)
    assert [record.saga_id for record in claimed] == ["s000", "s001", "s002"]
    assert [record.steps for record in claimed] == [(), (step,), ()]


async def test_a_renewal_renews_exactly_the_owners_leases(
    pg_store: PostgresSagaStore, pg_url: str
) -> None:
    await _sagas(pg_store, 5)
    mine = [r.saga_id for r in await pg_store.claim("w1", 30, limit=3)]
    theirs = [r.saga_id for r in await pg_store.claim("w2", 30, limit=2)]
    before = await _holders(pg_url)
    renewed = await pg_store.renew("w1", [*theirs, *mine, "unknown"], lease_s=300)
    assert renewed == mine
    after = await _holders(pg_url)
    for saga_id in theirs:
        assert after[saga_id] == before[saga_id]  # untouched: owner and lease
    for saga_id in mine:
        owner, lease = after[saga_id]
        assert owner == "w1" and lease is not None and lease > (before[saga_id][1] or 0) + 200


async def test_a_claim_by_a_fenced_executor_leases_nothing(pg_url: str) -> None:
    """The claim reads the executors' epoch in its own statement: a worker whose right was
    taken over since (a run incremented the epoch) claims nothing and learns why."""
    worker = await _open(pg_url)
    try:
        await worker.lock_executors(worker=True)
        await _sagas(worker, 2)
        conn = await asyncpg.connect(pg_url)
        try:
            await conn.execute("UPDATE executors SET epoch = epoch + 1, holder = 'a run'")
        finally:
            await conn.close()
        with pytest.raises(ExecutorFenced, match="a run"):
            await worker.claim("w1", lease_s=30)
    finally:
        await worker.close()
    assert set((await _holders(pg_url)).values()) == {(None, None)}


async def test_the_write_that_finishes_a_saga_ends_its_lease(
    pg_store: PostgresSagaStore, pg_url: str
) -> None:
    """A finished saga keeps its owner (who ran it) but no lease, without a release: its final
    write ended the lease, and a renewal that races with that write does not lease it again."""
    await _sagas(pg_store, 2)
    assert len(await pg_store.claim("w1", lease_s=30)) == 2
    await pg_store.update("s000", status=SagaStatus.FAILED, owner="w1")
    await pg_store.update("s001", status=SagaStatus.CONFIRMING, owner="w1")
    holders = await _holders(pg_url)
    assert holders["s000"] == ("w1", None)
    assert holders["s001"][0] == "w1" and holders["s001"][1] is not None  # still running: leased
    assert await pg_store.renew("w1", ["s000", "s001"], lease_s=30) == ["s000", "s001"]
    holders = await _holders(pg_url)
    assert holders["s000"] == ("w1", None)
    assert holders["s001"][1] is not None
    await pg_store.update("s001", status=SagaStatus.CONFIRMED, owner="w1")
    assert (await _holders(pg_url))["s001"] == ("w1", None)


async def test_a_claim_reads_the_steps_of_a_saga_taken_over_only(
    pg_store: PostgresSagaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saga still at its first version has no step records: its claim reads none."""
    await _sagas(pg_store, 3)
    step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"ref": "r1"})
    await pg_store.update("s001", steps=[step])
    reads: list[list[str]] = []
    original = pg_store.with_steps

    async def recording(reader: Any, rows: Any) -> Any:
        reads.append([row["saga_id"] for row in rows])
        return await original(reader, rows)

    monkeypatch.setattr(pg_store, "with_steps", recording)
    claimed = await pg_store.claim("w1", lease_s=30)
    expected = [("s000", ()), ("s001", (step,)), ("s002", ())]
    assert [(r.saga_id, r.steps) for r in claimed] == expected
    assert reads == [["s001"]]
    await pg_store.update("s000", status=SagaStatus.FAILED, owner="w1")
    await pg_store.release("w1", ["s001", "s002"])
    assert [r.saga_id for r in await pg_store.claim("w2", lease_s=30)] == ["s001", "s002"]
    assert reads == [["s001"], ["s001"]]


async def test_batch_statements_have_one_text_whatever_the_batch_size(
    pg_store: PostgresSagaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server prepares and plans each statement once per connection (see store.pgbatch)."""
    texts: list[set[str]] = [set()]

    def recording(name: str) -> Any:
        original = getattr(pgdb._PgTx, name)

        async def record(self: Any, sql: str, *params: Any) -> Any:
            texts[-1].add(sql)
            return await original(self, sql, *params)

        return record

    for name in ("execute", "fetchone", "fetchall"):
        monkeypatch.setattr(pgdb._PgTx, name, recording(name))
    sending = pipelined._Link.send  # the write batches' pipelined statements

    def send(self: Any, sql: str, params: tuple[Any, ...], expect: int | None = None) -> None:
        texts[-1].add(sql)
        sending(self, sql, params, expect)

    monkeypatch.setattr(pipelined._Link, "send", send)
    step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {})
    start = 0
    for size in (1, 4, 13):
        texts.append(set())
        ids = [f"b{n:03d}" for n in range(start, start + size)]
        start += size
        await asyncio.gather(*(pg_store.create(saga_id, "order", {}, "fp") for saga_id in ids))
        await asyncio.gather(*(pg_store.update(saga_id, steps=[step]) for saga_id in ids))
        await asyncio.gather(
            *(pg_store.update(saga_id, status=SagaStatus.CONFIRMED) for saga_id in ids)
        )
        await pg_store.claim("w1", 30, limit=size)
        await pg_store.finished(ids)
    first, *larger = texts[1:]
    assert any("INSERT INTO saga_steps" in text for text in first)  # the batches' write
    assert all(batch <= first for batch in larger), [sorted(t - first) for t in larger]


async def test_a_claim_reads_only_unfinished_sagas_however_long_the_log(
    pg_store: PostgresSagaStore, pg_url: str
) -> None:
    """A claim wants the oldest unfinished sagas: it reads them through the partial index of
    unfinished sagas, not past every finished saga of the log (the plan the server uses for the
    prepared statement, generic or not)."""
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(
            "INSERT INTO sagas (saga_id, definition, input, fingerprint, status, created_at,"
            " updated_at) SELECT 'f' || g, 'order', '{}', 'fp', 'confirmed', 0, 0"
            " FROM generate_series(1, 3000) AS g"
        )
        await _sagas(pg_store, 5)
        await conn.execute("ANALYZE sagas")
        sql = pgdb.to_dollar_params(_claim_sql(pg_store.saga_columns, False, False))
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    f"EXPLAIN (COSTS OFF) {sql}", 16, "w1", 30.0, timeout=10
                )
            )
            assert "sagas_unfinished" in plan, plan
    finally:
        await conn.close()
    assert len(await pg_store.claim("w1", 30, limit=16)) == 5

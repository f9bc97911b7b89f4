"""What only the PostgreSQL saga log has: leases for several workers, non-durable commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ordersaga.saga.store import PostgresSagaStore, SagaStatus, open_store

pytestmark = pytest.mark.pg


@pytest.fixture
async def pg_store(pg_url: str) -> AsyncIterator[PostgresSagaStore]:
    store = await open_store(pg_url)
    assert isinstance(store, PostgresSagaStore)
    yield store
    await store.close()


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

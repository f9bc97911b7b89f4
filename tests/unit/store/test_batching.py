"""The group committer, with a fake transaction: batching, order, fallback, cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ordersaga.errors import ConflictError, StorageError
from ordersaga.saga.store.base import StoreStats
from ordersaga.saga.store.batching import GroupCommitter


class FakeDb:
    """Applies string writes; 'refuse:*' is a per-write error, 'poison:*' fails a transaction."""

    def __init__(self, delay: float = 0.0) -> None:
        self.transactions: list[list[str]] = []
        self.committed: list[str] = []
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0

    async def apply(self, writes: Sequence[str]) -> list[str | Exception]:
        self.transactions.append(list(writes))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if any(w.startswith("poison") for w in writes):
            raise StorageError(f"transaction with {len(writes)} writes failed")
        outcomes: list[str | Exception] = []
        for w in writes:
            if w.startswith("refuse"):
                outcomes.append(ConflictError(w))
            else:
                self.committed.append(w)
                outcomes.append(f"ok:{w}")
        return outcomes


def committer(db: FakeDb, max_batch: int = 512) -> GroupCommitter[str, str]:
    return GroupCommitter(db.apply, StoreStats(), max_batch=max_batch)


async def test_writes_of_one_loop_iteration_share_a_commit() -> None:
    db = FakeDb()
    gc = committer(db)
    results = await asyncio.gather(*(gc.submit(f"w{i}") for i in range(100)))
    assert results == [f"ok:w{i}" for i in range(100)]
    assert db.transactions == [[f"w{i}" for i in range(100)]]
    assert gc._stats.commits == 1 and gc._stats.writes == 100


async def test_writes_arriving_during_a_slow_commit_form_the_next_batch() -> None:
    db = FakeDb(delay=0.01)
    gc = committer(db)
    first = asyncio.gather(*(gc.submit(f"a{i}") for i in range(3)))
    await asyncio.sleep(0.002)  # the first batch is committing now
    second = asyncio.gather(*(gc.submit(f"b{i}") for i in range(4)))
    await asyncio.gather(first, second)
    assert db.transactions == [["a0", "a1", "a2"], ["b0", "b1", "b2", "b3"]]


async def test_a_call_returns_only_after_its_commit() -> None:
    db = FakeDb(delay=0.01)
    gc = committer(db)
    result = await gc.submit("w")
    assert result == "ok:w" and db.committed == ["w"]


async def test_batch_size_is_capped() -> None:
    db = FakeDb()
    gc = committer(db, max_batch=4)
    await asyncio.gather(*(gc.submit(f"w{i}") for i in range(10)))
    assert [len(t) for t in db.transactions] == [4, 4, 2]
    assert db.committed == [f"w{i}" for i in range(10)]


async def test_a_refused_write_fails_alone_inside_the_batch() -> None:
    db = FakeDb()
    gc = committer(db)
    results = await asyncio.gather(
        gc.submit("w0"), gc.submit("refuse:w1"), gc.submit("w2"), return_exceptions=True
    )
    assert results[0] == "ok:w0" and results[2] == "ok:w2"
    assert isinstance(results[1], ConflictError)
    assert len(db.transactions) == 1 and gc._stats.commits == 1


async def test_a_failed_transaction_is_retried_one_write_at_a_time() -> None:
    db = FakeDb()
    gc = committer(db)
    results = await asyncio.gather(
        gc.submit("w0"), gc.submit("poison:w1"), gc.submit("w2"), return_exceptions=True
    )
    assert results[0] == "ok:w0" and results[2] == "ok:w2"
    assert isinstance(results[1], StorageError)
    assert db.transactions == [["w0", "poison:w1", "w2"], ["w0"], ["poison:w1"], ["w2"]]
    assert gc._stats.commits == 2 and db.committed == ["w0", "w2"]


async def test_max_batch_one_runs_each_write_alone_and_concurrently() -> None:
    db = FakeDb(delay=0.01)
    gc = committer(db, max_batch=1)
    await asyncio.gather(*(gc.submit(f"w{i}") for i in range(5)))
    assert len(db.transactions) == 5 and gc._stats.commits == 5
    assert db.max_in_flight == 5  # not one after the other
    with pytest.raises(StorageError):
        await gc.submit("poison")


async def test_a_caller_cancelled_before_the_flush_withdraws_its_write() -> None:
    db = FakeDb()
    gc = committer(db)
    doomed = asyncio.create_task(gc.submit("doomed"))
    kept = asyncio.create_task(gc.submit("kept"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await kept == "ok:kept"
    assert db.committed == ["kept"]


async def test_a_caller_cancelled_during_the_commit_does_not_break_the_batch() -> None:
    db = FakeDb(delay=0.01)
    gc = committer(db)
    cancelled = asyncio.create_task(gc.submit("a"))
    other = asyncio.create_task(gc.submit("b"))
    await asyncio.sleep(0.002)
    cancelled.cancel()
    assert await other == "ok:b"
    assert db.committed == ["a", "b"]  # it was already in the transaction


async def test_close_flushes_pending_writes_then_refuses_new_ones() -> None:
    db = FakeDb(delay=0.005)
    gc = committer(db)
    tasks = [asyncio.create_task(gc.submit(f"w{i}")) for i in range(3)]
    await asyncio.sleep(0)
    await gc.close()
    assert [t.result() for t in tasks] == ["ok:w0", "ok:w1", "ok:w2"]
    with pytest.raises(StorageError):
        await gc.submit("late")


async def test_an_aborted_flusher_fails_its_waiting_callers() -> None:
    db = FakeDb(delay=1.0)
    gc = committer(db)
    task = asyncio.create_task(gc.submit("w"))
    await asyncio.sleep(0.01)
    assert gc._flusher is not None
    gc._flusher.cancel()
    with pytest.raises(StorageError, match="outcome unknown"):
        await task


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        committer(FakeDb(), max_batch=0)


async def test_close_waits_for_unbatched_writes_too() -> None:
    db = FakeDb(delay=0.005)
    gc = committer(db, max_batch=1)
    tasks = [asyncio.create_task(gc.submit(f"w{i}")) for i in range(3)]
    await asyncio.sleep(0)
    await gc.close()
    assert all(t.done() for t in tasks) and len(db.committed) == 3


def test_a_committer_outlives_its_event_loop() -> None:
    # The loop is captured with each new flusher (not looked up per write): a committer used on
    # one loop, then on a new one, gives the new loop's futures and flusher.
    db = FakeDb()
    gc = committer(db)

    async def burst(tag: str) -> list[str]:
        futures = [gc.enqueue(f"{tag}{i}") for i in range(3)]
        loop = asyncio.get_running_loop()
        assert all(f.get_loop() is loop for f in futures if isinstance(f, asyncio.Future))
        assert gc._flusher is not None and gc._flusher.get_loop() is loop
        return list(await asyncio.gather(*futures))

    assert asyncio.run(burst("a")) == ["ok:a0", "ok:a1", "ok:a2"]
    assert asyncio.run(burst("b")) == ["ok:b0", "ok:b1", "ok:b2"]
    assert db.transactions == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]

"""The PostgreSQL saga log's write batches: pipelined, their rows as arrays in text format, the
finished sagas announced in the batch's own statement (see ordersaga.saga.store.pgbatch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from ordersaga.db import pipelined
from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store import PostgresSagaStore, SagaStatus, StepRecord, StepStatus
from ordersaga.saga.store.model import Head, StepRow
from ordersaga.saga.store.pgbatch import ArrayStatements

pytestmark = pytest.mark.pg

CHANNEL = "ordersaga_test_done"


@pytest.fixture
async def heard(pg_url: str) -> AsyncIterator[list[str]]:
    """The notifications on :data:`CHANNEL`, as a listening submitter gets them."""
    got: list[str] = []
    conn = await asyncpg.connect(pg_url)
    await conn.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload: got.append(payload))
    yield got
    await conn.close()


async def _delivered(pg_url: str) -> None:
    """Until every notification committed so far has reached the listeners: a NOTIFY of our own
    goes through the same queue, after them."""
    done = asyncio.Event()
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.add_listener("ordersaga_test_fence", lambda *_: done.set())
        await conn.execute("NOTIFY ordersaga_test_fence")
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.sleep(0.05)  # the other connection's read of the same queue
    finally:
        await conn.close()


async def test_a_batch_that_finishes_sagas_notifies_once_at_its_commit(
    pg_store: PostgresSagaStore, pg_url: str, heard: list[str]
) -> None:
    pg_store.announce_finished(CHANNEL)
    ids = [f"s{n}" for n in range(4)]
    await asyncio.gather(*(pg_store.create(saga_id, "order", {}, "fp") for saga_id in ids))
    step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"ok": True})
    await asyncio.gather(*(pg_store.update(saga_id, steps=[step]) for saga_id in ids))
    await _delivered(pg_url)
    assert heard == []  # nothing finished yet
    commits = pg_store.stats.commits
    await asyncio.gather(
        pg_store.update("s0", status=SagaStatus.CONFIRMED),
        pg_store.update("s1", status=SagaStatus.COMPENSATING, reason="refused"),
        pg_store.update("s2", status=SagaStatus.FAILED, reason="refused"),
    )
    await _delivered(pg_url)
    assert heard == [""]  # one batch, two finished: one notification
    assert pg_store.stats.commits == commits + 1
    # A batch whose write is refused as a whole commits nothing, and announces nothing.
    with pytest.raises(ConflictError):
        await pg_store.update("s3", status=SagaStatus.CONFIRMED, owner="someone else")
    await _delivered(pg_url)
    assert heard == [""]
    assert {r.saga_id for r in await pg_store.finished(ids)} == {"s0", "s2"}


async def test_a_store_that_announces_nothing_notifies_nobody(
    pg_store: PostgresSagaStore, pg_url: str, heard: list[str]
) -> None:
    await pg_store.create("s0", "order", {}, "fp")
    await pg_store.update("s0", status=SagaStatus.CONFIRMED)
    await _delivered(pg_url)
    assert heard == []


async def test_a_write_batch_is_three_round_trips(
    pg_store: PostgresSagaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN with the heads' statement, the write with the sync that checks it, the COMMIT."""
    syncs: list[list[str]] = []
    sending, syncing = pipelined._Link.send, pipelined._Link.sync
    queued: list[str] = []

    def send(self: Any, sql: str, params: tuple[Any, ...], expect: int | None = None) -> None:
        queued.append(sql.split(" ")[0])
        sending(self, sql, params, expect)

    async def sync(self: Any) -> Any:
        syncs.append(queued[:])
        queued.clear()
        return await syncing(self)

    monkeypatch.setattr(pipelined._Link, "send", send)
    monkeypatch.setattr(pipelined._Link, "sync", sync)
    await pg_store.create("s0", "order", {}, "fp")  # a submitter's create: one INSERT of its own
    step = StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED, {"ok": True})
    await asyncio.gather(
        pg_store.update("s0", steps=[step]),
        pg_store.create("s1", "order", {}, "fp"),
    )
    assert syncs == [["BEGIN", "SELECT"], ["WITH"], ["COMMIT"]]


async def test_a_batch_whose_saga_changed_under_it_commits_nothing(
    pg_store: PostgresSagaStore,
) -> None:
    """The write's rows are the sagas it updated: one fewer than expected is a ConflictError
    before the COMMIT, and the whole statement (its step records too) is rolled back."""
    await pg_store.create("s0", "order", {}, "fp")
    head = Head(SagaStatus.CONFIRMED, None, False, 2.0, 3)
    row = StepRow("reserve", Phase.ACTION, StepStatus.SUCCEEDED, "{}", None, 1, 1.0, 2.0, None)
    with pytest.raises(ConflictError):
        async with pg_store.database.pipeline() as tx:
            await ArrayStatements().write(tx, [], [("s0", head, 2)], [("s0", row)])  # it is at 1
    record = await pg_store.load("s0")
    assert record is not None and record.status is SagaStatus.RUNNING and record.steps == ()


ODD_TEXTS = ["", "NULL", 'a "quoted" word', "back\\slash\\", "{braces}, commas", "é\n\t ", '\\"']


async def test_odd_texts_and_numbers_go_through_the_arrays_unchanged(
    pg_store: PostgresSagaStore,
) -> None:
    inputs = [{"text": text} for text in ODD_TEXTS]
    ids = [f"odd {text}" for text in ODD_TEXTS]
    await asyncio.gather(
        *(
            pg_store.create(saga_id, "order", data, text)
            for saga_id, data, text in zip(ids, inputs, ODD_TEXTS, strict=True)
        )
    )
    steps = [
        StepRecord(
            "reserve" + text,
            Phase.ACTION,
            StepStatus.REFUSED,
            {"why": text},
            reason=text,
            attempts=n + 1,
            started_at=1e-300 * n,
            ended_at=1.5e300,
        )
        for n, text in enumerate(ODD_TEXTS)
    ]
    await asyncio.gather(
        *(
            pg_store.update(saga_id, steps=[step], status=SagaStatus.FAILED, reason=step.reason)
            for saga_id, step in zip(ids, steps, strict=True)
        )
    )
    for saga_id, data, step in zip(ids, inputs, steps, strict=True):
        record = await pg_store.load(saga_id)
        assert record is not None
        assert (record.input, record.fingerprint, record.reason) == (data, step.reason, step.reason)
        assert record.steps == (step,)


async def test_a_batch_after_its_connection_was_cut_runs_on_a_new_one(
    pg_store: PostgresSagaStore, pg_url: str
) -> None:
    await pg_store.create("s0", "order", {}, "fp")
    await pg_store.update("s0", steps=[StepRecord("reserve", Phase.ACTION, StepStatus.SUCCEEDED)])
    conn = await asyncpg.connect(pg_url)
    try:  # every other session of the log: the batches' pipelined one among them
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    await asyncio.sleep(0.2)  # the cut seen by the idle connections
    await pg_store.update("s0", status=SagaStatus.CONFIRMED)
    record = await pg_store.load("s0")
    assert record is not None and record.status is SagaStatus.CONFIRMED

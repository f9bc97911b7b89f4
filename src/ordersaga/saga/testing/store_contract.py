"""The saga-store contract suite, as a base class a store of your own subclasses.

Every backend of the saga log — memory, SQLite, PostgreSQL, and yours — must pass the same
tests (the pattern of eventsourcing's ``tests/persistence.py``). Subclass
:class:`SagaStoreContract` under a name pytest collects, implement :meth:`create_store`, and
every test of the contract runs against your store::

    from ordersaga.saga.testing import SagaStoreContract

    class TestMyStore(SagaStoreContract):
        durable = True  # False if a new instance sees nothing of an earlier one

        async def create_store(self, clock):
            return await MyStore.open(self.url, clock=clock)

:meth:`create_store` is called once per test (twice by the test that reopens a durable store:
the second store must see the first one's data). Give each test its own empty log — a pytest
fixture of the subclass can set ``self.url``, say, to a fresh temporary file or database.

The tests are ``async`` methods: run them with pytest-asyncio in auto mode
(``asyncio_mode = "auto"``), or mark the subclass ``@pytest.mark.asyncio``. This module imports
pytest only inside the tests that need it, so importing :mod:`ordersaga.saga.testing` never
requires pytest.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterator
from typing import Any, ClassVar, NoReturn

from ordersaga.clock import Clock
from ordersaga.errors import ConflictError, StorageError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.store.base import (
    ALLOWED_TRANSITIONS,
    Attempt,
    SagaStatus,
    SagaStore,
    StepRecord,
    StepStatus,
)

__all__ = ["SagaStoreContract", "TickClock"]

S = SagaStatus
ORDER = {"order_id": "o-1", "lines": [{"sku": "A", "qty": 2}], "total": "12.50", "note": "ünï"}

# How to reach each status from a freshly created (running) saga.
PATHS: dict[SagaStatus, list[SagaStatus]] = {
    S.RUNNING: [],
    S.CONFIRMING: [S.CONFIRMING],
    S.COMPENSATING: [S.COMPENSATING],
    S.CONFIRMED: [S.CONFIRMING, S.CONFIRMED],
    S.FAILED: [S.COMPENSATING, S.FAILED],
}


class TickClock:
    """A :class:`~ordersaga.clock.Clock` for stores whose wall time moves one second per
    reading: timestamps are predictable (``last`` is the latest one handed out)."""

    def __init__(self, start: float = 1_700_000_000.25) -> None:
        self._ticks = itertools.count()
        self.start = start
        self.last = start

    def time(self) -> float:
        self.last = self.start + next(self._ticks)
        return self.last

    def monotonic(self) -> float:
        return self.last

    async def sleep(self, seconds: float) -> None:
        self.start += max(0.0, seconds)


def step(
    name: str,
    phase: Phase = Phase.ACTION,
    status: StepStatus = StepStatus.SUCCEEDED,
    started: float = 10.0,
    **result: object,
) -> StepRecord:
    return StepRecord(name, phase, status, result, None, 1, started, started + 0.5)


async def make(store: SagaStore, saga_id: str, status: SagaStatus = S.RUNNING) -> None:
    _, created = await store.create(saga_id, "order", {"id": saga_id}, f"fp-{saga_id}")
    assert created
    for target in PATHS[status]:
        await store.update(saga_id, status=target)


def _raises(error: type[BaseException]) -> Any:
    import pytest  # only when a test runs: importing this module never needs pytest

    return pytest.raises(error)


def _skip(reason: str) -> NoReturn:
    import pytest

    pytest.skip(reason)


class SagaStoreContract(abc.ABC):
    """What every saga store must do (see :class:`ordersaga.saga.store.SagaStore`)."""

    #: Whether a store created again sees what an earlier one wrote (not the memory store).
    durable: ClassVar[bool] = True

    @abc.abstractmethod
    async def create_store(self, clock: Clock) -> SagaStore:
        """A store on this test's log, taking its ``created_at``/``updated_at`` from ``clock``."""

    @functools.cached_property
    def clock(self) -> TickClock:
        """The clock this test gives its stores (``last`` is the latest timestamp handed out)."""
        return TickClock()

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[SagaStore]:
        """A store from :meth:`create_store`, closed at the end of the block."""
        store = await self.create_store(self.clock)
        try:
            yield store
        finally:
            await store.close()

    async def test_create_and_load_round_trip(self) -> None:
        async with self.opened() as store:
            record, created = await store.create("o-1", "order", ORDER, "fp-1")
            assert created
            now = self.clock.last
            assert record.input == ORDER and record.fingerprint == "fp-1"
            assert (record.status, record.steps, record.reason, record.needs_attention) == (
                S.RUNNING,
                (),
                None,
                False,
            )
            assert record.created_at == record.updated_at == now
            assert await store.load("o-1") == record
            assert await store.load("nope") is None

    async def test_create_may_record_a_saga_decided_without_steps(self) -> None:
        async with self.opened() as store:
            record, created = await store.create(
                "o-2", "order", {}, "fp", status=S.FAILED, reason="bad"
            )
            assert created and record.status is S.FAILED and record.reason == "bad"
            assert await store.load("o-2") == record
            with _raises(ConflictError):
                await store.update("o-2", steps=[step("late")])

    async def test_values_go_through_json(self) -> None:
        async with self.opened() as store:
            record, _ = await store.create("o-3", "order", {"pair": (1, 2)}, "fp")
            assert record.input == {"pair": [1, 2]}
            with _raises(TypeError):
                await store.create("o-4", "order", {"bad": object()}, "fp")
            assert await store.load("o-4") is None

    async def test_create_of_an_existing_id_returns_it_unchanged(self) -> None:
        async with self.opened() as store:
            first, _ = await store.create("o-1", "order", ORDER, "fp-1")
            await store.update("o-1", steps=[step("reserve")], status=S.CONFIRMING)
            again, created = await store.create("o-1", "other", {"different": True}, "fp-2")
            assert not created
            assert again == await store.load("o-1")
            assert (again.input, again.fingerprint, again.definition) == (ORDER, "fp-1", "order")
            assert again.status is S.CONFIRMING and again.created_at == first.created_at

    async def test_update_upserts_steps_by_step_and_phase(self) -> None:
        async with self.opened() as store:
            await make(store, "o-1")
            await store.update(
                "o-1", steps=[step("reserve", started=1.0), step("charge", started=2.0)]
            )
            # Replacing (reserve, action) keeps its place; (reserve, compensate) is another record.
            replaced = step("reserve", status=StepStatus.UNKNOWN, started=1.0, note="x")
            await store.update(
                "o-1", steps=[replaced, step("reserve", Phase.COMPENSATE, started=3.0)]
            )
            record = await store.load("o-1")
            assert record is not None
            assert [(s.step, s.phase) for s in record.steps] == [
                ("reserve", Phase.ACTION),
                ("charge", Phase.ACTION),
                ("reserve", Phase.COMPENSATE),
            ]
            assert record.step("reserve") == replaced
            assert record.step("reserve", Phase.COMPENSATE) is not None
            assert record.step("ship") is None
            assert record.updated_at == self.clock.last > record.created_at

    async def test_steps_are_ordered_by_start_time_then_insertion(self) -> None:
        async with self.opened() as store:
            await make(store, "o-1")
            await store.update("o-1", steps=[step("b", started=5.0), step("c", started=5.0)])
            await store.update("o-1", steps=[step("a", started=4.0), step("d", started=5.0)])
            record = await store.load("o-1")
            assert record is not None
            assert [s.step for s in record.steps] == ["a", "b", "c", "d"]

    async def test_update_changes_status_reason_and_attention(self) -> None:
        async with self.opened() as store:
            await make(store, "o-1")
            await store.update(
                "o-1",
                status=S.COMPENSATING,
                reason="no stock",
                needs_attention=True,
                attention_reason="inventory release: still failing",
            )
            record = await store.load("o-1")
            assert record is not None
            assert (record.status, record.reason, record.needs_attention) == (
                S.COMPENSATING,
                "no stock",
                True,
            )
            assert record.attention_reason == "inventory release: still failing"
            await store.update("o-1", steps=[step("reserve", Phase.COMPENSATE)])  # None: unchanged
            record = await store.load("o-1")
            assert record is not None and record.reason == "no stock" and record.needs_attention
            assert record.attention_reason == "inventory release: still failing"
            await store.update("o-1", status=S.FAILED, needs_attention=False)
            record = await store.load("o-1")
            assert record is not None
            assert (record.status, record.reason, record.needs_attention) == (
                S.FAILED,
                "no stock",
                False,
            )
            assert record.attention_reason is None  # clearing the flag clears its reason

    async def test_a_step_record_keeps_its_trail_of_attempts_and_probes(self) -> None:
        trail = (
            Attempt("a", 1_700_000_001.5, 0.25, "lost", "payment: response lost"),
            Attempt("a", 1_700_000_002.0, 0.125, "unreachable", "payment: connection refused"),
            Attempt("p", 1_700_000_003.0, 0.0625, "unknown"),
            Attempt("a", 1_700_000_004.0, 0.5, "applied"),
        )
        async with self.opened() as store:
            await make(store, "o-1")
            first = StepRecord("pay", Phase.ACTION, StepStatus.SUCCEEDED, {}, None, 3, 1.5, 4.5)
            await store.update("o-1", steps=[first, step("ship")])
            record = await store.load("o-1")
            assert record is not None and [s.trail for s in record.steps] == [(), ()]
            again = StepRecord(
                "pay", Phase.ACTION, StepStatus.SUCCEEDED, {}, None, 3, 1.5, 4.5, trail
            )
            await store.update("o-1", steps=[again])  # an upsert replaces the trail
            record = await store.load("o-1")
            assert record is not None
            pay = record.step("pay")
            assert pay is not None and pay.trail == trail
            assert all(type(a) is Attempt for a in pay.trail)

    async def test_every_transition_is_allowed_or_refused(self) -> None:
        async with self.opened() as store:
            for source in SagaStatus:
                for target in SagaStatus:
                    saga_id = f"{source.value}-{target.value}"
                    await make(store, saga_id, source)
                    if target in ALLOWED_TRANSITIONS[source]:
                        await store.update(saga_id, status=target)
                        expected = target
                    else:
                        with _raises(ConflictError):
                            await store.update(saga_id, status=target)
                        expected = source
                    record = await store.load(saga_id)
                    assert record is not None and record.status is expected, saga_id

    async def test_a_finished_saga_never_changes(self) -> None:
        async with self.opened() as store:
            for status in (S.CONFIRMED, S.FAILED):
                saga_id = f"done-{status.value}"
                await make(store, saga_id, status)
                before = await store.load(saga_id)
                for change in (
                    {"steps": [step("late")]},
                    {"needs_attention": True},
                    {"reason": "again"},
                    {"status": status},
                    {},
                ):
                    with _raises(ConflictError):
                        await store.update(saga_id, **change)
                assert await store.load(saga_id) == before

    async def test_update_of_an_unknown_saga_is_a_conflict(self) -> None:
        async with self.opened() as store:
            with _raises(ConflictError):
                await store.update("ghost", steps=[step("reserve")])
            assert await store.load("ghost") is None

    async def test_an_update_fenced_by_an_owner_who_holds_nothing_is_refused(self) -> None:
        async with self.opened() as store:
            # Leases are taken with claim (PostgreSQL); without one, nobody holds the saga.
            await make(store, "fenced")
            before = await store.load("fenced")
            with _raises(ConflictError):
                await store.update("fenced", steps=[step("reserve")], owner="w1")
            with _raises(ConflictError):
                await store.update("fenced", status=S.FAILED, owner="w1")
            assert await store.load("fenced") == before
            await store.update("fenced", steps=[step("reserve")])  # unfenced: applies
            record = await store.load("fenced")
            assert record is not None and record.step("reserve") is not None

    async def test_unfinished_lists_non_terminal_sagas_oldest_first(self) -> None:
        async with self.opened() as store:
            statuses = [S.CONFIRMED, S.COMPENSATING, S.RUNNING, S.FAILED, S.CONFIRMING, S.RUNNING]
            for i, status in enumerate(statuses):
                await make(store, f"s{i}", status)
            await store.update("s2", steps=[step("reserve")])
            unfinished = await store.unfinished()
            assert [r.saga_id for r in unfinished] == ["s1", "s2", "s4", "s5"]
            assert unfinished[1].step("reserve") is not None

    async def test_scan_pages_through_every_saga_in_creation_order(self) -> None:
        async with self.opened() as store:
            ids = [f"saga-{n:02d}-{'z' if n % 2 else 'a'}" for n in range(23)]  # not in id order
            for saga_id in reversed(ids):
                await make(store, saga_id)
                await store.update(saga_id, steps=[step("reserve", id=saga_id)])
            scanned = [record async for record in store.scan(batch_size=5)]
            assert [r.saga_id for r in scanned] == list(reversed(ids))
            assert all(r.step("reserve").result == {"id": r.saga_id} for r in scanned)  # type: ignore[union-attr]
            assert [r.saga_id async for r in store.scan(batch_size=23)] == list(reversed(ids))
            with _raises(ValueError):
                [r async for r in store.scan(batch_size=0)]

    async def test_scan_of_an_empty_log_yields_nothing(self) -> None:
        async with self.opened() as store:
            assert [r async for r in store.scan()] == []
            assert await store.unfinished() == []

    async def test_count_by_status(self) -> None:
        async with self.opened() as store:
            assert await store.count_by_status() == dict.fromkeys(SagaStatus, 0)
            for i, status in enumerate([S.RUNNING, S.FAILED, S.FAILED, S.CONFIRMED]):
                await make(store, f"s{i}", status)
            counts = await store.count_by_status()
            assert counts == {
                S.RUNNING: 1,
                S.FAILED: 2,
                S.CONFIRMED: 1,
                S.CONFIRMING: 0,
                S.COMPENSATING: 0,
            }

    async def test_stats_count_writes_and_commits(self) -> None:
        async with self.opened() as store:
            await make(store, "s1", S.CONFIRMED)  # create + 2 updates, one after the other
            with _raises(ConflictError):
                await store.update("s1", status=S.FAILED)
            assert store.stats.writes == 4
            assert 1 <= store.stats.commits <= 4

    async def test_a_closed_store_refuses_writes(self) -> None:
        store = await self.create_store(self.clock)
        await store.close()
        with _raises(StorageError):
            await store.create("s1", "order", {}, "fp")

    async def test_writes_survive_close_and_reopen(self) -> None:
        if not self.durable:
            _skip("the memory store keeps nothing across instances")
        store = await self.create_store(self.clock)
        await make(store, "s1", S.CONFIRMED)
        await make(store, "s2", S.COMPENSATING)
        await store.update("s2", steps=[step("reserve", Phase.COMPENSATE, note="n")], reason="r")
        before = [r async for r in store.scan()]
        await store.close()

        reopened = await self.create_store(self.clock)  # the schema is created again, idempotently
        try:
            assert [r async for r in reopened.scan()] == before
            assert [r.saga_id for r in await reopened.unfinished()] == ["s2"]
            await make(reopened, "s3")
            assert [r.saga_id async for r in reopened.scan()] == ["s1", "s2", "s3"]
        finally:
            await reopened.close()

    async def test_reads_of_many_sagas_attach_every_saga_its_steps(self) -> None:
        async with self.opened() as store:
            ids = [f"m{i:04d}" for i in range(1_100)]  # more than one step query's worth of sagas

            async def life(saga_id: str) -> None:
                await store.create(saga_id, "order", {}, "fp")
                await store.update(saga_id, steps=[step("reserve", id=saga_id)])

            await asyncio.gather(*(life(saga_id) for saga_id in ids))
            unfinished = await store.unfinished()
            assert [r.saga_id for r in unfinished] == ids
            assert all(r.steps[0].result == {"id": r.saga_id} for r in unfinished)
            scanned = [r async for r in store.scan(batch_size=1_000)]
            assert scanned == unfinished

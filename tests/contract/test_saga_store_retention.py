"""Retention in the saga store contract: compaction and sweeps, on every backend.

Times come from the backend's TickClock (one second per reading), so "ended before T" is exact.
A cutoff ``LATER`` seconds ahead puts the sagas beyond the SQL stores' settling window (sagas
created just before a cutoff are looked at again by the next pass, see ``store/retention.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from ordersaga.errors import ConflictError
from ordersaga.protocol.messages import Phase
from ordersaga.saga.result import SagaResult
from ordersaga.saga.store import SagaStatus, SagaStore
from ordersaga.saga.store.base import StepStatus
from ordersaga.saga.testing.store_contract import PATHS, step
from tests.contract.conftest import Backend

S = SagaStatus
LATER = 100.0


async def make(
    store: SagaStore, saga_id: str, status: SagaStatus, *, reason: str | None = None
) -> None:
    _, created = await store.create(
        saga_id, "order", {"id": saga_id, "big": "x" * 50}, f"fp-{saga_id}"
    )
    assert created
    await store.update(saga_id, steps=[step("reserve", weight="1.5")])
    for target in PATHS[status]:
        await store.update(saga_id, status=target, reason=reason if target.terminal else None)


async def test_prune_compacts_finished_sagas_only(store: SagaStore, backend: Backend) -> None:
    await make(store, "ok", S.CONFIRMED)
    await make(store, "ko", S.FAILED, reason="no stock")
    await make(store, "flagged", S.CONFIRMED)
    await make(store, "running", S.RUNNING)
    await make(store, "confirming", S.CONFIRMING)
    cutoff = backend.clock.time() + 0.5
    await make(store, "young", S.CONFIRMED)  # ended after the cutoff

    dry = await store.prune(cutoff, dry_run=True)
    assert (dry.sagas, dry.steps) == (3, 3)
    assert not (await store.load("ok")).pruned  # type: ignore[union-attr]

    stats = await store.prune(cutoff, batch_size=2)
    assert (stats.sagas, stats.steps) == (3, 3)
    ok = await store.load("ok")
    assert ok is not None and ok.pruned
    assert (ok.status, ok.fingerprint, ok.input, ok.steps) == (S.CONFIRMED, "fp-ok", {}, ())
    ko = await store.load("ko")
    assert ko is not None and ko.pruned and (ko.status, ko.reason) == (S.FAILED, "no stock")
    for kept in ("running", "confirming", "young"):
        record = await store.load(kept)
        assert record is not None and not record.pruned and record.steps
    assert (await store.prune(cutoff)).sagas == 0  # idempotent


async def test_never_prunes_a_saga_flagged_for_attention(
    store: SagaStore, backend: Backend
) -> None:
    await make(store, "a", S.CONFIRMING)
    await store.update("a", needs_attention=True)
    await store.update("a", status=S.CONFIRMED)  # ends still flagged (a stale flag)
    assert (await store.prune(backend.clock.time() + 1)).sagas == 0
    record = await store.load("a")
    assert record is not None and not record.pruned


async def test_a_compacted_saga_still_answers_create_and_refuses_updates(
    store: SagaStore, backend: Backend
) -> None:
    await make(store, "o-1", S.CONFIRMED)
    await store.prune(backend.clock.time() + 1)
    existing, created = await store.create("o-1", "order", {"other": True}, "fp-other")
    assert not created
    assert (existing.fingerprint, existing.status, existing.pruned) == ("fp-o-1", S.CONFIRMED, True)
    with pytest.raises(ConflictError):
        await store.update("o-1", steps=[step("late")])
    counts = await store.count_by_status()
    assert counts[S.CONFIRMED] == 1
    scanned = [r async for r in store.scan()]
    assert [(r.saga_id, r.pruned) for r in scanned] == [("o-1", True)]


async def test_a_hole_keeps_later_sagas_in_reach(store: SagaStore, backend: Backend) -> None:
    """A saga still running when a pass went by is compacted by a later pass once it ends."""
    await make(store, "first", S.RUNNING)
    await make(store, "second", S.CONFIRMED)
    assert (await store.prune(backend.clock.time() + LATER)).sagas == 1
    await store.update("first", status=S.CONFIRMING)
    await store.update("first", status=S.CONFIRMED)
    assert (await store.prune(backend.clock.time() + LATER)).sagas == 1
    first = await store.load("first")
    assert first is not None and first.pruned


async def test_sweep_visits_each_finished_saga_once(store: SagaStore, backend: Backend) -> None:
    for i in range(5):
        await make(store, f"s{i}", S.CONFIRMED if i != 2 else S.RUNNING)
    await store.prune(backend.clock.time() + LATER)  # compacted or not, a sweep visits them
    visits: list[Sequence[str]] = []

    async def visit(ids: Sequence[str]) -> None:
        visits.append(list(ids))

    before = backend.clock.time() + LATER
    assert await store.sweep("x", before, visit, batch_size=2, dry_run=True) == 4
    visits.clear()
    assert await store.sweep("x", before, visit, batch_size=2) == 4
    assert sorted(i for batch in visits for i in batch) == ["s0", "s1", "s3", "s4"]
    visits.clear()
    assert await store.sweep("x", backend.clock.time() + LATER, visit) == 0  # remembered
    assert await store.sweep("y", backend.clock.time() + LATER, visit) == 4  # per name
    await store.update("s2", status=S.COMPENSATING)
    await store.update("s2", status=S.FAILED)
    visits.clear()
    assert await store.sweep("x", backend.clock.time() + LATER, visit) == 1
    assert visits == [["s2"]]
    assert await store.decided(["s0", "s2", "nope"], backend.clock.time() + 1) == {"s0", "s2"}
    assert await store.decided(["s0"], 0.0) == set()


async def test_a_compacted_saga_keeps_what_its_replay_reports(
    store: SagaStore, backend: Backend
) -> None:
    """The failing step and its cause, the retries and the compensations outlive the steps."""
    await store.create("f", "order", {"id": "f"}, "fp-f")
    await store.update("f", steps=[dataclasses.replace(step("reserve"), attempts=3)])
    refused = dataclasses.replace(step("ship", status=StepStatus.REFUSED), reason="no", attempts=2)
    await store.update("f", steps=[refused], status=S.COMPENSATING, reason="no")
    undo = step("reserve", Phase.COMPENSATE)
    await store.update("f", steps=[undo], status=S.FAILED)
    before = SagaResult.of_record(await store.load("f"))  # type: ignore[arg-type]
    assert (before.step, before.cause, before.retries, before.compensations) == (
        "ship",
        "business",
        3,
        1,
    )
    await store.prune(backend.clock.time() + LATER)
    record = await store.load("f")
    assert record is not None and record.pruned and record.steps == ()
    assert SagaResult.of_record(record) == before
    again, created = await store.create("f", "order", {"id": "f"}, "fp-f")
    assert not created and SagaResult.of_record(again) == before

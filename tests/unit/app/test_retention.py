"""The retention settings, the DURATION argument and the periodic prune (memory store)."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from ordersaga.cli.retention import duration, retention
from ordersaga.local.retention import PruneSettings, periodic_prune, prune
from ordersaga.protocol.messages import MAX_MESSAGE_AGE, MESSAGE_AGE_MARGIN
from ordersaga.saga.store import MemoryStore, SagaStatus


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("90m", 5400), ("36h", 129600), ("7d", 604800), ("1d12h", 129600), ("2w", 1209600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "soon", "-1d", "1x", "d7"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_retention_off() -> None:
    assert retention("off") is None and retention("1h") == 3600


def test_the_services_never_go_before_the_message_age_limit_and_margin() -> None:
    settings = PruneSettings(older_than=0)
    assert settings.log_cutoff(1e6) == 1e6
    assert settings.service_cutoff(1e6) == 1e6 - MAX_MESSAGE_AGE - MESSAGE_AGE_MARGIN
    assert PruneSettings(older_than=30 * 86400).service_cutoff(1e6) == 1e6 - 30 * 86400
    with pytest.raises(ValueError):
        PruneSettings(older_than=-1)


async def finished(store: MemoryStore, saga_id: str) -> None:
    await store.create(saga_id, "order", {"order_id": saga_id}, "fp")
    await store.update(saga_id, status=SagaStatus.FAILED, reason="no")


async def test_a_pass_compacts_and_a_dry_run_only_counts() -> None:
    store = MemoryStore()
    await finished(store, "a")
    dry = await prune(store, {}, PruneSettings(older_than=0, dry_run=True), now=4e9)
    assert (dry.sagas, dry.dry_run) == (1, True)
    assert not (await store.load("a")).pruned  # type: ignore[union-attr]
    report = await prune(store, {}, PruneSettings(older_than=0), now=4e9)
    assert report.sagas == 1 and "compacted 1 finished sagas" in report.summary()
    record = await store.load("a")
    assert record is not None and record.pruned and record.reason == "no"


async def test_the_periodic_prune_runs_until_the_block_ends() -> None:
    store = MemoryStore()
    await finished(store, "a")
    async with periodic_prune(store, {}, PruneSettings(older_than=0), every=0.01):
        for _ in range(500):
            record = await store.load("a")
            if record is not None and record.pruned:
                break
            await asyncio.sleep(0.01)
    record = await store.load("a")
    assert record is not None and record.pruned
    await finished(store, "b")
    async with periodic_prune(store, {}, None, every=0.01):  # --retention off
        await asyncio.sleep(0.05)
    assert not (await store.load("b")).pruned  # type: ignore[union-attr]

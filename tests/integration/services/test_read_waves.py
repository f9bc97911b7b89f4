"""A pipelined batch reads in waves (:mod:`ordersaga.participant.waves`), with the same outcome.

On PostgreSQL the reads of a batch's commands that cannot see each other's writes go to the
server together; a command still reads what it would read after the commands before it in its
batch. The same random batches run on SQLite (one command after the other, in one transaction)
and on PostgreSQL must give the same replies and leave the same rows; and the batches that can
read together take one round trip for all their reads.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ordersaga.db import pipelined
from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, Reply
from tests.integration.services.helpers import (
    assert_credit_consistent,
    assert_stock_conserved,
    authorize,
    cancel,
    capture,
    commit,
    dump,
    open_inventory,
    open_payment,
    open_shipping,
    prepare,
    release,
    reserve,
    schedule,
    void,
)

pytestmark = pytest.mark.pg

#: The columns compared between the two databases (not the times, which differ).
_TIMES = frozenset({"created_at", "updated_at"})


def _inventory_command(rng: random.Random, sagas: int) -> Command:
    saga = f"s{rng.randrange(sagas)}"
    roll = rng.random()
    if roll < 0.5:
        lines = {rng.choice("AB"): rng.randint(1, 3) for _ in range(rng.randint(1, 2))}
        return reserve(saga, *lines.items())
    return commit(saga) if roll < 0.8 else release(saga)


def _payment_command(rng: random.Random, sagas: int) -> Command:
    saga = f"s{rng.randrange(sagas)}"
    roll = rng.random()
    if roll < 0.5:
        # Few users, small limits for user 456: refusals and accounts created in a batch.
        return authorize(saga, rng.choice((1_000, 2_000, 3_000)), user=rng.choice((1, 2, 456)))
    return capture(saga) if roll < 0.8 else void(saga)


def _shipping_command(rng: random.Random, sagas: int) -> Command:
    saga = f"s{rng.randrange(sagas)}"
    roll = rng.random()
    if roll < 0.5:
        return prepare(saga, country=rng.choice(("US", "US", "XX")))
    return schedule(saga) if roll < 0.8 else cancel(saga)


_SERVICES: dict[str, tuple[Callable[..., Any], Callable[[random.Random, int], Command]]] = {
    "inventory": (open_inventory, _inventory_command),
    "payment": (open_payment, _payment_command),
    "shipping": (open_shipping, _shipping_command),
}
_TABLES = {
    "inventory": ("items", "reservations", "idempotency"),
    "payment": ("accounts", "payments", "idempotency"),
    "shipping": ("shipments", "idempotency"),
}


async def _batch(service: KitService, commands: list[Command]) -> list[Reply | str]:
    outcomes = await asyncio.gather(*map(service.handle, commands), return_exceptions=True)
    return [o if isinstance(o, Reply) else type(o).__name__ for o in outcomes]


@pytest.mark.parametrize("name", sorted(_SERVICES))
@pytest.mark.parametrize("seed", range(3))
async def test_random_batches_decide_as_one_after_the_other(
    pg_schema_url: str, tmp_path: Path, name: str, seed: int
) -> None:
    """Overlapping items and users, actions and their compensations or confirmations in one
    batch, repeats and tombstones: PostgreSQL (waves) answers and writes as SQLite does."""
    opener, make = _SERVICES[name]
    on_pg: KitService = await opener(pg_schema_url)
    on_sqlite: KitService = await opener(f"sqlite:///{tmp_path / 'serial.db'}")
    rng = random.Random(seed)
    try:
        assert on_pg.db.pipelined and not on_sqlite.db.pipelined
        for _ in range(12):
            commands = [make(rng, 10) for _ in range(rng.randint(1, 24))]
            assert await _batch(on_pg, commands) == await _batch(on_sqlite, commands)
        tables = _TABLES[name]
        assert await dump(on_pg.db, tables, _TIMES) == await dump(on_sqlite.db, tables, _TIMES)
        if name == "inventory":
            await assert_stock_conserved(on_pg.db)
        if name == "payment":
            await assert_credit_consistent(on_pg.db)
    finally:
        await on_pg.close()
        await on_sqlite.close()


class _Syncs:
    """Counts the pipelined connections' sync points (round trips)."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Syncs]:
    counted = _Syncs()
    real = pipelined._Link.sync

    async def sync(link: Any) -> Any:
        counted.count += 1
        return await real(link)

    monkeypatch.setattr(pipelined._Link, "sync", sync)
    yield counted


@pytest.fixture
async def inventory_pg(pg_schema_url: str) -> AsyncIterator[KitService]:
    service = await open_inventory(pg_schema_url)
    yield service
    await service.close()


@pytest.fixture
async def payment_pg(pg_schema_url: str) -> AsyncIterator[KitService]:
    service = await open_payment(pg_schema_url)
    yield service
    await service.close()


async def _syncs_of(service: KitService, syncs: _Syncs, commands: list[Command]) -> int:
    before = service.stats.commits
    start = syncs.count
    outcomes = await _batch(service, commands)
    assert all(isinstance(o, Reply) and o.ok for o in outcomes), outcomes
    assert service.stats.commits == before + 1  # one batch, not run again isolated
    return syncs.count - start


async def test_confirmations_of_distinct_resources_read_in_one_round_trip(
    inventory_pg: KitService, syncs: _Syncs
) -> None:
    """Eight commits read their reservations together: one round trip for the reads, one for
    the writes' counts, one for the COMMIT."""
    sagas = [f"s{i}" for i in range(8)]
    await _syncs_of(inventory_pg, syncs, [reserve(s, ("A", 1)) for s in sagas[:4]])
    await _syncs_of(inventory_pg, syncs, [reserve(s, ("B", 1)) for s in sagas[4:]])
    assert await _syncs_of(inventory_pg, syncs, [commit(s) for s in sagas]) == 3
    await assert_stock_conserved(inventory_pg.db)


async def test_a_read_waits_for_the_earlier_commands_that_may_write_its_rows(
    inventory_pg: KitService, syncs: _Syncs
) -> None:
    """Reservations of one item read one after the other (each sees the one before), those of
    other items with the first; a commit may move any item's counts: the reservations after it
    read once it is decided."""
    assert await _syncs_of(inventory_pg, syncs, [reserve(f"a{i}", ("A", 1)) for i in range(4)]) == 6
    mixed = [reserve("b0", ("A", 1)), reserve("b1", ("B", 1)), reserve("b2", ("A", 1))]
    assert await _syncs_of(inventory_pg, syncs, mixed) == 2 + 2  # A, B together; then A
    after_commit = [reserve("c0", ("B", 1)), commit("a0"), reserve("c1", ("B", 1))]
    # c0 and a0's row together; then c1 (a0 may have moved B); then the counts, the COMMIT.
    assert await _syncs_of(inventory_pg, syncs, after_commit) == 2 + 2
    rows = await inventory_pg.db.fetchall("SELECT item_id, held, sold FROM items ORDER BY 1")
    assert rows[0] == {"item_id": "A", "held": 5, "sold": 1}
    assert rows[1] == {"item_id": "B", "held": 3, "sold": 0}
    await assert_stock_conserved(inventory_pg.db)


async def test_authorizations_of_other_users_read_together(
    payment_pg: KitService, syncs: _Syncs
) -> None:
    """One round trip for the accounts of eight users; eight for eight payments of one user
    (each sees the authorized total the one before left)."""
    others = [authorize(f"u{i}", 100, user=100 + i) for i in range(8)]
    assert await _syncs_of(payment_pg, syncs, others) == 3
    same = [authorize(f"v{i}", 100, user=7) for i in range(8)]
    assert await _syncs_of(payment_pg, syncs, same) == 8 + 2
    row = await payment_pg.db.fetchone("SELECT authorized_cents FROM accounts WHERE user_id = 7")
    assert row == {"authorized_cents": 800}
    await assert_credit_consistent(payment_pg.db)

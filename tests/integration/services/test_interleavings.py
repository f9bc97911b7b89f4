"""Property: random concurrent interleavings of actions, compensations, confirmations and
duplicate deliveries, through several connections, keep every invariant.

Hypothesis draws a batch of deliveries (each possibly repeated); they all run at once through
three service instances that yield between their read and write phases, so versions really
race. Afterwards: stock is conserved and matches the reservations, every key got one reply no
matter how often it was delivered, the probe agrees with it, and each resource ended in the one
state its successful commands imply.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import given, settings
from hypothesis import strategies as st

from ordersaga.protocol.messages import Command, KeyState, Reply
from ordersaga.services.config import InventoryConfig, ItemSpec
from ordersaga.services.inventory import InventoryService
from tests.hypothesis_profiles import examples
from tests.integration.services.helpers import (
    assert_stock_conserved,
    commit,
    interleaving_options,
    open_inventory,
    release,
    reserve,
)

T = TypeVar("T")
CONFIG = InventoryConfig({"A": ItemSpec(100, 6, Decimal(1)), "B": ItemSpec(100, 4, Decimal(1))})
_examples = itertools.count()

DELIVERY = st.tuples(
    st.sampled_from(["reserve", "release", "commit"]),
    st.integers(0, 4),  # saga
    st.sampled_from(["A", "B"]),
    st.integers(1, 3),  # quantity
    st.integers(1, 3),  # times delivered
)


def _command(prefix: str, kind: str, saga: int, item: str, qty: int) -> Command:
    name = f"{prefix}-{saga}"
    if kind == "reserve":
        # One payload per saga (the item and quantity of its first draw are kept below).
        return reserve(name, (item, qty))
    return release(name) if kind == "release" else commit(name)


def _run_example(url: str, deliveries: list[tuple[str, int, str, int, int]]) -> int:
    """Run one example; return the version conflicts it hit."""
    prefix = f"x{next(_examples)}"  # examples share a database: keep their sagas apart
    firsts: dict[tuple[str, int], tuple[str, int]] = {}
    commands: list[Command] = []
    for kind, saga, item, qty, times in deliveries:
        item, qty = firsts.setdefault((kind, saga), (item, qty))
        commands += [_command(prefix, kind, saga, item, qty)] * times
    with asyncio.Runner() as runner:
        run: Callable[[Coroutine[Any, Any, T]], T] = runner.run
        services = [
            run(open_inventory(url, CONFIG, options=interleaving_options(i), pool_size=2))
            for i in range(3)
        ]
        try:
            replies = run(_deliver(services, commands))
            run(_check(services[0], commands, replies))
            return sum(service.stats.conflicts for service in services)
        finally:
            for service in services:
                run(service.close())


async def _deliver(services: list[InventoryService], commands: list[Command]) -> list[Reply]:
    return list(
        await asyncio.gather(
            *(services[i % len(services)].handle(c) for i, c in enumerate(commands))
        )
    )


async def _check(service: InventoryService, commands: list[Command], replies: list[Reply]) -> None:
    await assert_stock_conserved(service.db)
    by_key: dict[str, set[str]] = {}
    for command, reply in zip(commands, replies, strict=True):
        by_key.setdefault(command.key, set()).add(repr(reply))
    for key_, seen in by_key.items():
        assert len(seen) == 1, (key_, seen)  # however often delivered: one answer
        reply = next(r for c, r in zip(commands, replies, strict=True) if c.key == key_)
        probe = await service.probe(key_)
        assert probe.reply == reply
        assert probe.state is (KeyState.APPLIED if reply.ok else KeyState.REFUSED)
    outcome = {c.key: r for c, r in zip(commands, replies, strict=True)}
    sagas = {c.key.rsplit(":", 2)[0] for c in commands}
    for saga in sagas:
        row = await service.db.fetchone(
            "SELECT state, tombstone FROM reservations WHERE ref = ?", f"{saga}:inventory"
        )
        ok = {
            phase
            for phase in ("action", "compensate", "confirm")
            if (r := outcome.get(f"{saga}:inventory:{phase}")) is not None and r.ok
        }
        assert not {"compensate", "confirm"} <= ok  # never both released and committed
        if "confirm" in ok:
            expected: str | None = "committed"
        elif "compensate" in ok:
            expected = "released"
        else:
            expected = "held" if "action" in ok else None
        assert (row["state"] if row else None) == expected, (saga, ok, row)
        if row is not None and row["tombstone"]:
            assert "action" not in ok


def test_random_interleavings_keep_every_invariant(db_url: str) -> None:
    conflicts = []

    @settings(
        max_examples=examples(25),
        deadline=None,
    )
    @given(st.lists(DELIVERY, min_size=1, max_size=14))
    def check(deliveries: list[tuple[str, int, str, int, int]]) -> None:
        conflicts.append(_run_example(db_url, deliveries))

    check()
    assert sum(conflicts) > 0, "no example raced: the interleaving proved nothing"

"""Two replicas of the inventory service, two OS processes on one PostgreSQL database.

Many clients reserve a hot item (far more demand than stock) through both replicas at once,
releasing or committing some of what they got, and sending some commands to *both* replicas
under the same key at the same moment. Optimistic locking across processes must hold: no
oversell, stock conserved, every duplicate answered identically, and the replicas must really
have raced (version conflicts counted by their /stats).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ordersaga.db import open_database
from ordersaga.errors import TransportError
from ordersaga.protocol.messages import Command, Phase, Reply, make_key
from ordersaga.transport.http import HttpSettings, HttpTransport
from tests.integration.http.conftest import ServiceProcess
from tests.integration.services.helpers import assert_stock_conserved

pytestmark = pytest.mark.pg

HOT, STOCK, CLIENTS, ORDERS_PER_CLIENT = "HOT", 60, 24, 8

WORLD = {
    "items": {
        HOT: {"price": "10.00", "stock": STOCK, "weight_kg": "1"},
        "A": {"price": "1.00", "stock": 1000, "weight_kg": "1"},
    },
    "payment": {"methods": ["CreditCard"], "default_credit_limit": "1000.00"},
    "shipping": {
        "countries": ["US"],
        "base_cost": "1.00",
        "cost_per_kg": "1.00",
        "max_weight_kg": 30,
    },
}


async def _send(transport: HttpTransport, command: Command) -> Reply:
    """The definite reply, retrying the same key while the outcome is unknown."""
    for _ in range(100):
        try:
            return await transport.send(command)
        except TransportError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"no definite answer for {command.key}")


def _command(saga: str, action: str, phase: Phase, **payload: Any) -> Command:
    return Command("inventory", action, make_key(saga, "reserve", phase), payload)


async def test_two_replicas_never_oversell(
    pg_url: str, tmp_path: Path, start_service: Callable[..., ServiceProcess]
) -> None:
    world = tmp_path / "world.json"
    world.write_text(json.dumps(WORLD))
    replicas = [start_service("inventory", pg_url, wait=False, world=world) for _ in range(2)]
    for replica in replicas:
        replica.wait_healthy()
    # Every command its own request, as many in flight as the clients send: the replicas race
    # command by command (a batch is decided in one transaction: see test_batch.py).
    single = HttpSettings(max_batch=1)
    transports = [HttpTransport({"inventory": r.url}, single) for r in replicas]
    granted: list[str] = []
    released: set[str] = set()
    duplicates: list[tuple[Reply, Reply]] = []

    async def client(index: int) -> None:
        rng = random.Random(index)
        for n in range(ORDERS_PER_CLIENT):
            saga = f"c{index}-{n}"
            items = [{"item_id": HOT, "quantity": 1}]
            if rng.random() < 0.3:
                items.append({"item_id": "A", "quantity": 2})
            reserve = _command(saga, "reserve", Phase.ACTION, order_id=saga, items=items)
            if n % 4 == 0:  # the same command to both replicas at once
                pair = await asyncio.gather(*(_send(t, reserve) for t in transports))
                duplicates.append((pair[0], pair[1]))
                reply = pair[0]
            else:
                reply = await _send(transports[(index + n) % 2], reserve)
            if not reply.ok:
                assert "insufficient stock" in (reply.reason or ""), reply
                continue
            granted.append(saga)
            other = transports[(index + n + 1) % 2]
            roll = rng.random()
            if roll < 0.3:
                undo = _command(saga, "release", Phase.COMPENSATE, order_id=saga)
                assert (await _send(other, undo)).ok
                released.add(saga)
            elif roll < 0.6:
                done = _command(saga, "commit", Phase.CONFIRM, order_id=saga)
                assert (await _send(other, done)).ok

    try:
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
    finally:
        for transport in transports:
            await transport.close()

    assert all(a == b for a, b in duplicates), [d for d in duplicates if d[0] != d[1]]
    kept = len(granted) - len(released)
    assert kept == STOCK  # demand far exceeds stock: all of it went, and not one unit more
    db = await open_database(pg_url)
    try:
        await assert_stock_conserved(db)
        row = await db.fetchone("SELECT * FROM items WHERE item_id = ?", HOT)
        assert row is not None and row["available"] == 0
        assert row["held"] + row["sold"] == kept
    finally:
        await db.close()
    stats = [replica.stats() for replica in replicas]
    assert all(s["commands"] > 0 for s in stats), stats
    assert sum(s["conflicts"] for s in stats) > 0, stats  # they really raced

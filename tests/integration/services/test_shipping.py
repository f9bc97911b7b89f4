"""Shipping business rules (CONTRACT.md section 4), on every backend."""

from __future__ import annotations

import pytest

from ordersaga.protocol.messages import ReplyStatus
from ordersaga.services.shipping import ShippingService
from tests.integration.services.helpers import cancel, dump, prepare, schedule


@pytest.mark.parametrize(
    ("weight", "cost"),
    [
        ("0", 499),  # base cost only
        ("2.2", 829),  # 4.99 + 1.50 * 2.2 = 8.29
        ("0.003", 499),  # 4.99 + 0.0045 -> 4.9945 rounds down
        ("0.0033", 499),  # 4.99495 rounds down (no float creeping up to 5.00)
        ("0.00334", 500),  # 4.99501 rounds up
        ("0.01", 501),  # 4.99 + 0.015 = 5.005 -> half-up 5.01
        ("30", 4999),  # exactly the maximum weight is allowed
    ],
)
async def test_cost_is_exact_and_rounded_half_up(
    shipping: ShippingService, weight: str, cost: int
) -> None:
    reply = await shipping.handle(prepare("s1", weight=weight))
    assert reply.status is ReplyStatus.OK, reply
    assert reply.body == {"cost_cents": cost}
    row = await shipping.db.fetchone("SELECT * FROM shipments")
    assert row is not None
    assert (row["state"], row["cost_cents"], row["weight_kg"]) == ("prepared", cost, weight)


@pytest.mark.parametrize("country", ["us", "De", " fr ", "US"])
async def test_country_is_compared_case_insensitively(
    shipping: ShippingService, country: str
) -> None:
    assert (await shipping.handle(prepare("s1", country=country))).ok


async def test_country_not_served_is_refused(shipping: ShippingService) -> None:
    reply = await shipping.handle(prepare("s1", country="Narnia"))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "country 'Narnia' is not served"
    assert await shipping.db.fetchall("SELECT * FROM shipments") == []


async def test_too_heavy_is_refused(shipping: ShippingService) -> None:
    reply = await shipping.handle(prepare("s1", weight="30.001"))
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == "weight 30.001 kg exceeds the maximum of 30 kg"
    assert await shipping.db.fetchall("SELECT * FROM shipments") == []


async def test_schedule_and_cancel_transitions(shipping: ShippingService) -> None:
    await shipping.handle(prepare("s1"))
    await shipping.handle(prepare("s2"))
    assert (await shipping.handle(schedule("s1"))).body == {"state": "scheduled"}
    assert (await shipping.handle(cancel("s2"))).body == {"state": "cancelled"}
    refused = await shipping.handle(cancel("s1"))
    assert refused.reason == "illegal transition: shipment is scheduled, cannot cancel"
    refused = await shipping.handle(schedule("s2"))
    assert refused.reason == "illegal transition: shipment is cancelled, cannot schedule"
    states = {r["ref"]: r["state"] for r in await shipping.db.fetchall("SELECT * FROM shipments")}
    assert states == {"s1:shipping": "scheduled", "s2:shipping": "cancelled"}


async def test_schedule_of_unseen_shipment_is_refused(shipping: ShippingService) -> None:
    before = await dump(shipping.db, ["shipments"])
    reply = await shipping.handle(schedule("nobody"))
    assert reply.status is ReplyStatus.REFUSED
    assert await dump(shipping.db, ["shipments"]) == before

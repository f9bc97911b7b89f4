"""Bad input gets a clear ``invalid`` reply: never an exception, and nothing changes."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest

from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, ReplyStatus
from ordersaga.services.inventory import InventoryService
from ordersaga.services.payment import PaymentService
from ordersaga.services.shipping import ShippingService
from tests.integration.services.helpers import (
    TABLES,
    Case,
    authorize,
    commit,
    dump,
    prepare,
    release,
    reserve,
)

BIG = 2**63


def _with(command: Command, **changes: Any) -> Command:
    payload = {**command.payload, **changes}
    return dataclasses.replace(command, payload={k: v for k, v in payload.items() if v != ...})


def _line(**line: Any) -> Command:
    return _with(reserve("s1"), items=[{"item_id": "A", "quantity": 1, **line}])


INVENTORY_BAD = {
    "no order id": _with(reserve("s1", ("A", 1)), order_id=...),
    "order id not a string": _with(reserve("s1", ("A", 1)), order_id=5),
    "empty order id": _with(reserve("s1", ("A", 1)), order_id=""),
    "no items": _with(reserve("s1"), items=...),
    "items not a list": _with(reserve("s1"), items="A"),
    "empty items": reserve("s1"),
    "item not an object": _with(reserve("s1"), items=[["A", 1]]),
    "no quantity": _with(reserve("s1"), items=[{"item_id": "A"}]),
    "zero quantity": _line(quantity=0),
    "negative quantity": _line(quantity=-1),
    "bool quantity": _line(quantity=True),
    "float quantity": _line(quantity=1.0),
    "string quantity": _line(quantity="2"),
    "null quantity": _line(quantity=None),
    "huge quantity": _line(quantity=BIG),
    "empty item id": _line(item_id=""),
    "numeric item id": _line(item_id=7),
    "release without order id": _with(release("s1"), order_id=...),
    "release with numeric order id": _with(release("s1"), order_id=5),
    "commit with numeric order id": _with(commit("s1"), order_id=5),
}

SHIPPING_BAD = {
    "no address": _with(prepare("s1"), address=...),
    "address a string": _with(prepare("s1"), address="1 Main St, Springfield, US"),
    "no country": _with(prepare("s1"), address={"street": "x", "city": "y"}),
    "empty country": _with(prepare("s1"), address={"street": "x", "city": "y", "country": ""}),
    "numeric street": _with(prepare("s1"), address={"street": 1, "city": "y", "country": "US"}),
    "float weight": _with(prepare("s1"), weight_kg=2.2),
    "no weight": _with(prepare("s1"), weight_kg=...),
    "word weight": prepare("s1", weight="heavy"),
    "negative weight": prepare("s1", weight="-1"),
    "exponent weight": prepare("s1", weight="1E+999999"),
    "empty weight": prepare("s1", weight=""),
    "two dots": prepare("s1", weight="1.2.3"),
    "non-ascii digits": prepare("s1", weight="\u0661"),
    "nan weight": prepare("s1", weight="NaN"),
}

PAYMENT_BAD = {
    "string user": _with(authorize("s1", 100), user_id="456"),
    "negative user": _with(authorize("s1", 100), user_id=-1),
    "bool user": _with(authorize("s1", 100), user_id=True),
    "float user": _with(authorize("s1", 100), user_id=1.5),
    "no user": _with(authorize("s1", 100), user_id=...),
    "negative amount": authorize("s1", -1),
    "string amount": _with(authorize("s1", 100), amount_cents="10.00"),
    "float amount": _with(authorize("s1", 100), amount_cents=10.5),
    "huge amount": authorize("s1", BIG),
    "no method": _with(authorize("s1", 100), method=...),
    "numeric method": _with(authorize("s1", 100), method=5),
    "numeric card": _with(authorize("s1", 100), card_number=4111111111111111),
    "numeric expiry": _with(authorize("s1", 100), expiry=1230),
    "no order id": _with(authorize("s1", 100), order_id=...),
}


async def _assert_invalid(service: KitService, command: Command, tables: tuple[str, ...]) -> None:
    before = await dump(service.db, tables)
    reply = await service.handle(command)
    assert reply.status is ReplyStatus.INVALID, reply
    assert reply.reason, reply
    assert reply.body == {}
    assert await dump(service.db, tables) == before
    assert service.stats.invalid == 1


@pytest.mark.parametrize("command", INVENTORY_BAD.values(), ids=INVENTORY_BAD.keys())
async def test_inventory_bad_payloads(inventory: InventoryService, command: Command) -> None:
    await _assert_invalid(inventory, command, TABLES["inventory"])


@pytest.mark.parametrize("command", SHIPPING_BAD.values(), ids=SHIPPING_BAD.keys())
async def test_shipping_bad_payloads(shipping: ShippingService, command: Command) -> None:
    await _assert_invalid(shipping, command, TABLES["shipping"])


@pytest.mark.parametrize("command", PAYMENT_BAD.values(), ids=PAYMENT_BAD.keys())
async def test_payment_bad_payloads(payment: PaymentService, command: Command) -> None:
    await _assert_invalid(payment, command, TABLES["payment"])


def _envelopes(case: Case) -> dict[str, Command]:
    good = case.action("s1")
    nested: dict[str, Any] = {}
    for _ in range(5000):
        nested = {"x": nested}
    return {
        "wrong service": dataclasses.replace(good, service="elsewhere"),
        "unknown action": dataclasses.replace(good, action="explode"),
        "action name not a string": dataclasses.replace(good, action=None),  # type: ignore[arg-type]
        "confirm action under an action key": dataclasses.replace(case.confirm("s1"), key=good.key),
        "action under a compensate key": dataclasses.replace(good, key="s1:x:compensate"),
        "empty key": dataclasses.replace(good, key=""),
        "key without phase": dataclasses.replace(good, key="s1"),
        "unknown phase": dataclasses.replace(good, key="s1:x:bogus"),
        "key with a space": dataclasses.replace(good, key="s 1:x:action"),
        "key without saga": dataclasses.replace(good, key=":x:action"),
        "key too long": dataclasses.replace(good, key="s" * 600 + ":x:action"),
        "key not a string": dataclasses.replace(good, key=123),  # type: ignore[arg-type]
        "payload not an object": dataclasses.replace(good, payload=["a"]),  # type: ignore[arg-type]
        "payload with a Decimal": _with(good, extra=Decimal("1")),
        "payload with an object": _with(good, extra=object()),
        "payload with int keys": _with(good, extra={1: "a", "b": 2}),
        "deeply nested payload": _with(good, extra=nested),
        "oversized payload": _with(good, extra="x" * (64 * 1024)),
    }


@pytest.mark.parametrize(
    "label",
    list(_envelopes(Case("x", None, reserve, release, commit, "")).keys()),  # type: ignore[arg-type]
)
async def test_bad_envelopes(case: Case, service: KitService, label: str) -> None:
    await _assert_invalid(service, _envelopes(case)[label], case.tables)


async def test_payload_just_under_the_size_limit_is_accepted(
    inventory: InventoryService,
) -> None:
    command = _with(reserve("s1", ("A", 1)), note="x" * (60 * 1024))
    assert (await inventory.handle(command)).ok


async def test_unknown_extra_fields_are_ignored(case: Case, service: KitService) -> None:
    assert (await service.handle(_with(case.action("s1"), comment="from a newer caller"))).ok

"""The order values: canonical JSON, fingerprints, text rendering."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo, merge_items
from ordersaga.protocol.messages import canonical_json
from tests.hypothesis_profiles import examples

from .strategies import orders

ORDER = Order(
    "123",
    456,
    (LineItem("B", 1), LineItem("A", 2)),
    PaymentInfo("CreditCard", "4111111111111111", "12/30"),
    Address("1 Main St", "Springfield", "US"),
)


def test_to_json_is_the_stream_json_shape() -> None:
    assert ORDER.to_json() == {
        "order_id": "123",
        "user_id": 456,
        "items": [{"item_id": "B", "quantity": 1}, {"item_id": "A", "quantity": 2}],
        "payment_info": {
            "method": "CreditCard",
            "card_number": "4111111111111111",
            "expiry": "12/30",
        },
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
    }


@settings(max_examples=examples(200), deadline=None)
@given(orders)
def test_from_json_inverts_to_json(order: Order) -> None:
    assert Order.from_json(order.to_json()) == order
    assert Order.from_json(json.loads(canonical_json(order.to_json()))) == order


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {**ORDER.to_json(), "user_id": "456"},
        {**ORDER.to_json(), "user_id": True},
        {**ORDER.to_json(), "items": [{"item_id": "A"}]},
        {**ORDER.to_json(), "payment_info": None},
        {**ORDER.to_json(), "shipping_address": {"country": "US"}},
        {**ORDER.to_json(), "payment_info": {"method": "X", "card_number": 4111}},
    ],
)
def test_from_json_rejects_a_wrong_shape(broken: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Order.from_json(broken)


def test_normalized_merges_and_sorts_items() -> None:
    order = Order(
        "1", 1, (LineItem("B", 1), LineItem("A", 2), LineItem("B", 3)), ORDER.payment, ORDER.address
    )
    assert order.normalized().items == (LineItem("A", 2), LineItem("B", 4))
    already = order.normalized()
    assert already.normalized() is already


def test_fingerprint_is_sha256_of_the_canonical_normalized_json() -> None:
    import hashlib

    expected = hashlib.sha256(canonical_json(ORDER.normalized().to_json()).encode()).hexdigest()
    assert ORDER.fingerprint() == expected
    assert len(expected) == 64


def test_fingerprint_changes_with_any_content() -> None:
    variants = [
        Order("124", 456, ORDER.items, ORDER.payment, ORDER.address),
        Order("123", 457, ORDER.items, ORDER.payment, ORDER.address),
        Order("123", 456, (LineItem("B", 1), LineItem("A", 3)), ORDER.payment, ORDER.address),
        Order("123", 456, ORDER.items, PaymentInfo("CreditCard"), ORDER.address),
        Order("123", 456, ORDER.items, ORDER.payment, Address("1 Main St", "Springfield", "CA")),
    ]
    assert len({ORDER.fingerprint(), *(v.fingerprint() for v in variants)}) == 6


def test_to_text_renders_the_text_form() -> None:
    assert ORDER.to_text() == (
        "Order 123, User 456, Items: [{B, 1}, {A, 2}], "
        "Payment: CreditCard 4111111111111111 12/30, Address: 1 Main St, Springfield, US"
    )


@pytest.mark.parametrize(
    ("address", "text"),
    [
        (Address("1 Main St", "Springfield", "US"), "1 Main St, Springfield, US"),
        (Address("1 Main St", "", "US"), "1 Main St, US"),
        (Address("", "Springfield", "US"), ", Springfield, US"),
        (Address("", "", "US"), "US"),
    ],
)
def test_address_text(address: Address, text: str) -> None:
    assert address.to_text() == text


def test_json_line_leaves_out_null_card_fields() -> None:
    order = Order("1", 2, (LineItem("A", 1),), PaymentInfo("PayPal"), Address("", "", "US"))
    assert json.loads(order.to_json_line())["payment_info"] == {"method": "PayPal"}


def test_merge_items_keeps_first_appearance() -> None:
    assert merge_items([("B", 1), ("A", 1), ("B", 2)]) == (LineItem("B", 3), LineItem("A", 1))


def test_the_values_own_inits_keep_the_dataclass_behaviour() -> None:
    # Each class stores its fields through their slots (ordersaga.slots): keywords, defaults,
    # equality, replace and immutability stay those of a frozen dataclass.
    by_keywords = Order(
        order_id="123",
        user_id=456,
        items=(LineItem(item_id="B", quantity=1), LineItem("A", quantity=2)),
        payment=PaymentInfo(method="CreditCard", card_number="4111111111111111", expiry="12/30"),
        address=Address(street="1 Main St", city="Springfield", country="US"),
    )
    assert by_keywords == ORDER and hash(by_keywords.items) == hash(ORDER.items)
    assert PaymentInfo("Cash") == PaymentInfo("Cash", None, None)
    assert dataclasses.replace(ORDER, user_id=7).user_id == 7
    for value in (ORDER, ORDER.items[0], ORDER.payment, ORDER.address):
        name = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, name, "x")
    with pytest.raises(TypeError):
        LineItem("A")  # type: ignore[call-arg]

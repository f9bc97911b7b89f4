"""The sequential reference model of the business rules."""

from __future__ import annotations

from datetime import date

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo
from ordersaga.orders.world import parse_world
from ordersaga.proving.reference import ReferenceModel, expiry_is_past

WORLD = parse_world(
    {
        "items": {
            "A": {"price": "12.50", "stock": 3, "weight_kg": "0.5"},
            "H": {"price": "1.00", "stock": 10, "weight_kg": "10"},
        },
        "payment": {
            "methods": ["CreditCard", "PayPal"],
            "default_credit_limit": "100.00",
            "credit_limits": {"7": "20.00"},
        },
        "shipping": {
            "countries": ["US"],
            "base_cost": "4.99",
            "cost_per_kg": "1.50",
            "max_weight_kg": "30",
        },
    }
)
TODAY = date(2026, 3, 15)


def order(
    *items: tuple[str, int], user: int = 1, payment: PaymentInfo | None = None, country: str = "us"
) -> Order:
    return Order(
        "o",
        user,
        tuple(LineItem(i, q) for i, q in items),
        payment or PaymentInfo("PayPal"),
        Address("", "", country),
    )


def test_amount_is_goods_plus_shipping_rounded_half_up() -> None:
    model = ReferenceModel(WORLD, today=TODAY)
    # 0.5 kg * 1.50 = 0.75 -> 4.99 + 0.75; goods 12.50
    assert model.check(order(("A", 1))).amount_cents == 1250 + 499 + 75
    # 1.5 kg * 1.50 = 2.25
    assert model.amount_cents(order(("A", 3))) == 3750 + 499 + 225


def test_rules_in_saga_order() -> None:
    model = ReferenceModel(WORLD, today=TODAY)
    assert model.check(order(("Z", 1))).step == "reserve"
    assert model.check(order(("A", 4))).step == "reserve"
    assert model.check(order(("A", 2), ("A", 2))).step == "reserve"  # summed
    assert model.check(order(("A", 1), country="DE")).step == "ship"
    assert model.check(order(("H", 4))).step == "ship"  # 40 kg
    assert model.check(order(("A", 1), payment=PaymentInfo("Cash"))).step == "pay"
    bad_card = PaymentInfo("CreditCard", "4111111111111112")
    assert model.check(order(("A", 1), payment=bad_card)).step == "pay"
    expired = PaymentInfo("CreditCard", "4111111111111111", "02/26")
    assert model.check(order(("A", 1), payment=expired)).reason == "card expired 02/26"
    assert model.check(order(("A", 2), user=7)).reason == "credit limit exceeded"
    assert model.check(order(("A", 1))).confirmed


def test_apply_uses_up_stock_and_credit() -> None:
    model = ReferenceModel(WORLD, today=TODAY)
    assert model.apply(order(("A", 2), user=1)).confirmed
    assert model.stock["A"] == 1
    assert model.spent[1] == 2500 + 499 + 150
    assert not model.apply(order(("A", 2), user=2)).confirmed
    assert model.stock["A"] == 1  # a failed order takes nothing


def test_expiry_is_valid_through_the_end_of_its_month() -> None:
    assert not expiry_is_past("03/26", TODAY)
    assert expiry_is_past("02/26", TODAY)
    assert not expiry_is_past("01/27", TODAY)
    assert expiry_is_past("12/25", TODAY)

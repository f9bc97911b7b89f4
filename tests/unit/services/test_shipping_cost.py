"""Shipping cost: exact decimal arithmetic, rounded half-up to the cent."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.participant.fields import BadPayload
from ordersaga.services.shipping import parse_weight, shipping_cost_cents


@pytest.mark.parametrize(
    ("base", "per_kg", "weight", "cents"),
    [
        (499, 150, "2.2", 829),
        (0, 1, "0.5", 1),  # 0.005 -> 0.01: half rounds up
        (0, 1, "0.49", 0),
        (0, 3, "0.5", 2),  # 0.015 -> 0.02 (binary floats would give 0.01)
        (0, 1, "1.5", 2),
        (0, 33, "0.1", 3),  # 0.033 -> 0.03
        (1, 0, "99999", 1),
        (499, 150, "0", 499),
    ],
)
def test_known_costs(base: int, per_kg: int, weight: str, cents: int) -> None:
    assert shipping_cost_cents(base, per_kg, Decimal(weight)) == cents


@given(
    base=st.integers(0, 10**9),
    per_kg=st.integers(0, 10**9),
    weight=st.decimals(min_value=0, max_value=10**6, places=6, allow_nan=False),
)
def test_matches_an_exact_fraction_oracle(base: int, per_kg: int, weight: Decimal) -> None:
    exact_cents = Fraction(base) + Fraction(per_kg) * Fraction(weight)
    # Half-up for non-negative amounts: floor(x + 1/2).
    assert shipping_cost_cents(base, per_kg, weight) == int(exact_cents + Fraction(1, 2))


@pytest.mark.parametrize("text", ["0", "1", "1.5", "030.000", "0.000000000000000000000000000001"])
def test_weights_in_plain_decimal_notation(text: str) -> None:
    assert parse_weight(text) == Decimal(text)


@pytest.mark.parametrize("text", ["", "-1", "+1", "1e3", "1.", ".5", "NaN", "inf", "1 ", "1,5"])
def test_other_weight_notations_are_refused(text: str) -> None:
    with pytest.raises(BadPayload):
        parse_weight(text)

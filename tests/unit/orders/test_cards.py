"""Luhn helpers."""

from __future__ import annotations

import random

import pytest

from ordersaga.orders.cards import luhn_check_digit, luhn_valid, make_card_number


@pytest.mark.parametrize(
    "number", ["4111111111111111", "5555555555554444", "4012888888881881", "79927398713"]
)
def test_known_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "79927398710", "", "1", "41x1", "٤١١١"])
def test_invalid_numbers(number: str) -> None:
    assert not luhn_valid(number)


def test_check_digit() -> None:
    assert luhn_check_digit("7992739871") == "3"


def test_made_numbers_pass_or_fail_as_asked() -> None:
    rng = random.Random(7)
    for _ in range(200):
        good = make_card_number(rng)
        bad = make_card_number(rng, valid=False, prefix="5", length=19)
        assert len(good) == 16 and good.startswith("4") and luhn_valid(good)
        assert len(bad) == 19 and bad.startswith("5") and not luhn_valid(bad)

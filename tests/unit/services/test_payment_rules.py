"""Card checks: the Luhn checksum and expiry, edge cases included."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.services.payment import card_refusal, luhn_valid


@pytest.mark.parametrize(
    "number",
    ["4111111111111111", "79927398713", "5555555555554444", "378282246310005", "0", "00"],
)
def test_luhn_accepts_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",
        "79927398710",
        "",
        "4111-1111-1111-1111",
        " 4111111111111111",
        "abc",
        "\uff14\uff11",  # full-width digits are digits to str.isdigit, not to us
        "\u0664\u0661",  # Arabic-Indic digits
    ],
)
def test_luhn_refuses(number: str) -> None:
    assert not luhn_valid(number)


def _check_digit(payload: str) -> str:
    for digit in "0123456789":
        if luhn_valid(payload + digit):
            return digit
    raise AssertionError("some check digit always works")


@given(st.text(alphabet="0123456789", min_size=1, max_size=20), st.data())
def test_luhn_catches_every_single_digit_error(payload: str, data: st.DataObject) -> None:
    number = payload + _check_digit(payload)
    assert luhn_valid(number)
    position = data.draw(st.integers(0, len(number) - 1))
    wrong = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert not luhn_valid(number[:position] + wrong + number[position + 1 :])


@pytest.mark.parametrize(
    ("expiry", "today", "refusal"),
    [
        ("06/25", date(2025, 6, 1), None),  # first day of the expiry month
        ("06/25", date(2025, 6, 30), None),  # valid through the last day of its month
        ("06/25", date(2025, 7, 1), "card expired at the end of 06/25"),
        ("12/29", date(2030, 1, 1), "card expired at the end of 12/29"),  # across a year
        ("12/29", date(2029, 12, 31), None),
        ("01/30", date(2029, 12, 31), None),
        ("02/24", date(2024, 2, 29), None),  # leap day
        ("00/30", date(2025, 1, 1), "expiry '00/30' is not MM/YY"),
        ("13/30", date(2025, 1, 1), "expiry '13/30' is not MM/YY"),
        ("6/30", date(2025, 1, 1), "expiry '6/30' is not MM/YY"),
        ("06/2030", date(2025, 1, 1), "expiry '06/2030' is not MM/YY"),
        ("06-30", date(2025, 1, 1), "expiry '06-30' is not MM/YY"),
        ("", date(2025, 1, 1), "expiry '' is not MM/YY"),
        (None, date(2099, 1, 1), None),  # no expiry given: nothing to check
    ],
)
def test_expiry(expiry: str | None, today: date, refusal: str | None) -> None:
    assert card_refusal(None, expiry, today) == refusal


def test_card_number_is_checked_before_expiry() -> None:
    assert card_refusal("1234", "01/20", date(2025, 1, 1)) == "card number fails the Luhn check"
    assert card_refusal("4111111111111111", None, date(2025, 1, 1)) is None

"""Masking card numbers for people: the last four digits only, malformed numbers included."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.orders.cards import make_card_number, mask_card, mask_card_field
from ordersaga.orders.parse import Rejected, Unreadable, parse_text

PAN = "4111111111111111"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (PAN, "************1111"),
        ("card 4111-1111-1111-1234 12/30", "card ****-****-****-1234 12/30"),
        ("CreditCard 4111 1111 1111 1234 12/30", "CreditCard **** **** **** 1234 12/30"),
        ("4111x1111x1111x1234", "****x****x****x1234"),
        ("4111.1111.1111.1234", "****.****.****.1234"),
        ("4111111111111111111111", "******************1111"),
    ],
)
def test_card_like_runs_keep_their_last_four_digits(text: str, masked: str) -> None:
    assert mask_card(text) == masked
    assert mask_card(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "credit limit exceeded for user 7: limit 50.00, in use 40.00, requested 12.00",
        "expiry '12/30' is not MM/YY",
        "order 12345678901",  # 11 digits: not a card number
        "item 'A': quantity must be a positive integer up to 1000000000, got 0",
        "",
    ],
)
def test_text_without_a_card_is_unchanged(text: str) -> None:
    assert mask_card(text) == text


def test_a_card_field_is_masked_whatever_it_holds() -> None:
    assert mask_card_field("4111-1111-1111-1234") == "****1234"
    assert mask_card_field("41x1") == "****411"
    assert mask_card_field("abc") == "****"


@given(st.integers(12, 19), st.sampled_from(["", " ", "-", "  ", "x"]), st.integers(0, 2**32))
def test_no_full_card_number_survives_masking(length: int, separator: str, seed: int) -> None:
    card = make_card_number(random.Random(seed), length=length)
    grouped = separator.join(card[i : i + 4] for i in range(0, len(card), 4))
    masked = mask_card(f"got {grouped} 01/29, in use")
    assert re.sub(r"[^0-9]", "", masked).count(card) == 0
    assert card[-4:] in re.sub(r"[^0-9]", "", masked)


@pytest.mark.parametrize(
    "line",
    [
        "Order 1, User 2, Items: [{A, 1}], Payment: CreditCard 4111-1111-1111-1111 12/30,"
        " Address: 1 Main St, Paris, FR",
        "Order 1, User 2, Items: [{A, 1}], Payment: CreditCard 4111 1111 1111 1111 12/30,"
        " Address: 1 Main St, Paris, FR",
        "Order 1, User 2, Items: [{A, 1}], Payment: CreditCard 4111x1111x1111x1111,"
        " Address: 1 Main St, Paris, FR",
        '{"order_id": "1", "user_id": 2, "items": [{"item_id": "A", "quantity": 1}],'
        ' "payment_info": {"method": "CreditCard", "card_number": "4111 1111 1111 1111"},'
        ' "shipping_address": {"country": "FR"}}',
        '{"order_id": "1", "user_id": 2, "items": [{"item_id": "A", "quantity": 1}],'
        ' "payment_info": {"method": "CreditCard", "card_number": "4111111111111111",'
        ' "expiry": "13/30"}, "shipping_address": "4111111111111111"}',
    ],
)
def test_rejection_reasons_show_no_card_number(line: str) -> None:
    parsed = parse_text(line)
    assert isinstance(parsed, Rejected)
    assert "1111" in parsed.reason or "expiry" in parsed.reason
    assert "1111" * 4 not in re.sub(r"[^0-9]", "", parsed.reason)


def test_unreadable_reasons_show_no_card_number() -> None:
    parsed = parse_text(f'{{"order_id": "{PAN} x"}}')
    assert isinstance(parsed, Unreadable)
    assert PAN not in parsed.reason

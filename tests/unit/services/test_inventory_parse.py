"""Parsing a reservation request: all lines validated, duplicates summed."""

from __future__ import annotations

import pytest

from ordersaga.participant.fields import BadPayload
from ordersaga.services.inventory import parse_reserve


def test_duplicates_are_summed_in_order_of_first_appearance() -> None:
    request = parse_reserve(
        {
            "order_id": "o1",
            "items": [
                {"item_id": "B", "quantity": 1},
                {"item_id": "A", "quantity": 2},
                {"item_id": "B", "quantity": 3},
            ],
        }
    )
    assert request.order_id == "o1"
    assert list(request.lines.items()) == [("B", 4), ("A", 2)]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "at least one item"),
        ([{"item_id": "A", "quantity": 1}, {"item_id": "B", "quantity": 0}], r"items\[1\]: "),
        ([{"item_id": "A"}], r"items\[0\]: missing field 'quantity'"),
        (["A"], r"items\[0\]: an item must be an object"),
    ],
)
def test_bad_lines_name_their_position(items: list[object], message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        parse_reserve({"order_id": "o1", "items": items})

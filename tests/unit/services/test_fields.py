"""Payload field helpers: typed values out, BadPayload with a clear reason otherwise."""

from __future__ import annotations

import pytest

from ordersaga.participant import fields
from ordersaga.participant.fields import BadPayload


def test_integer_accepts_ints_in_range() -> None:
    assert fields.integer({"n": 5}, "n", minimum=1, maximum=5) == 5


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "'n' must be an integer, got bool"),
        (1.0, "'n' must be an integer, got float"),
        ("1", "'n' must be an integer, got str"),
        (None, "'n' must be an integer, got null"),
        (0, "'n' must be at least 1, got 0"),
        (2**63, "'n' must be at most"),
    ],
)
def test_integer_refuses(value: object, message: str) -> None:
    with pytest.raises(BadPayload, match=message):
        fields.integer({"n": value}, "n", minimum=1)


def test_missing_field() -> None:
    with pytest.raises(BadPayload, match="missing field 'n'"):
        fields.integer({}, "n")


def test_text_rules() -> None:
    assert fields.text({"s": "x"}, "s") == "x"
    assert fields.text({"s": ""}, "s", empty=True) == ""
    with pytest.raises(BadPayload, match="must not be empty"):
        fields.text({"s": ""}, "s")
    with pytest.raises(BadPayload, match="longer than 3"):
        fields.text({"s": "abcd"}, "s", max_length=3)
    with pytest.raises(BadPayload, match="must be a string, got int"):
        fields.text({"s": 1}, "s")


def test_optional_text_reads_missing_and_null_as_none() -> None:
    assert fields.optional_text({}, "s") is None
    assert fields.optional_text({"s": None}, "s") is None
    assert fields.optional_text({"s": "v"}, "s") == "v"


def test_sequence_and_mapping() -> None:
    assert fields.sequence({"l": (1, 2)}, "l") == [1, 2]
    with pytest.raises(BadPayload, match="must be a list, got str"):
        fields.sequence({"l": "ab"}, "l")
    with pytest.raises(BadPayload, match="an item must be an object, got list"):
        fields.mapping([1], "an item")

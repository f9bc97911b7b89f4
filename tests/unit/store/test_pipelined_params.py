"""Parameters of pipelined statements in PostgreSQL's text format (pure code, no server)."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest

from ordersaga.db.pgtext import TEXT as _TEXT
from ordersaga.db.pgtext import text_of as _text


class _Str(str):
    pass


class _Int(enum.IntEnum):
    THREE = 3


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("é", "é".encode()),
        (True, b"1"),
        (False, b"0"),
        (-12, b"-12"),
        (Decimal("1.50"), b"1.50"),
        (0.1, b"0.1"),
        (_Str("x"), b"x"),  # a subclass: not in the table, written as its base type
    ],
)
def test_each_type_has_its_text(value: Any, text: bytes | None) -> None:
    assert _text(value) == text
    assert _TEXT.get(type(value), _text)(value) == text


def test_an_int_subclass_is_written_as_an_int() -> None:
    assert _TEXT.get(_Int, _text)(_Int.THREE) == str(_Int.THREE).encode()


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(TypeError, match="bytes"):
        _TEXT.get(bytes, _text)(b"x")

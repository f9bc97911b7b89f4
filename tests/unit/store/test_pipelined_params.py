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


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ([], b"{}"),
        (["a", "", "NULL"], b'{"a","","NULL"}'),
        (['say "hi"', "back\\slash", "a,b}"], b'{"say \\"hi\\"","back\\\\slash","a,b}"}'),
        (["é"], '{"é"}'.encode()),
        (["a", None], b'{"a",NULL}'),
        ([None], b"{NULL}"),
        ([1, -2, 30], b"{1,-2,30}"),
        ([1, None, True], b"{1,NULL,1}"),
        ([0.1, 1e300, -0.0], b"{0.1,1e+300,-0.0}"),
        ([0.5, None], b"{0.5,NULL}"),
        (("x", _Str('"')), b'{"x","\\""}'),  # a tuple, a subclass: element by element
    ],
)
def test_a_list_is_an_array(value: Any, text: bytes) -> None:
    assert _text(value) == text
    assert _TEXT.get(type(value), _text)(value) == text


def test_a_string_holding_a_nul_stays_one_element() -> None:
    """(For the server to refuse: no PostgreSQL text holds a NUL.)"""
    assert _text(["a\x00b", "c"]) == b'{"a\x00b","c"}'


def test_an_unknown_element_type_is_refused() -> None:
    with pytest.raises(TypeError, match="bytes"):
        _text([b"x"])

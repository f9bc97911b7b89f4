"""Parameters in PostgreSQL's text format, for statements sent untyped (:mod:`.pipelined`).

Each parameter's type is the one the server infers from the statement, as for a literal. A list
is an array (``CAST(? AS TEXT[])``, say): ``{...}`` of its elements' texts, each string quoted
(a backslash before each ``"`` and ``\\``), ``NULL`` for None.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

__all__ = ["TEXT", "text_of"]


def _decimal_text(value: Any) -> bytes:
    return str(value).encode()


def _float_text(value: Any) -> bytes:
    return repr(value).encode()


def _bool_text(value: Any) -> bytes:
    return b"1" if value else b"0"


def _none_text(value: Any) -> None:
    return None


def _element_text(value: Any) -> str:
    """An array element: NULL, a quoted string, or a number's own text."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError(f"no text format for an array element of type {type(value).__name__}")


def _array_text(values: Any) -> bytes:
    """A one-dimensional array. Strings only (the usual column of a batch): escaped in one go,
    joined by NUL (which no PostgreSQL text holds) and then by the quotes and commas, since the
    escape of a join is the join of the escapes (a string holding a NUL goes element by
    element, for the server to refuse); anything else element by element."""
    if not values:
        return b"{}"
    if all(type(v) is str for v in values):
        joined = "\x00".join(values)
        if joined.count("\x00") == len(values) - 1:
            joined = joined.replace("\\", "\\\\").replace('"', '\\"')
            return ('{"' + joined.replace("\x00", '","') + '"}').encode()
    elif all(type(v) is int for v in values):
        return ("{" + ",".join(map(str, values)) + "}").encode()
    elif all(type(v) is float for v in values):
        return ("{" + ",".join(map(repr, values)) + "}").encode()
    return ("{" + ",".join(map(_element_text, values)) + "}").encode()


#: How each parameter type is written (by exact type: one dict lookup per parameter).
TEXT: dict[type, Callable[[Any], bytes | None]] = {
    str: str.encode,
    int: _decimal_text,
    Decimal: _decimal_text,
    float: _float_text,
    bool: _bool_text,
    type(None): _none_text,
    list: _array_text,
    tuple: _array_text,
}


def text_of(value: Any) -> bytes | None:
    """A parameter in PostgreSQL's text format (its type is the one the statement infers).

    The exact types are looked up in :data:`TEXT` (``TEXT.get(type(value), text_of)``); this
    is the way for their subclasses.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int | Decimal):
        return str(value).encode()
    if isinstance(value, float):
        return repr(value).encode()
    if isinstance(value, list | tuple):
        return _array_text(value)
    raise TypeError(f"no text format for a parameter of type {type(value).__name__}")

"""Parameters in PostgreSQL's text format, for statements sent untyped (:mod:`.pipelined`).

Each parameter's type is the one the server infers from the statement, as for a literal.
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


#: How each parameter type is written (by exact type: one dict lookup per parameter).
TEXT: dict[type, Callable[[Any], bytes | None]] = {
    str: str.encode,
    int: _decimal_text,
    Decimal: _decimal_text,
    float: _float_text,
    bool: _bool_text,
    type(None): _none_text,
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
    raise TypeError(f"no text format for a parameter of type {type(value).__name__}")

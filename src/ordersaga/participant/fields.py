"""Payload validation shared by the services: each helper returns a typed value or raises.

A service never trusts a payload: it may come from another process over HTTP, from a buggy
caller, or from a fault injector. Every helper raises :class:`BadPayload`, whose message becomes
the reason of an ``invalid`` reply; nothing else escapes, so ``handle`` never raises for bad input.
Extra, unknown fields are ignored (callers may add fields without breaking older services).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_BIGINT",
    "BadPayload",
    "integer",
    "mapping",
    "optional_text",
    "order_id",
    "sequence",
    "text",
]

#: The largest value a BIGINT column holds; larger numbers could never be stored.
MAX_BIGINT = 2**63 - 1
MAX_TEXT = 512


class BadPayload(ValueError):
    """A payload breaks its action's schema; the message is the ``invalid`` reply's reason."""


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    if type(value) is dict:  # the common case, without the slower abstract-class check
        return value
    if not isinstance(value, Mapping):
        raise BadPayload(f"{what} must be an object, got {_kind(value)}")
    return value


def sequence(payload: Mapping[str, Any], name: str) -> list[Any]:
    value = _field(payload, name)
    if not isinstance(value, list | tuple):
        raise BadPayload(f"{name!r} must be a list, got {_kind(value)}")
    return list(value)


def text(
    payload: Mapping[str, Any], name: str, *, max_length: int = MAX_TEXT, empty: bool = False
) -> str:
    """A string field; empty only when ``empty`` allows it."""
    value = payload.get(name, _MISSING)
    if type(value) is not str and not isinstance(value, str):
        if value is _MISSING:
            raise BadPayload(f"missing field {name!r}")
        raise BadPayload(f"{name!r} must be a string, got {_kind(value)}")
    if not value and not empty:
        raise BadPayload(f"{name!r} must not be empty")
    if len(value) > max_length:
        raise BadPayload(f"{name!r} is longer than {max_length} characters")
    if "\x00" in value:
        # PostgreSQL TEXT cannot hold NUL: storing it would fail as a database error.
        raise BadPayload(f"{name!r} must not contain NUL characters")
    return value


def optional_text(
    payload: Mapping[str, Any], name: str, *, max_length: int = MAX_TEXT
) -> str | None:
    """A string field that may be missing or null (both read as ``None``)."""
    if payload.get(name) is None:
        return None
    return text(payload, name, max_length=max_length, empty=True)


def integer(
    payload: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_BIGINT
) -> int:
    """An integer field in ``[minimum, maximum]``; booleans and floats are refused."""
    value = _field(payload, name)
    # bool is an int subclass: True must not pass for a quantity of 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadPayload(f"{name!r} must be an integer, got {_kind(value)}")
    if value < minimum:
        raise BadPayload(f"{name!r} must be at least {minimum}, got {value}")
    if value > maximum:
        raise BadPayload(f"{name!r} must be at most {maximum}, got {value}")
    return value


def order_id(payload: Mapping[str, Any]) -> str:
    return text(payload, "order_id")


#: What ``get`` gives for a missing field (None is a value: a JSON null).
_MISSING: Any = object()


def _field(payload: Mapping[str, Any], name: str) -> Any:
    if name not in payload:
        raise BadPayload(f"missing field {name!r}")
    return payload[name]


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__

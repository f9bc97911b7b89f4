"""The HTTP transport's JSON: payloads written and answers read by orjson where that is exact.

Every command's payload is encoded on its way out and every answer decoded on its way in, so
the worker spends a good part of its time here; orjson does either several times faster than
the stdlib, but not always identically:

* :func:`encode_payload` gives a payload's wire text (what
  :data:`~ordersaga.protocol.batchwire.WIRE_JSON` writes: compact ASCII JSON, no NaN, or its
  ``TypeError``/``ValueError`` for what is not JSON data). orjson writes it when the payload is
  made of exactly dict, list, str, int, bool, None and finite floats, and its text is ASCII:
  then the text stands for the very same value (a float's digits may be spelt differently,
  ``1e16`` for ``1e+16``, as equal numbers). Anything else (a subclass, an enum, a tuple, a NaN
  that orjson would write as ``null``, an integer beyond 64 bits, a key that is not a str) goes to
  the stdlib encoder, as before.
* :func:`loads` is exactly ``json.loads``: orjson's value when it gives the same one. It refuses
  what the stdlib still reads (``NaN``, ``Infinity``, an overflowing number, an escaped lone
  surrogate, deep nesting): then the stdlib reads it. The only value it reads differently is an
  integer beyond 64 bits (as a float), which takes 19 digits or more: a body with such a run of
  digits anywhere (even in a string) is read by the stdlib.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson

from ordersaga.protocol.batchwire import WIRE_JSON

__all__ = ["encode_payload", "loads"]

_dumps = orjson.dumps
_loads = orjson.loads
_isfinite = math.isfinite
#: The types orjson writes as the stdlib does (exact types: no subclass).
_SCALARS = frozenset((str, int, bool, type(None)))
#: Every digit as ``0``, every other byte as ``.``: a body's digit runs, found by a substring
#: search (two passes in C; a regular expression costs a hundred times more).
_DIGIT_RUNS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
#: A run of digits long enough for an integer beyond 64 bits (2**64 has 20, -2**63 19).
_LONG_RUN = b"0" * 19


def encode_payload(payload: Any) -> bytes:
    """``payload``'s wire JSON (a Mapping as its dict); TypeError, ValueError or RecursionError
    when it is not JSON data (see the module docstring)."""
    data = dict(payload) if type(payload) is not dict and isinstance(payload, Mapping) else payload
    try:
        if _wire_plain(data):
            text = _dumps(data)
            if text.isascii():
                return text
    except (orjson.JSONEncodeError, RecursionError):  # a big int, a non-str key, a cycle, ...
        pass
    return WIRE_JSON.encode(data).encode("ascii")


def _wire_plain(value: Any) -> bool:
    """Whether ``value`` holds exactly dicts, lists, str, int, bool, None and finite floats."""
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list:
        return kind in _SCALARS or (kind is float and _isfinite(value))
    for item in value:
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not _isfinite(item):
                return False
        elif not ((kind is dict or kind is list) and _wire_plain(item)):
            return False
    return True


def loads(content: bytes) -> Any:
    """Exactly ``json.loads(content)`` (or its exception), by orjson where that is the same."""
    if _LONG_RUN not in content.translate(_DIGIT_RUNS):
        try:
            return _loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content)

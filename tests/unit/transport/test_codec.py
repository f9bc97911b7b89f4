"""The HTTP transport's JSON: orjson where it is exact, the stdlib everywhere else."""

from __future__ import annotations

import enum
import json
import math
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.protocol.batchwire import WIRE_JSON
from ordersaga.transport.codec import encode_payload, loads

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _stdlib(payload: Any) -> bytes:
    return WIRE_JSON.encode(payload).encode("ascii")


@given(st.dictionaries(st.text(), _json, max_size=5))
def test_a_payload_encodes_to_the_value_the_stdlib_writes_or_fails_as_it_does(
    payload: dict[str, Any],
) -> None:
    try:
        expected = _stdlib(payload)
    except ValueError:  # a NaN or an infinity
        with pytest.raises(ValueError):
            encode_payload(payload)
        return
    text = encode_payload(payload)
    assert text.isascii()
    assert json.loads(text) == json.loads(expected)


@pytest.mark.parametrize(
    "payload",
    [
        {"order_id": "o-1", "items": [{"item_id": "sku-1", "quantity": 2}], "ok": True},
        {"weight_kg": 2.5, "note": None, "tiny": 5e-324, "big": 1e300},
        [1, "a", {"b": []}],
    ],
)
def test_plain_data_encodes_to_the_stdlib_value(payload: Any) -> None:
    assert json.loads(encode_payload(payload)) == json.loads(_stdlib(payload))


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "ü\u2028"},  # not ASCII from orjson: the stdlib's escapes
        {"n": 2**64},  # beyond orjson's integers
        {1: "int key", None: "none key"},  # keys the stdlib writes as strings
        {"colour": Colour.RED},  # a str subclass
        {"pair": (1, 2)},  # a tuple
        MappingProxyType({"a": 1}),  # a Mapping that is not a dict
        {"deep": [[[[[[[[[[[]]]]]]]]]]]},
    ],
)
def test_what_orjson_would_write_otherwise_is_the_stdlib_text(payload: Any) -> None:
    data = dict(payload) if isinstance(payload, MappingProxyType) else payload
    assert encode_payload(payload) == _stdlib(data)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"x": math.nan}, ValueError),  # orjson would write null
        ({"x": [math.inf]}, ValueError),
        ({"x": {1, 2}}, TypeError),
        ({"x": object()}, TypeError),
        ({"x": b"bytes"}, TypeError),
    ],
)
def test_what_is_not_json_data_fails_as_the_stdlib_encoder_does(
    payload: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        encode_payload(payload)


def test_a_cycle_fails_as_the_stdlib_encoder_does() -> None:
    payload: dict[str, Any] = {}
    payload["self"] = payload
    with pytest.raises(ValueError):
        encode_payload(payload)


@pytest.mark.parametrize(
    "text",
    [
        b'{"replies":[{"code":200,"status":"ok","body":{"w":2.5},"reason":null}]}',
        b"18446744073709551615",  # the largest integer orjson reads exactly
        b"18446744073709551616",  # orjson: a float
        b"-9223372036854775809",  # orjson: a float
        b'{"card":"4111111111111111111","n":12345678901234567890123}',
        b"[NaN, Infinity, -Infinity, 1e400]",  # orjson refuses these
        b'"\\ud800"',  # an escaped lone surrogate
        b"-0",
        b"  [1.0, 2e5, -0.0] ",
        b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    ],
)
def test_loads_is_json_loads(text: bytes) -> None:
    expected = json.loads(text)
    value = loads(text)
    assert repr(value) == repr(expected)


@pytest.mark.parametrize("text", [b"", b"{", b"[1,]", b"\xff", b'{"a":1} x'])
def test_loads_fails_as_json_loads_does(text: bytes) -> None:
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    with pytest.raises(type(expected.value)):
        loads(text)


@given(_json)
def test_loads_reads_what_the_stdlib_wrote(value: Any) -> None:
    text = json.dumps(value).encode()
    assert repr(loads(text)) == repr(json.loads(text))

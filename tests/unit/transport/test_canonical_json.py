"""canonical_json and read_json take orjson's fast path only where it gives the stdlib's result.

canonical_json must be ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` to the byte, or raise the same exception type; read_json must be
``json.loads`` to the value (int or float, -0.0, NaN included), or raise the same exception type.
"""

from __future__ import annotations

import decimal
import enum
import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ordersaga.protocol.messages import canonical_json, canonical_text, fingerprint, read_json
from tests.hypothesis_profiles import examples


class Colour(enum.StrEnum):
    RED = "red"
    GREEN = "grün"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2**70


class Plain(enum.Enum):
    ONE = 1


class Text(str):
    pass


class Number(int):
    pass


class Table(dict[str, Any]):
    pass


class Row(list[Any]):
    pass


def stdlib(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def outcome(function: Callable[[Any], Any], value: Any) -> tuple[str, Any]:
    """A result as text (its repr tells 1 from 1.0 and -0.0 from 0.0), or the error's type."""
    try:
        return "ok", repr(function(value))
    except Exception as exc:  # the type is what is compared
        return "error", type(exc)


# Characters where JSON encoders differ if they do: escapes, controls, separators, surrogates.
SPECIAL = [
    '"',
    "\\",
    "/",
    "\x00",
    "\x1f",
    "\x7f",
    "\x80",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U0001f600",
]
characters = st.one_of(
    st.characters(),
    st.sampled_from(SPECIAL),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates (st.characters leaves them out)
)
texts = st.text(characters, max_size=12)
# Text orjson writes (no lone surrogate): where its escapes and key order could differ.
clean_texts = st.text(st.one_of(st.characters(), st.sampled_from(SPECIAL)), max_size=12)
edges = [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30]
integers = st.one_of(
    st.integers(), st.sampled_from(edges), st.sampled_from(edges).map(lambda i: -i)
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    integers,
    texts,
    st.floats(),  # NaN and the infinities included
    st.sampled_from([*Colour, *Level, Plain.ONE, Text("x"), Number(3)]),
    st.sampled_from([decimal.Decimal("1.5"), uuid.UUID(int=1), b"x", ()]),
)
keys = st.one_of(
    texts,
    texts,
    st.sampled_from([1, 1.5, True, None, Colour.RED, Text("k")]),  # the stdlib writes some
)


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(keys, children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3).map(Row),
        st.dictionaries(texts, children, max_size=3).map(Table),
    )


values = st.recursive(scalars, containers, max_leaves=20)
# Mostly what orjson writes: plain dicts, lists, str, int, bool and None; some floats (which
# orjson would write otherwise: 1e16 as 1e16, NaN as null).
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), clean_texts, clean_texts)
    | st.floats(),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(clean_texts, children, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=examples(200))
@given(st.one_of(values, plain))
def test_canonical_json_is_the_stdlib_encoding(value: Any) -> None:
    assert outcome(canonical_json, value) == outcome(stdlib, value)


@settings(max_examples=examples(200))
@given(st.one_of(values, plain))
def test_canonical_text_flags_the_text_that_reads_back_without_a_check(value: Any) -> None:
    expected = outcome(stdlib, value)
    assert outcome(lambda v: canonical_text(v)[0], value) == expected
    if expected[0] == "ok":
        text, by_orjson = canonical_text(value)
        # read back to the stdlib parser's very value (repr: no int read as a float)
        assert outcome(lambda t: read_json(t, plain=by_orjson), text) == outcome(json.loads, text)


def test_canonical_text_leaves_what_orjson_cannot_write_exactly_to_the_stdlib() -> None:
    assert canonical_text({"a": 1}) == ('{"a":1}', True)
    assert canonical_text({"a": 1.5}) == ('{"a":1.5}', False)
    assert canonical_text({"a": 2**64}) == ('{"a":18446744073709551616}', False)
    assert canonical_text({1: "x"}) == ('{"1":"x"}', False)


@settings(max_examples=examples(100))
@given(st.one_of(values, plain))
def test_fingerprint_is_the_digest_of_the_stdlib_encoding(value: Any) -> None:
    expected = outcome(lambda v: hashlib.sha256(stdlib(v).encode()).hexdigest(), value)
    assert outcome(fingerprint, value) == expected


@settings(max_examples=examples(200))
@given(st.one_of(texts, clean_texts))
def test_every_text_is_escaped_like_the_stdlib_does(text: str) -> None:
    assert outcome(canonical_json, {text: [text]}) == outcome(stdlib, {text: [text]})


def test_every_character_is_escaped_like_the_stdlib_does() -> None:
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert canonical_json(every) == stdlib(every)
    assert canonical_json(list(every)) == stdlib(list(every))


def nested(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [1, 253, 254, 255, 256, 600])
def test_deep_nesting_is_written_by_one_encoder_or_the_other(depth: int) -> None:
    # orjson stops at 254 levels: the stdlib encoder writes the rest.
    value = nested(depth)
    assert canonical_json(value) == stdlib(value)


def test_too_deep_or_circular_data_is_a_value_error_as_before() -> None:
    looped: dict[str, Any] = {"a": 1}
    looped["self"] = [looped]
    for value in (nested(100_000), looped):
        with pytest.raises(ValueError):
            canonical_json(value)
        with pytest.raises(ValueError):
            fingerprint(value)


def test_what_orjson_alone_would_write_differently_goes_to_the_stdlib() -> None:
    cases: list[Any] = [
        {"f": 1.0, "g": 1e16, "h": 1e-7, "nan": float("nan")},  # float digits, NaN as null
        {"c": Colour.GREEN, "l": Level.HIGH},  # enums by value; 2**70 beyond orjson
        {1: "a", 2.5: "b", False: "c"},  # keys the stdlib writes as strings
        {"s": "\ud800"},  # a lone surrogate
        {"big": 2**64, "small": -(2**63) - 1},
    ]
    for value in cases:
        assert canonical_json(value) == stdlib(value)
    for value in ({"e": Plain.ONE}, {"u": uuid.UUID(int=1)}, {"k": orjson.Fragment(b"1")}):
        with pytest.raises(TypeError):
            canonical_json(value)  # orjson would write these; json refuses them


json_texts = st.builds(
    lambda value, ascii: json.dumps(value, ensure_ascii=ascii),
    st.recursive(
        st.one_of(st.none(), st.booleans(), integers, texts, st.floats()),
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
        ),
        max_leaves=20,
    ),
    st.booleans(),
)
LITERALS = [
    "NaN",
    "[Infinity, -Infinity]",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "-0.0",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "1" + "0" * 400,
    '"\\ud800"',
    '{"a": 1, "a": 2.5}',
    ' {"a" : [1 , 2]} \n',
    "[1,]",
    "01",
    "\ufeff[]",
    '"\x1f"',
    "",
    "[" * 2000 + "]" * 2000,
    "[" * 1025 + "]" * 1025,
    "[" * 990 + "]" * 990,
]


@settings(max_examples=examples(150))
@given(st.one_of(json_texts, texts, st.sampled_from(LITERALS)))
def test_read_json_is_json_loads(text: str) -> None:
    assert outcome(read_json, text) == outcome(json.loads, text)


@pytest.mark.parametrize("text", LITERALS)
def test_read_json_on_what_orjson_reads_differently(text: str) -> None:
    assert outcome(read_json, text) == outcome(json.loads, text)

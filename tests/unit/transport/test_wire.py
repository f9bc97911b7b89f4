"""The HTTP wire format: keys in headers, and the status-code table both sides share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ordersaga.protocol.messages import ReplyStatus
from ordersaga.protocol.wire import CODE_OF_STATUS, STATUS_OF_CODE, decode_key, encode_key


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200))
def test_any_key_survives_the_header(key: str) -> None:
    header = encode_key(key)
    assert header.isascii() and header.isprintable()
    assert decode_key(header) == key


def test_plain_keys_travel_as_they_are() -> None:
    assert encode_key("order-7:reserve:action") == "order-7:reserve:action"
    assert encode_key("a/b c%:s:action") == "a%2Fb%20c%25:s:action"


def test_structured_field_strings_are_accepted() -> None:
    assert decode_key('"o-7:reserve:action"') == "o-7:reserve:action"
    assert decode_key(r'"a\"b\\c:s:action"') == 'a"b\\c:s:action'
    for bad in ('"a"b:s:action"', r'"a\n:s:action"', '"ä:s:action"'):
        with pytest.raises(ValueError):
            decode_key(bad)


@pytest.mark.parametrize("bad", ["%ff%fe:s:action", "ä:s:action"])
def test_unreadable_headers_are_value_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_key(bad)


def test_every_reply_status_has_one_code_and_reads_back() -> None:
    assert set(CODE_OF_STATUS) == set(ReplyStatus)
    assert len(set(CODE_OF_STATUS.values())) == len(ReplyStatus)
    for status, code in CODE_OF_STATUS.items():
        assert STATUS_OF_CODE[code] is status
    assert STATUS_OF_CODE[413] is ReplyStatus.INVALID
    assert all(400 <= code < 500 or code == 200 for code in STATUS_OF_CODE)

"""Properties of the parser: rendering round-trips, no exceptions, fast path = careful path."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from ordersaga.orders import jsonform, textform
from ordersaga.orders.model import Order
from ordersaga.orders.parse import Parsed, Rejected, Skip, Unreadable, parse_line, parse_text
from ordersaga.orders.rules import NoOrderId, RejectedOrder
from tests.hypothesis_profiles import examples

from .strategies import orders

RESULTS = (Skip, Parsed, Rejected, Unreadable)
FRAGMENTS = [
    "Order ",
    "order",
    "User ",
    " 1",
    "12",
    "-3",
    "0",
    ", ",
    ",",
    "Items:",
    " [",
    "]",
    "{",
    "}",
    "A",
    "B",
    "Payment:",
    " CreditCard",
    " 4111111111111111",
    " 12/30",
    "13/30",
    "Address:",
    " US",
    " ",
    "\t",
    "#",
    '"',
    ":",
    "\x00",
    "é",
    "\u00a0",
    "\ufeff",
    '{"order_id": ',
    "null",
]


@settings(max_examples=examples(300), deadline=None)
@given(orders)
def test_text_form_round_trips(order: Order) -> None:
    line = order.to_text()
    assert parse_line(line.encode() + b"\n") == Parsed(order)


@settings(max_examples=examples(300), deadline=None)
@given(orders)
def test_json_form_round_trips(order: Order) -> None:
    assert parse_line(order.to_json_line().encode()) == Parsed(order)
    assert parse_text(json.dumps(order.to_json())) == Parsed(order)


@settings(max_examples=examples(200), deadline=None)
@given(orders, st.randoms(use_true_random=False))
def test_fingerprint_ignores_form_and_item_sequence(order: Order, rnd: object) -> None:
    shuffled = list(order.items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    other = Order(order.order_id, order.user_id, tuple(shuffled), order.payment, order.address)
    text = parse_text(order.to_text())
    json_form = parse_text(other.to_json_line())
    assert isinstance(text, Parsed) and isinstance(json_form, Parsed)
    assert text.order.fingerprint() == json_form.order.fingerprint() == order.fingerprint()


@settings(max_examples=examples(500), deadline=None)
@given(st.binary(max_size=400))
def test_parse_line_never_raises_on_bytes(raw: bytes) -> None:
    assert isinstance(parse_line(raw), RESULTS)


@settings(max_examples=examples(500), deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join))
def test_parse_line_never_raises_on_near_orders(text: str) -> None:
    assert isinstance(parse_line(text.encode("utf-8", "surrogatepass")), RESULTS)
    assert isinstance(parse_text(text), RESULTS)


def _careful(read: object, line: str) -> object:
    try:
        return read(line)  # type: ignore[operator]
    except (NoOrderId, RejectedOrder) as exc:
        return type(exc)


@st.composite
def mutated_lines(draw: st.DrawFn) -> str:
    order = draw(orders)
    line = draw(st.sampled_from([order.to_text(), order.to_json_line()]))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        at = draw(st.integers(min_value=0, max_value=len(line)))
        cut = draw(st.integers(min_value=0, max_value=3))
        insert = draw(st.sampled_from(FRAGMENTS))
        line = line[:at] + insert + line[at + cut :]
    return line.strip()


@settings(max_examples=examples(500), deadline=None)
@given(mutated_lines())
def test_fast_paths_accept_only_what_the_careful_readers_accept(line: str) -> None:
    if not line or line[0] == "#":
        return
    if line[0] == "{":
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(data, dict):
            return
        fast = jsonform._fast(data)
        careful = _careful(jsonform._field_by_field, data)  # type: ignore[arg-type]
    else:
        fast = textform._fast(line)
        careful = _careful(textform._step_by_step, line)
    if fast is not None:
        assert fast == careful


def _stdlib_json_form(line: str) -> object:
    """What ``read_json_form`` gave when it read lines with the stdlib decoder itself."""
    try:
        data = json.JSONDecoder().decode(line)
    except json.JSONDecodeError as exc:
        return NoOrderId, f"invalid JSON: {exc.msg} at column {exc.colno}"
    except (ValueError, RecursionError) as exc:
        return NoOrderId, f"invalid JSON: {type(exc).__name__}"
    if type(data) is not dict:
        return NoOrderId, "a JSON line must be an object"
    order = jsonform._fast(data)
    return order if order is not None else _outcome(jsonform._field_by_field, data)


def _outcome(read: object, line: object) -> object:
    try:
        return read(line)  # type: ignore[operator]
    except (NoOrderId, RejectedOrder) as exc:
        return type(exc), str(exc)


#: JSON-form lines where orjson and the stdlib parser part ways (or nearly): each must read as
#: the stdlib decoder reads it.
ODD_JSON_LINES = [
    '{"order_id": "o1", "order_id": "o2", "user_id": 1, "items": [{"item_id": "A",'
    ' "quantity": 1}], "payment_info": {"method": "PayPal"}, "shipping_address":'
    ' {"country": "US"}}',  # duplicate keys: the last one counts
    '{"order_id": "o1", "user_id": 1.0, "items": []}',  # a float
    '{"order_id": "o1", "user_id": 1e400}',  # overflows to infinity
    '{"order_id": "o1", "user_id": NaN}',
    '{"order_id": "o1", "user_id": -Infinity}',
    '{"order_id": "o1", "user_id": 123456789012345678901234567890}',  # beyond 64 bits
    '{"order_id": "o1", "user_id": 18446744073709551616}',
    '{"order_id": "\\ud800", "user_id": 1}',  # an escaped lone surrogate
    '{"order_id": "o\ud800", "user_id": 1}',  # a lone surrogate itself
    '{"order_id": "o1"} trailing',
    '{"order_id": "o1",}',
    "{",
    "{}",
    '{"order_id": 12, "user_id": "7"}',
    '{"order_id": "o1", "x": ' + "[" * 1100 + "]" * 1100 + "}",  # deeper than orjson reads
    '{"order_id": "o1", "x": ' + "[" * 3000 + "]" * 3000 + "}",  # deeper than json reads
    '{"order_id": "o1", "x": ' + "[" * 600 + "1.5" + "]" * 600 + "}",
    '{"order_id": "o1", "user_id": 5, "items": [{"item_id": "A", "quantity": 2.0}]}',
]


def test_odd_json_lines_read_as_the_stdlib_decoder_reads_them() -> None:
    for line in ODD_JSON_LINES:
        assert _outcome(jsonform.read_json_form, line) == _stdlib_json_form(line), line


@settings(max_examples=examples(500), deadline=None)
@given(st.one_of(mutated_lines(), orders.map(lambda o: o.to_json_line())))
def test_json_form_reads_as_the_stdlib_decoder_reads_it(line: str) -> None:
    if line[:1] == "{":
        assert _outcome(jsonform.read_json_form, line) == _stdlib_json_form(line)

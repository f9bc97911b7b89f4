"""Parsing single lines: every input rule, both forms, and the byte-level edge cases."""

from __future__ import annotations

import hashlib
import json

import pytest

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo
from ordersaga.orders.parse import (
    MAX_LINE_BYTES,
    Parsed,
    ParseResult,
    Rejected,
    Skip,
    Unreadable,
    parse_line,
    parse_text,
)

SEED = (
    "Order 123, User 456, Items: [{A, 2}, {B, 1}], Payment: CreditCard, "
    "Address: 1 Main St, Springfield, US"
)
SEED_ORDER = Order(
    "123",
    456,
    (LineItem("A", 2), LineItem("B", 1)),
    PaymentInfo("CreditCard"),
    Address("1 Main St", "Springfield", "US"),
)


def json_line(**changes: object) -> str:
    data: dict[str, object] = {
        "order_id": "123",
        "user_id": 456,
        "items": [{"item_id": "A", "quantity": 2}, {"item_id": "B", "quantity": 1}],
        "payment_info": {"method": "CreditCard", "card_number": None, "expiry": None},
        "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"},
    }
    data.update(changes)
    return json.dumps(data)


def text_line(
    *,
    order: str = "Order 123",
    user: str = "User 456",
    items: str = "Items: [{A, 2}, {B, 1}]",
    payment: str = "Payment: CreditCard",
    address: str = "Address: 1 Main St, Springfield, US",
) -> str:
    return f"{order}, {user}, {items}, {payment}, {address}"


def parsed(line: str | bytes) -> Order:
    result = parse_line(line.encode() if isinstance(line, str) else line)
    assert isinstance(result, Parsed), result
    return result.order


def rejected(line: str) -> Rejected:
    result = parse_line(line.encode())
    assert isinstance(result, Rejected), result
    return result


def unreadable(line: str | bytes) -> Unreadable:
    result = parse_line(line.encode() if isinstance(line, str) else line)
    assert isinstance(result, Unreadable), result
    return result


# -- the two forms ------------------------------------------------------------------------------


def test_text_form_of_the_original_example() -> None:
    assert parsed(SEED) == SEED_ORDER


def test_json_form_of_the_same_order() -> None:
    assert parsed(json_line()) == SEED_ORDER


def test_text_and_json_forms_have_the_same_fingerprint() -> None:
    text = parsed(SEED)
    reordered = parsed(
        json_line(items=[{"item_id": "B", "quantity": 1}, {"item_id": "A", "quantity": 2}])
    )
    assert text != reordered  # items keep their listed sequence...
    assert text.fingerprint() == reordered.fingerprint()  # ...but the content is the same


def test_payment_with_card_and_expiry() -> None:
    order = parsed(text_line(payment="Payment: CreditCard 4111111111111111 12/30"))
    assert order.payment == PaymentInfo("CreditCard", "4111111111111111", "12/30")
    same = parsed(
        json_line(
            payment_info={
                "method": "CreditCard",
                "card_number": "4111111111111111",
                "expiry": "12/30",
            }
        )
    )
    assert same == order


@pytest.mark.parametrize(
    ("payment", "expected"),
    [
        ("Payment: PayPal", PaymentInfo("PayPal")),
        ("Payment: CreditCard 4111111111111111", PaymentInfo("CreditCard", "4111111111111111")),
        ("Payment: CreditCard 12/30", PaymentInfo("CreditCard", None, "12/30")),
        ("Payment:   X  123456789012   01/99 ", PaymentInfo("X", "123456789012", "01/99")),
    ],
)
def test_payment_parts_are_each_optional(payment: str, expected: PaymentInfo) -> None:
    assert parsed(text_line(payment=payment)).payment == expected


def test_a_card_failing_luhn_is_not_a_validation_error() -> None:
    order = parsed(text_line(payment="Payment: CreditCard 4111111111111112 01/20"))
    assert order.payment.card_number == "4111111111111112"  # payment will decline it


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("1 Main St, Springfield, US", Address("1 Main St", "Springfield", "US")),
        ("Apt 4, 1 Main St, Springfield, US", Address("Apt 4, 1 Main St", "Springfield", "US")),
        ("Springfield,US", Address("Springfield", "", "US")),
        ("US", Address("", "", "US")),
        ("  1 Main St ,  Springfield ,  us  ", Address("1 Main St", "Springfield", "us")),
        (", Springfield, US", Address("", "Springfield", "US")),
    ],
)
def test_address_parts(address: str, expected: Address) -> None:
    assert parsed(text_line(address=f"Address: {address}")).address == expected
    assert parsed(json_line(shipping_address=address)).address == expected


def test_json_address_object_may_omit_street_and_city() -> None:
    order = parsed(json_line(shipping_address={"country": " US ", "street": None}))
    assert order.address == Address("", "", "US")


def test_keywords_are_case_insensitive_and_whitespace_is_free() -> None:
    line = (
        "order 123,user 456,ITEMS:[{A,2},{ B ,1 }]  ,  payment :CreditCard,"
        "address:1 Main St,Springfield,US"
    )
    assert parsed(line) == SEED_ORDER
    assert (
        parsed(
            "\t ORDER   123 ,  USER   456 , Items : [ {A, 2} , {B, 1} ] , "
            "Payment: CreditCard , Address: 1 Main St, Springfield, US  "
        )
        == SEED_ORDER
    )


def test_same_item_listed_twice_is_one_line_with_the_summed_quantity() -> None:
    order = parsed(text_line(items="Items: [{A, 2}, {B, 1}, {A, 3}]"))
    assert order.items == (LineItem("A", 5), LineItem("B", 1))
    same = parsed(
        json_line(
            items=[
                {"item_id": "A", "quantity": 2},
                {"item_id": "B", "quantity": 1},
                {"item_id": "A", "quantity": 3},
            ]
        )
    )
    assert same == order


def test_json_order_id_may_be_an_integer_and_user_id_a_digit_string() -> None:
    order = parsed(json_line(order_id=123, user_id="456"))
    assert order == SEED_ORDER


def test_unknown_json_fields_are_ignored() -> None:
    plain = parsed(json_line())
    extra = parsed(json_line(note="gift", payment_info={"method": "CreditCard", "x": 1}))
    assert extra == plain
    assert extra.fingerprint() == plain.fingerprint()


# -- order ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order_id", ["a", "A-1_2.3", "ñ日本", "{x}", "'quoted'", "#7", "x" * 128, "id:with:colons"]
)
def test_order_ids_with_odd_printable_characters(order_id: str) -> None:
    assert parsed(text_line(order=f"Order {order_id}")).order_id == order_id
    assert parsed(json_line(order_id=order_id)).order_id == order_id


def test_order_id_of_129_characters_is_unreadable() -> None:
    unreadable(text_line(order="Order " + "x" * 129))
    unreadable(json_line(order_id="x" * 129))


@pytest.mark.parametrize("order_id", ["", "a b", "a,b", "a\tb", "a\x00b", "\u00a0"])
def test_json_order_id_breaking_the_rule_is_unreadable(order_id: str) -> None:
    unreadable(json_line(order_id=order_id))


@pytest.mark.parametrize("value", [None, True, 1.5, [], {}])
def test_json_order_id_of_the_wrong_type_is_unreadable(value: object) -> None:
    unreadable(json_line(order_id=value))


def test_missing_order_id_is_unreadable() -> None:
    data = json.loads(json_line())
    del data["order_id"]
    unreadable(json.dumps(data))


@pytest.mark.parametrize(
    "line",
    [
        "Order",
        "Order , User 1",
        "Order\x00x, User 1, Items: [{A, 1}], Payment: P, Address: US",
        "Order123, User 1",
        "hello world",
        "[1, 2, 3]",
        '"just a string"',
        "Ordering 5, User 1",
    ],
)
def test_text_without_a_readable_order_id_is_unreadable(line: str) -> None:
    unreadable(line)


# -- rejected lines: an id, and the precise reason ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason_part"),
    [
        (text_line(user="User abc"), "user id"),
        (text_line(user="User -1"), "user id"),
        (text_line(user="User 1.5"), "user id"),
        (text_line(user="User 99999999999999999999"), "user id"),
        (text_line(items="Items: [{A, 0}]"), "quantity"),
        (text_line(items="Items: [{A, -2}]"), "quantity"),
        (text_line(items="Items: [{A, 1.5}]"), "quantity"),
        (text_line(items="Items: [{A, two}]"), "quantity"),
        (text_line(items="Items: [{A, 1000000001}]"), "quantity"),
        (text_line(items="Items: [{A, 600000000}, {A, 600000000}]"), "total quantity"),
        (text_line(items="Items: []"), "at least one item"),
        (text_line(items="Items: [ ]"), "at least one item"),
        (text_line(items="Items: [{A, 1},]"), "items"),
        (text_line(items="Items: [{A, 1} {B, 1}]"), "items"),
        (text_line(items="Items: [{A}]"), "items"),
        (text_line(items="Items: [{A, 1, 2}]"), "items"),
        (text_line(items="Items: [{, 1}]"), "item id"),
        (text_line(items="Items: [{A\tB, 1}]"), "item id"),
        (text_line(items="Items: {A, 1}"), "Items"),
        (text_line(payment="Payment: "), "payment method is empty"),
        (text_line(payment="Payment: CreditCard 4111-1111-1111-1111"), "card number"),
        (text_line(payment="Payment: CreditCard 41111111111"), "card number"),
        (text_line(payment="Payment: CreditCard 41111111111111111111"), "card number"),
        (text_line(payment="Payment: CreditCard 4111111111111111 13/30"), "expiry"),
        (text_line(payment="Payment: CreditCard 4111111111111111 00/30"), "expiry"),
        (text_line(payment="Payment: CreditCard 4111111111111111 1/30"), "expiry"),
        (text_line(payment="Payment: CreditCard 12/30 4111111111111111"), "payment"),
        (text_line(payment="Payment: A B C D"), "payment"),
        (text_line(address="Address: "), "country"),
        (text_line(address="Address: 1 Main St, Springfield, "), "country"),
        (text_line(address="Address: 1 Main\x01 St, Springfield, US"), "street"),
        (text_line(address="Shipping: 1 Main St, Springfield, US"), "Address"),
        ("Order 123", "User"),
        ("Order 123, User 456", "Items"),
        ("Order 123 456, User 456", "User"),
        ("Order 123, User 456, Items: [{A, 1}], Address: US, Payment: P", "Payment"),
    ],
)
def test_text_line_with_an_id_but_a_broken_rule_is_rejected(line: str, reason_part: str) -> None:
    result = rejected(line)
    assert result.order_id == "123"
    assert reason_part.lower() in result.reason.lower(), result.reason
    assert "\n" not in result.reason


@pytest.mark.parametrize(
    ("changes", "reason_part"),
    [
        ({"user_id": -1}, "user id"),
        ({"user_id": True}, "user id"),
        ({"user_id": 4.0}, "user id"),
        ({"user_id": "45a"}, "user id"),
        ({"user_id": 2**63}, "user id"),
        ({"user_id": None}, "user id"),
        ({"items": []}, "at least one item"),
        ({"items": {"A": 1}}, "items must be a list"),
        ({"items": ["A"]}, "each item must be an object"),
        ({"items": [{"item_id": "A", "quantity": 0}]}, "quantity"),
        ({"items": [{"item_id": "A", "quantity": -1}]}, "quantity"),
        ({"items": [{"item_id": "A", "quantity": 1.0}]}, "quantity"),
        ({"items": [{"item_id": "A", "quantity": True}]}, "quantity"),
        ({"items": [{"item_id": "A", "quantity": "2"}]}, "quantity"),
        ({"items": [{"item_id": "A"}]}, "quantity"),
        ({"items": [{"item_id": "", "quantity": 1}]}, "item id"),
        ({"items": [{"item_id": "A,B", "quantity": 1}]}, "item id"),
        ({"items": [{"item_id": "{A}", "quantity": 1}]}, "item id"),
        ({"items": [{"item_id": 7, "quantity": 1}]}, "item_id"),
        ({"payment_info": "CreditCard"}, "payment_info"),
        ({"payment_info": {"method": ""}}, "payment method"),
        ({"payment_info": {"method": "Credit Card"}}, "payment method"),
        ({"payment_info": {}}, "method"),
        ({"payment_info": {"method": "C", "card_number": 4111111111111111}}, "card_number"),
        ({"payment_info": {"method": "C", "card_number": "4111 1111 1111 1111"}}, "card number"),
        ({"payment_info": {"method": "C", "expiry": "2030-12"}}, "expiry"),
        ({"shipping_address": {"street": "x", "city": "y"}}, "country"),
        ({"shipping_address": {"country": ""}}, "country"),
        ({"shipping_address": {"country": "US", "city": 5}}, "city"),
        ({"shipping_address": 5}, "shipping_address"),
        ({"shipping_address": ""}, "country"),
    ],
)
def test_json_line_with_an_id_but_a_broken_rule_is_rejected(
    changes: dict[str, object], reason_part: str
) -> None:
    result = rejected(json_line(**changes))
    assert result.order_id == "123"
    assert reason_part.lower() in result.reason.lower(), result.reason


@pytest.mark.parametrize("field", ["user_id", "items", "payment_info", "shipping_address"])
def test_json_missing_field_is_rejected(field: str) -> None:
    data = json.loads(json_line())
    del data[field]
    assert field in rejected(json.dumps(data)).reason


def test_rejected_fingerprint_is_the_digest_of_the_stripped_line() -> None:
    line = text_line(items="Items: [{A, 0}]")
    result = parse_line(f"  {line} \r\n".encode())
    assert isinstance(result, Rejected)
    assert result.fingerprint == hashlib.sha256(line.encode()).hexdigest()
    assert rejected(line).fingerprint == result.fingerprint  # same bad line, same content
    assert result.fingerprint != parsed(SEED).fingerprint()


def test_long_values_are_cut_in_reasons() -> None:
    result = rejected(text_line(user="User " + "x" * 5000))
    assert len(result.reason) < 200


# -- bytes: terminators, BOM, encoding, size -----------------------------------------------------


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\r"])
def test_line_terminators_are_dropped(ending: bytes) -> None:
    assert parsed(SEED.encode() + ending) == SEED_ORDER
    assert parsed(json_line().encode() + ending) == SEED_ORDER


def test_bom_at_the_start_of_a_line_is_dropped() -> None:
    assert parsed(b"\xef\xbb\xbf" + SEED.encode() + b"\r\n") == SEED_ORDER
    assert parsed(b"\xef\xbb\xbf" + json_line().encode()) == SEED_ORDER
    assert parse_text("\ufeff" + SEED) == Parsed(SEED_ORDER)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\n",
        b"\r\n",
        b"   \t \n",
        b"# comment\n",
        b"   # indented comment",
        b"#",
        b"\xef\xbb\xbf\n",
        b"\xef\xbb\xbf# x",
        b"# caf\xe9\n",
        "\u3000\u00a0".encode(),
    ],
)
def test_blank_and_comment_lines_are_skipped(raw: bytes) -> None:
    assert parse_line(raw) == Skip()


def test_a_hash_after_text_is_not_a_comment() -> None:
    assert parsed(SEED + " # not a comment").address.country == "US # not a comment"


@pytest.mark.parametrize(
    "raw",
    [
        b"Order 1, User 2, Items: [{A, 1}], Payment: P, Address: caf\xe9, US",
        b"\xff\xfe\x00O",
        b"\xc3",
    ],
)
def test_invalid_utf8_is_unreadable(raw: bytes) -> None:
    assert "UTF-8" in unreadable(raw).reason


@pytest.mark.parametrize(
    "line",
    [
        '{"order_id": "123", "user_id": 456',
        "{",
        "{}",
        '{"order_id": "123"} trailing',
        "{'order_id': '123'}",
        "{" * 100_000,
        '{"order_id": ' + "9" * 5000 + "}",
    ],
)
def test_invalid_or_truncated_json_is_unreadable(line: str) -> None:
    unreadable(line)


def test_truncated_json_form_at_every_length_is_unreadable() -> None:
    line = json_line()
    for end in range(1, len(line)):
        assert isinstance(parse_text(line[:end]), Unreadable), line[:end]


def test_line_of_exactly_one_mib_is_parsed_and_one_byte_more_is_unreadable() -> None:
    head = SEED.encode()
    padded = head + b" " * (MAX_LINE_BYTES - len(head))
    assert len(padded) == MAX_LINE_BYTES
    assert parsed(padded + b"\r\n") == SEED_ORDER
    assert "1 MiB" in unreadable(padded + b"x").reason
    assert "1 MiB" in unreadable(b"#" * (MAX_LINE_BYTES + 1)).reason


def test_parse_text_agrees_with_parse_line() -> None:
    for line in (SEED, json_line(), "garbage", text_line(items="Items: []"), "  ", "#x"):
        result: ParseResult = parse_text(line)
        assert result == parse_line(line.encode())

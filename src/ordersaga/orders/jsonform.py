"""The JSON form of an order line::

    {"order_id": "123", "user_id": 456, "items": [{"item_id": "A", "quantity": 2}],
     "payment_info": {"method": "CreditCard", "card_number": "4111111111111111", "expiry": "12/30"},
     "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"}}

Decisions the contract leaves open: ``order_id`` may be a string or an integer (read as its
decimal string); ``user_id`` an integer or a string of ASCII digits; a quantity must be a JSON
integer (``2``, not ``"2"`` nor ``2.0``). ``card_number`` and ``expiry`` may be absent or null;
``street`` and ``city`` too (read as ""); address parts are stripped of surrounding whitespace.
``shipping_address`` may also be a string, read like the text form's address. Unknown fields are
ignored (and so do not count towards the order's fingerprint).

Invalid or truncated JSON, a value that is not an object, and an object without a valid
``order_id`` have no readable order id. As in the text form, a fast path handles the common
valid object and the field-by-field reader runs only to find the reason for a rejection.
"""

from __future__ import annotations

import json
from typing import Any

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo
from ordersaga.orders.rules import (
    MAX_ITEMS,
    MAX_QUANTITY,
    MAX_USER_ID,
    InvalidInput,
    NoOrderId,
    RejectedOrder,
    check_address_part,
    check_card_number,
    check_country,
    check_expiry,
    check_item_id,
    check_method,
    check_quantity,
    check_user_id,
    is_valid_address_part,
    is_valid_card_number,
    is_valid_expiry,
    is_valid_item_id,
    is_valid_method,
    is_valid_order_id,
    show,
)
from ordersaga.orders.textform import address_from_text, merged_items
from ordersaga.protocol.messages import read_json

__all__ = ["read_json_form"]


def read_json_form(line: str) -> Order:
    """Read a stripped JSON-form line (it starts with ``{``); raise NoOrderId or RejectedOrder.

    The line is read by :func:`~ordersaga.protocol.messages.read_json`: exactly ``json.loads``'s
    value or exception (by orjson where that gives the same value; this form reads no floats
    and takes the last of duplicate keys, as both parsers do), and for a line that starts with
    ``{`` ``json.loads`` is the plain decoder's ``decode`` (its one extra check, a leading byte
    order mark, cannot apply).
    """
    try:
        data = read_json(line)
    except json.JSONDecodeError as exc:
        raise NoOrderId(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
        raise NoOrderId(f"invalid JSON: {type(exc).__name__}") from None
    if type(data) is not dict:
        raise NoOrderId("a JSON line must be an object")
    order = _fast(data)
    return order if order is not None else _field_by_field(data)


# -- the fast path: exact types only, None at the first doubt -----------------------------------


def _fast(data: dict[str, Any]) -> Order | None:
    order_id = data.get("order_id")
    user_id = data.get("user_id")
    if type(order_id) is not str or not is_valid_order_id(order_id):
        return None
    if type(user_id) is not int or not 0 <= user_id <= MAX_USER_ID:
        return None
    items = _fast_items(data.get("items"))
    payment = _fast_payment(data.get("payment_info"))
    address = _fast_address(data.get("shipping_address"))
    if items is None or payment is None or address is None:
        return None
    return Order(order_id, user_id, items, payment, address)


def _fast_items(value: object) -> tuple[LineItem, ...] | None:
    if type(value) is not list or not value or len(value) > MAX_ITEMS:
        return None
    totals: dict[str, int] = {}
    for entry in value:
        if type(entry) is not dict:
            return None
        item_id, quantity = entry.get("item_id"), entry.get("quantity")
        if type(item_id) is not str or type(quantity) is not int or quantity <= 0:
            return None
        if not is_valid_item_id(item_id):
            return None
        totals[item_id] = totals.get(item_id, 0) + quantity
    if not all(q <= MAX_QUANTITY for q in totals.values()):
        return None
    return tuple(LineItem(item_id, quantity) for item_id, quantity in totals.items())


def _fast_payment(value: object) -> PaymentInfo | None:
    if type(value) is not dict:
        return None
    method, card, expiry = value.get("method"), value.get("card_number"), value.get("expiry")
    if type(method) is not str or not is_valid_method(method):
        return None
    if card is not None and (type(card) is not str or not is_valid_card_number(card)):
        return None
    if expiry is not None and (type(expiry) is not str or not is_valid_expiry(expiry)):
        return None
    return PaymentInfo(method, card, expiry)


def _fast_address(value: object) -> Address | None:
    if type(value) is not dict:
        return None
    street, city, country = value.get("street"), value.get("city"), value.get("country")
    if type(street) is not str or type(city) is not str or type(country) is not str:
        return None
    street, city, country = street.strip(), city.strip(), country.strip()
    if not country or not all(map(is_valid_address_part, (street, city, country))):
        return None
    return Address(street, city, country)


# -- the field-by-field reader: finds the precise reason ----------------------------------------


def _field_by_field(data: dict[str, Any]) -> Order:
    raw_id = data.get("order_id")
    if type(raw_id) is int:
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not is_valid_order_id(raw_id):
        raise NoOrderId(f"no valid order_id in the JSON object: {show(repr(raw_id))}")
    try:
        return Order(
            order_id=raw_id,
            user_id=check_user_id(_field(data, "user_id", "")),
            items=_items(_field(data, "items", "")),
            payment=_payment(_field(data, "payment_info", "")),
            address=_address(_field(data, "shipping_address", "")),
        )
    except InvalidInput as exc:
        raise RejectedOrder(raw_id, str(exc)) from None


def _field(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise InvalidInput(f"missing field {where}{key}")
    return data[key]


def _string(data: dict[str, Any], key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str):
        raise InvalidInput(f"{where}{key} must be a string, got {_json_type(value)}")
    return value


def _optional_string(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"{where}{key} must be a string or null, got {_json_type(value)}")
    return value


def _items(value: Any) -> tuple[LineItem, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"items must be a list, got {_json_type(value)}")
    if not value:
        raise InvalidInput("an order needs at least one item")
    pairs: list[tuple[str, int]] = []
    for entry in value:
        if not isinstance(entry, dict):
            raise InvalidInput(f"each item must be an object, got {_json_type(entry)}")
        item_id = check_item_id(_string(entry, "item_id", "items[]."))
        quantity = _field(entry, "quantity", "items[].")
        if isinstance(quantity, str):  # digit strings are for the text form only
            raise InvalidInput(f"item {show(item_id)}: quantity must be a JSON integer")
        pairs.append((item_id, check_quantity(quantity, item_id)))
    return merged_items(pairs)


def _payment(value: Any) -> PaymentInfo:
    if not isinstance(value, dict):
        raise InvalidInput(f"payment_info must be an object, got {_json_type(value)}")
    where = "payment_info."
    method = check_method(_string(value, "method", where))
    card = _optional_string(value, "card_number", where)
    expiry = _optional_string(value, "expiry", where)
    return PaymentInfo(
        method,
        None if card is None else check_card_number(card),
        None if expiry is None else check_expiry(expiry),
    )


def _address(value: Any) -> Address:
    """An object (street and city may be absent or null) or a text-form address string."""
    if isinstance(value, str):
        return address_from_text(value)
    if not isinstance(value, dict):
        got = _json_type(value)
        raise InvalidInput(f"shipping_address must be an object or a string, got {got}")
    where = "shipping_address."
    street = (_optional_string(value, "street", where) or "").strip()
    city = (_optional_string(value, "city", where) or "").strip()
    return Address(
        check_address_part(street, "street"),
        check_address_part(city, "city"),
        check_country(_string(value, "country", where).strip()),
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"

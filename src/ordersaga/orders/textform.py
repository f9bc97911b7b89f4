"""The text form of an order line::

    Order 123, User 456, Items: [{A, 2}, {B, 1}], Payment: CreditCard 4111111111111111 12/30,
    Address: 1 Main St, Springfield, US

Keywords match case-insensitively, with free whitespace around the punctuation, in that fixed
sequence. The order id is the token after ``Order`` up to the first comma or whitespace.
``Payment:`` is a method followed by at most a card number (digits) and an expiry (the token with
a ``/``), in that sequence, each optional. ``Address:`` is the rest of the line split on commas:
the last part is the country, the one before it the city, and everything before the city the
street (joined with ", "); with two parts the city is empty, with one both are.

:func:`read_text_form` tries one whole-line regex first (the common, valid line); only when that
fails does the step-by-step reader run, to find the precise reason. The fast path accepts a subset
of what the step-by-step reader accepts, and builds the same order (a property test checks it).
"""

from __future__ import annotations

import re

from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo, merge_items
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

__all__ = ["address_from_text", "merged_items", "read_text_form"]

_PAYMENT_SHAPE = "'<method> [<card number>] [<MM/YY>]'"
_NOT_AN_ORDER = "not an order: expected 'Order <id>, User <id>, Items: ...' or a JSON object"

_FAST = re.compile(
    r"order\s+([^,\s]+)\s*,\s*user\s+([0-9]{1,19})\s*,\s*items\s*:\s*\[([^\[\]]*)\]"
    r"\s*,\s*payment\s*:\s*([^,]*?)\s*,\s*address\s*:(.*)",
    re.IGNORECASE | re.DOTALL,
)
_ENTRY = r"\s*\{[^{},]*,\s*[0-9]{1,10}\s*\}\s*"
_FAST_ITEMS = re.compile(f"{_ENTRY}(?:,{_ENTRY})*")
_FAST_PAIR = re.compile(r"\{\s*([^{},]*?)\s*,\s*([0-9]+)\s*\}")

_HEAD = re.compile(r"order\s+([^,\s]*)", re.IGNORECASE)
_USER = re.compile(r"\s*,\s*user\s+([^,]*?)\s*(?=,|$)", re.IGNORECASE)
_ITEMS = re.compile(r"\s*,\s*items\s*:\s*\[([^\[\]]*)\]", re.IGNORECASE)
_PAYMENT = re.compile(r"\s*,\s*payment\s*:\s*([^,]*?)\s*(?=,|$)", re.IGNORECASE)
_ADDRESS = re.compile(r"\s*,\s*address\s*:(.*)", re.IGNORECASE | re.DOTALL)
_ITEM = re.compile(r"\s*\{([^{}]*)\}\s*")


def read_text_form(line: str) -> Order:
    """Read a stripped text-form line; raise NoOrderId or RejectedOrder."""
    order = _fast(line)
    return order if order is not None else _step_by_step(line)


def address_from_text(text: str) -> Address:
    """Read ``street, city, country`` (see the module docstring); raise InvalidInput."""
    parts = [part.strip() for part in text.split(",")]
    country = check_country(parts[-1])
    if len(parts) == 1:
        street = city = ""
    elif len(parts) == 2:
        street, city = parts[0], ""
    else:
        street, city = ", ".join(parts[:-2]), parts[-2]
    return Address(check_address_part(street, "street"), check_address_part(city, "city"), country)


# -- the fast path: one regex, no exceptions, None at the first doubt --------------------------


def _fast(line: str) -> Order | None:
    match = _FAST.fullmatch(line)
    if match is None:
        return None
    order_id, user, body, payment_text, address_text = match.groups()
    user_id = int(user)
    if not is_valid_order_id(order_id) or user_id > MAX_USER_ID:
        return None
    items = _fast_items(body)
    payment = _fast_payment(payment_text)
    address = _fast_address(address_text)
    if items is None or payment is None or address is None:
        return None
    return Order(order_id, user_id, items, payment, address)


def _fast_items(body: str) -> tuple[LineItem, ...] | None:
    if _FAST_ITEMS.fullmatch(body) is None:
        return None
    totals: dict[str, int] = {}
    for item_id, digits in _FAST_PAIR.findall(body):
        quantity = int(digits)
        if quantity == 0 or not is_valid_item_id(item_id):
            return None
        totals[item_id] = totals.get(item_id, 0) + quantity
    if len(totals) > MAX_ITEMS or not all(0 < q <= MAX_QUANTITY for q in totals.values()):
        return None
    return tuple(LineItem(item_id, quantity) for item_id, quantity in totals.items())


def _fast_payment(text: str) -> PaymentInfo | None:
    tokens = text.split()
    if not tokens or not is_valid_method(tokens[0]):
        return None
    if len(tokens) == 1:
        return PaymentInfo(tokens[0])
    card: str | None = None
    expiry: str | None = None
    if len(tokens) == 2:
        if "/" in tokens[1]:
            expiry = tokens[1]
        else:
            card = tokens[1]
    elif len(tokens) == 3:
        card, expiry = tokens[1], tokens[2]
    else:
        return None
    if (card is not None and not is_valid_card_number(card)) or (
        expiry is not None and not is_valid_expiry(expiry)
    ):
        return None
    return PaymentInfo(tokens[0], card, expiry)


def _fast_address(text: str) -> Address | None:
    parts = text.split(",")
    if len(parts) != 3:
        return None
    street, city, country = parts[0].strip(), parts[1].strip(), parts[2].strip()
    if not country or not all(map(is_valid_address_part, (street, city, country))):
        return None
    return Address(street, city, country)


# -- the step-by-step reader: finds the precise reason -------------------------------------------


def _step_by_step(line: str) -> Order:
    head = _HEAD.match(line)
    if head is None:
        raise NoOrderId(_NOT_AN_ORDER)
    order_id = head.group(1)
    if not is_valid_order_id(order_id):
        raise NoOrderId(f"no valid order id after 'Order': {show(order_id)}")
    try:
        return _body(order_id, line, head.end())
    except InvalidInput as exc:
        raise RejectedOrder(order_id, str(exc)) from None


def _body(order_id: str, line: str, pos: int) -> Order:
    user = _expect(_USER, line, pos, "', User <user id>' after the order id")
    items = _expect(_ITEMS, line, user.end(), "', Items: [{<item id>, <quantity>}, ...]'")
    payment = _expect(_PAYMENT, line, items.end(), "', Payment: <method>' after the items")
    address = _expect(_ADDRESS, line, payment.end(), "', Address: ...' after the payment")
    return Order(
        order_id=order_id,
        user_id=check_user_id(user.group(1)),
        items=_items(items.group(1)),
        payment=_payment(payment.group(1)),
        address=address_from_text(address.group(1)),
    )


def _expect(pattern: re.Pattern[str], line: str, pos: int, what: str) -> re.Match[str]:
    match = pattern.match(line, pos)
    if match is None:
        raise InvalidInput(f"expected {what} {_at(line[pos:], 'the end of the line')}")
    return match


def _items(body: str) -> tuple[LineItem, ...]:
    pairs: list[tuple[str, int]] = []
    pos, end = 0, len(body)
    if not body.strip():
        raise InvalidInput("an order needs at least one item")
    while True:
        match = _ITEM.match(body, pos)
        if match is None:
            where = _at(body[pos:], "the end of the list")
            raise InvalidInput(f"items: expected '{{<item id>, <quantity>}}' {where}")
        fields = match.group(1).split(",")
        if len(fields) != 2:
            got = show(match.group(0).strip())
            raise InvalidInput(f"items: expected '{{<item id>, <quantity>}}', got {got}")
        item_id = check_item_id(fields[0].strip())
        pairs.append((item_id, check_quantity(fields[1].strip(), item_id)))
        pos = match.end()
        if pos == end:
            return merged_items(pairs)
        if body[pos] != ",":
            raise InvalidInput(f"items: expected ',' between items {_at(body[pos:], '')}")
        pos += 1


def _payment(text: str) -> PaymentInfo:
    tokens = text.split()
    if not tokens:
        raise InvalidInput("payment method is empty")
    if len(tokens) > 3:
        raise InvalidInput(f"payment: expected {_PAYMENT_SHAPE}, got {show(text)}")
    method, card, expiry = check_method(tokens[0]), None, None
    for token in tokens[1:]:
        if "/" in token and expiry is None:
            expiry = check_expiry(token)
        elif card is None and expiry is None:
            card = check_card_number(token)
        else:
            raise InvalidInput(f"payment: expected {_PAYMENT_SHAPE}, got {show(text)}")
    return PaymentInfo(method, card, expiry)


def merged_items(pairs: list[tuple[str, int]]) -> tuple[LineItem, ...]:
    """Merge repeated items; raise InvalidInput over MAX_ITEMS items or MAX_QUANTITY units."""
    items = merge_items(pairs)
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"an order may list at most {MAX_ITEMS} distinct items")
    for item in items:
        if item.quantity > MAX_QUANTITY:
            raise InvalidInput(f"item {show(item.item_id)}: total quantity exceeds {MAX_QUANTITY}")
    return items


def _at(rest: str, end: str) -> str:
    return f"at {show(rest)}" if rest.strip() else f"at {end}"

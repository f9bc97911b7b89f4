"""The input rules for the fields of an order, shared by the stream parser and the world file.

Each ``check_*`` function returns the (possibly normalised) value or raises :class:`InvalidInput`
whose message is a short, human reason naming the offending value. The checks are syntactic only:
whether a card passes the Luhn check, an expiry lies in the past, a method is accepted or a country
is served are *business* rules of the services, never decided here.

Rules (CONTRACT section 2, plus the limits this module fixes):

- order id: 1-128 printable characters, no whitespace, no comma;
- user id: a non-negative integer below 2**63 (stored as a 64-bit integer);
- item id: 1-128 printable characters, no comma, brace or bracket, no surrounding whitespace;
- quantity: a positive integer up to 10**9 (after summing repeated items);
- payment method: 1-64 printable characters without whitespace or comma (one token of the text
  form, so every valid order can be written in both forms);
- card number: 12-19 ASCII digits; expiry: ``MM/YY`` with MM from 01 to 12;
- address parts: printable, at most 256 characters; the country must not be empty.
"""

from __future__ import annotations

import re

from ordersaga.orders.cards import mask_card_field

__all__ = [
    "MAX_ADDRESS_PART_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_ITEMS",
    "MAX_METHOD_LENGTH",
    "MAX_QUANTITY",
    "MAX_USER_ID",
    "InvalidInput",
    "NoOrderId",
    "RejectedOrder",
    "check_address_part",
    "check_card_number",
    "check_country",
    "check_expiry",
    "check_item_id",
    "check_method",
    "check_order_id",
    "check_quantity",
    "check_user_id",
    "is_valid_address_part",
    "is_valid_card_number",
    "is_valid_expiry",
    "is_valid_item_id",
    "is_valid_method",
    "is_valid_order_id",
    "show",
]

MAX_ID_LENGTH = 128
MAX_METHOD_LENGTH = 64
MAX_ADDRESS_PART_LENGTH = 256
MAX_USER_ID = 2**63 - 1
MAX_QUANTITY = 10**9
MAX_ITEMS = 1000  # distinct items per order

_CARD_RE = re.compile(r"[0-9]{12,19}")
_EXPIRY_RE = re.compile(r"(?:0[1-9]|1[0-2])/[0-9]{2}")
_DIGITS_RE = re.compile(r"[0-9]+")
_ITEM_FORBIDDEN_RE = re.compile(r"[,{}\[\]]")


class InvalidInput(ValueError):
    """A field breaks an input rule; ``str(exc)`` is the reason, fit for a user."""


class NoOrderId(ValueError):
    """No order id can be read from a line (it gets no outcome); ``str(exc)`` says why."""


class RejectedOrder(ValueError):
    """A line names ``order_id`` but breaks another input rule, said by ``reason``."""

    def __init__(self, order_id: str, reason: str) -> None:
        super().__init__(reason)
        self.order_id = order_id
        self.reason = reason


def is_valid_order_id(text: str) -> bool:
    """1-128 printable characters without whitespace or comma."""
    return (
        0 < len(text) <= MAX_ID_LENGTH
        and text.isprintable()
        and " " not in text  # isprintable() already excludes every other whitespace
        and "," not in text
    )


def is_valid_item_id(text: str) -> bool:
    """1-128 printable characters without comma, brace or bracket, nor surrounding spaces."""
    return (
        0 < len(text) <= MAX_ID_LENGTH
        and text.isprintable()
        and text[0] != " "
        and text[-1] != " "
        and _ITEM_FORBIDDEN_RE.search(text) is None
    )


def is_valid_method(text: str) -> bool:
    """1-64 printable characters without whitespace or comma."""
    return (
        0 < len(text) <= MAX_METHOD_LENGTH
        and text.isprintable()
        and " " not in text
        and "," not in text
    )


def is_valid_address_part(text: str) -> bool:
    """Printable (spaces allowed), at most 256 characters; may be empty."""
    return len(text) <= MAX_ADDRESS_PART_LENGTH and text.isprintable()


def is_valid_card_number(text: str) -> bool:
    return _CARD_RE.fullmatch(text) is not None


def is_valid_expiry(text: str) -> bool:
    return _EXPIRY_RE.fullmatch(text) is not None


def check_order_id(text: str) -> str:
    if not is_valid_order_id(text):
        raise InvalidInput(
            f"order id must be 1-{MAX_ID_LENGTH} printable characters without whitespace "
            f"or commas, got {show(text)}"
        )
    return text


def check_user_id(value: object) -> int:
    """An int (not a bool) or a string of ASCII digits; 0 <= user id < 2**63."""
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value) and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_USER_ID:
        shown = show(value) if isinstance(value, str) else repr(value)
        raise InvalidInput(f"user id must be a non-negative integer below 2**63, got {shown}")
    return value


def check_item_id(text: str) -> str:
    if not is_valid_item_id(text):
        raise InvalidInput(
            f"item id must be 1-{MAX_ID_LENGTH} printable characters without commas, braces, "
            f"brackets or surrounding spaces, got {show(text)}"
        )
    return text


def check_quantity(value: object, item_id: str) -> int:
    """An int (not a bool) or, from the text form, a string of ASCII digits; 1..10**9."""
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value) and len(value) <= 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_QUANTITY:
        shown = show(value) if isinstance(value, str) else repr(value)
        raise InvalidInput(
            f"item {show(item_id)}: quantity must be a positive integer up to {MAX_QUANTITY}, "
            f"got {shown}"
        )
    return value


def check_method(text: str) -> str:
    if not is_valid_method(text):
        raise InvalidInput(
            f"payment method must be 1-{MAX_METHOD_LENGTH} printable characters without "
            f"whitespace or commas, got {show(text)}"
        )
    return text


def check_card_number(text: str) -> str:
    """12-19 ASCII digits. The Luhn check is the payment service's business, not ours.

    The reason shows the value masked to its last four digits, like every card shown to people.
    """
    if not is_valid_card_number(text):
        shown = show(mask_card_field(text))
        raise InvalidInput(f"card number must be 12-19 digits, got {len(text)} characters: {shown}")
    return text


def check_expiry(text: str) -> str:
    """``MM/YY`` with a month 01-12. Whether it is past is the payment service's business."""
    if not is_valid_expiry(text):
        raise InvalidInput(f"card expiry must be MM/YY with a month 01-12, got {show(text)}")
    return text


def check_address_part(text: str, name: str) -> str:
    if not is_valid_address_part(text):
        raise InvalidInput(
            f"address {name} must be printable and at most {MAX_ADDRESS_PART_LENGTH} "
            f"characters, got {show(text)}"
        )
    return text


def check_country(text: str) -> str:
    if not text:
        raise InvalidInput("address country (its last comma-separated part) is empty")
    return check_address_part(text, "country")


def show(text: str, limit: int = 40) -> str:
    """A short repr of user input for a reason line (long input is cut)."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)

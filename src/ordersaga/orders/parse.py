"""Parsing one line of the order stream (CONTRACT section 2) into one of four results.

:func:`parse_line` never raises; it returns exactly one of::

    Skip        a blank line, or one whose first non-blank character is '#'
    Parsed      a valid order (items already merged: one line per item, quantities summed,
                in order of first appearance)
    Rejected    the line names a readable order id but breaks another input rule: the order
                gets "Order <id> failed" without any service call. ``fingerprint`` is the SHA-256
                of the stripped line, so resubmitting the same bad line is a same-content
                resubmission, while a valid order with that id is a different content
    Unreadable  no order id can be read: garbage, invalid or truncated JSON, invalid UTF-8,
                a line over MAX_LINE_BYTES, an id token that breaks the order id rule

Reasons never hold a full card number: they go through :func:`ordersaga.orders.cards.mask_card`.

A line whose first non-blank character is ``{`` is the JSON form
(:mod:`ordersaga.orders.jsonform`); any other line is the text form
(:mod:`ordersaga.orders.textform`). Both document the choices the contract leaves open; the
field rules themselves are in :mod:`ordersaga.orders.rules`.

Bytes: one trailing CRLF, LF or CR is dropped, then a UTF-8 byte order mark at the start of the
line (any line, not just the first). A line longer than MAX_LINE_BYTES is Unreadable before
anything else is looked at; a blank or comment line is skipped even when it is not valid UTF-8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ordersaga.orders.cards import mask_card
from ordersaga.orders.jsonform import read_json_form
from ordersaga.orders.model import Order
from ordersaga.orders.rules import NoOrderId, RejectedOrder
from ordersaga.orders.textform import address_from_text, read_text_form
from ordersaga.slots import slot_setter

__all__ = [
    "MAX_LINE_BYTES",
    "SKIP",
    "ParseResult",
    "Parsed",
    "Rejected",
    "Skip",
    "Unreadable",
    "address_from_text",
    "parse_line",
    "parse_text",
]

MAX_LINE_BYTES = 1 << 20
"""A line longer than this (not counting its terminator) is Unreadable without being parsed.

A reader that does not want to buffer an endless line may pass any prefix of it that is longer
than MAX_LINE_BYTES and skip the rest."""


@dataclass(frozen=True, slots=True)
class Skip:
    """A blank or comment line: no outcome at all."""


@dataclass(frozen=True, slots=True, init=False)
class Parsed:
    """A valid order."""

    order: Order

    def __init__(self, order: Order) -> None:
        _set_order(self, order)  # through its slot: one per order line (see ordersaga.slots)


_set_order = slot_setter(Parsed, "order")


@dataclass(frozen=True, slots=True)
class Rejected:
    """An order id and why the line is not a valid order; it gets ``Order <id> failed``."""

    order_id: str
    reason: str
    fingerprint: str  # SHA-256 hex of the stripped line (UTF-8)


@dataclass(frozen=True, slots=True)
class Unreadable:
    """No order id could be read; the line gets no outcome, only a report on stderr."""

    reason: str


ParseResult = Skip | Parsed | Rejected | Unreadable

SKIP = Skip()
_BOM = b"\xef\xbb\xbf"


def parse_line(raw: bytes) -> ParseResult:
    """Parse one raw line (with or without its terminator); never raises."""
    if raw.endswith(b"\n"):
        raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    elif raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE_BYTES:
        return Unreadable(f"line is longer than 1 MiB ({len(raw)} bytes)")
    if raw.startswith(_BOM):
        raw = raw[3:]
    head = raw.lstrip()
    if not head or head.startswith(b"#"):
        return SKIP
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Unreadable(f"invalid UTF-8 at byte {exc.start + 1} of the line")
    return parse_text(text)


def parse_text(line: str) -> ParseResult:
    """Parse one decoded line (without its terminator); a leading U+FEFF is dropped."""
    line = line.removeprefix("\ufeff").strip()
    if not line or line[0] == "#":
        return SKIP
    try:
        return Parsed(read_json_form(line) if line[0] == "{" else read_text_form(line))
    except NoOrderId as exc:
        return Unreadable(mask_card(str(exc)))
    except RejectedOrder as exc:
        # A reason may quote the line: a card number in it (malformed, or in another field)
        # is masked before it can reach a person or the saga log.
        digest = hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()
        return Rejected(exc.order_id, mask_card(exc.reason), digest)

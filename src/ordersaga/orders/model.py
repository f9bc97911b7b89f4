"""The order: inert, frozen values and their canonical JSON form.

An :class:`Order` built by :func:`ordersaga.orders.parse.parse_line` obeys every input rule of
:mod:`ordersaga.orders.rules`; the dataclasses themselves do not validate (tests and the workload
generator build deliberately broken orders to render them).

The canonical JSON form (:meth:`Order.to_json`) is the saga's input and is the same shape as the
stream's JSON form::

    {"order_id": "123", "user_id": 456,
     "items": [{"item_id": "A", "quantity": 2}, {"item_id": "B", "quantity": 1}],
     "payment_info": {"method": "CreditCard", "card_number": null, "expiry": null},
     "shipping_address": {"street": "1 Main St", "city": "Springfield", "country": "US"}}

:meth:`Order.fingerprint` identifies an order's *content* for idempotent resubmission: it is
computed on the normalised order (repeated items summed, items sorted by id), so the text and the
JSON form of one order, or one order with its items listed in another sequence, agree.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ordersaga.protocol.messages import fingerprint as json_fingerprint
from ordersaga.slots import slot_setter

__all__ = ["Address", "LineItem", "Order", "PaymentInfo", "merge_items"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, init=False)
class LineItem:
    item_id: str
    quantity: int

    def __init__(self, item_id: str, quantity: int) -> None:
        _set_item_id(self, item_id)
        _set_quantity(self, quantity)

    def to_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "quantity": self.quantity}


@dataclass(frozen=True, slots=True, init=False)
class Address:
    street: str
    city: str
    country: str

    def __init__(self, street: str, city: str, country: str) -> None:
        _set_street(self, street)
        _set_city(self, city)
        _set_country(self, country)

    def to_json(self) -> dict[str, Any]:
        return {"street": self.street, "city": self.city, "country": self.country}

    def to_text(self) -> str:
        """The text form's address: ``street, city, country`` with empty leading parts left out.

        It reads back to the same address as long as street and city contain no commas.
        """
        if self.city:
            return f"{self.street}, {self.city}, {self.country}"
        if self.street:
            return f"{self.street}, {self.country}"
        return self.country


@dataclass(frozen=True, slots=True, init=False)
class PaymentInfo:
    method: str
    card_number: str | None = None
    expiry: str | None = None

    def __init__(
        self, method: str, card_number: str | None = None, expiry: str | None = None
    ) -> None:
        _set_method(self, method)
        _set_card_number(self, card_number)
        _set_expiry(self, expiry)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "card_number": self.card_number, "expiry": self.expiry}

    def to_text(self) -> str:
        return " ".join(p for p in (self.method, self.card_number, self.expiry) if p is not None)


@dataclass(frozen=True, slots=True, init=False)
class Order:
    order_id: str
    user_id: int
    items: tuple[LineItem, ...]
    payment: PaymentInfo
    address: Address

    def __init__(
        self,
        order_id: str,
        user_id: int,
        items: tuple[LineItem, ...],
        payment: PaymentInfo,
        address: Address,
    ) -> None:
        _set_order_id(self, order_id)
        _set_user_id(self, user_id)
        _set_items(self, items)
        _set_payment(self, payment)
        _set_address(self, address)

    def normalized(self) -> Order:
        """The same order with repeated items summed and items sorted by item id."""
        ids = [item.item_id for item in self.items]
        if all(a < b for a, b in itertools.pairwise(ids)):  # already sorted, no repeats
            return self
        merged = merge_items((i.item_id, i.quantity) for i in self.items)
        items = tuple(sorted(merged, key=lambda item: item.item_id))
        if items == self.items:
            return self
        return Order(self.order_id, self.user_id, items, self.payment, self.address)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the canonical JSON of the normalised order."""
        return json_fingerprint(self.normalized().to_json())

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON form (a plain dict; see the module docstring)."""
        return {
            "order_id": self.order_id,
            "user_id": self.user_id,
            "items": [item.to_json() for item in self.items],
            "payment_info": self.payment.to_json(),
            "shipping_address": self.address.to_json(),
        }

    def to_json_line(self) -> str:
        """The stream's JSON form: one line, null card fields left out."""
        data = self.to_json()
        data["payment_info"] = {k: v for k, v in data["payment_info"].items() if v is not None}
        return json.dumps(data, ensure_ascii=False)

    def to_text(self) -> str:
        """The stream's text form (``Order 123, User 456, Items: [{A, 2}], ...``)."""
        items = ", ".join(f"{{{i.item_id}, {i.quantity}}}" for i in self.items)
        return (
            f"Order {self.order_id}, User {self.user_id}, Items: [{items}], "
            f"Payment: {self.payment.to_text()}, Address: {self.address.to_text()}"
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Order:
        """Read the canonical JSON form back (trusted input, such as the saga log).

        Checks the shape and the types, not the input rules; raises ValueError when the
        shape is wrong. Untrusted lines go through :func:`ordersaga.orders.parse.parse_line`.
        """
        try:
            payment = data["payment_info"]
            address = data["shipping_address"]
            return cls(
                order_id=_typed(data["order_id"], str),
                user_id=_typed(data["user_id"], int),
                items=tuple(
                    LineItem(_typed(i["item_id"], str), _typed(i["quantity"], int))
                    for i in data["items"]
                ),
                payment=PaymentInfo(
                    _typed(payment["method"], str),
                    _optional_str(payment.get("card_number")),
                    _optional_str(payment.get("expiry")),
                ),
                address=Address(
                    _typed(address["street"], str),
                    _typed(address["city"], str),
                    _typed(address["country"], str),
                ),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an order in canonical JSON form: {exc!r}") from None


# Each class's own __init__ stores its fields through their slots (see ordersaga.slots): the
# parser builds several of these values per order line.
_set_item_id = slot_setter(LineItem, "item_id")
_set_quantity = slot_setter(LineItem, "quantity")
_set_street = slot_setter(Address, "street")
_set_city = slot_setter(Address, "city")
_set_country = slot_setter(Address, "country")
_set_method = slot_setter(PaymentInfo, "method")
_set_card_number = slot_setter(PaymentInfo, "card_number")
_set_expiry = slot_setter(PaymentInfo, "expiry")
_set_order_id = slot_setter(Order, "order_id")
_set_user_id = slot_setter(Order, "user_id")
_set_items = slot_setter(Order, "items")
_set_payment = slot_setter(Order, "payment")
_set_address = slot_setter(Order, "address")


def merge_items(pairs: Iterable[tuple[str, int]]) -> tuple[LineItem, ...]:
    """One line per item id, quantities summed, in order of first appearance."""
    totals: dict[str, int] = {}
    for item_id, quantity in pairs:
        totals[item_id] = totals.get(item_id, 0) + quantity
    return tuple(LineItem(item_id, quantity) for item_id, quantity in totals.items())


def _typed(value: object, kind: type[T]) -> T:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _typed(value, str)

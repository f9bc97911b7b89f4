"""A sequential reference model of the business rules (CONTRACT section 4), for tests and workloads.

It runs orders one after another against a world, with no network, no saga and no database, and
says what the real system must decide for the same orders processed in the same sequence (at
``--concurrency 1``, on a new data dir). Parsing, resubmissions and faults are outside its scope.

Rules, in saga order (the first refusal decides)::

    reserve   every item is known and its available stock >= quantity
    ship      country (upper-cased) is served; total weight <= max_weight_kg
    pay       method accepted; a given card number passes Luhn; a given expiry MM/YY is not
              past (valid through the end of month MM of year 20YY, compared with ``today``);
              spent + amount <= credit limit, where amount = sum(price * quantity) + shipping
              cost and shipping cost = base_cost + cost_per_kg * weight, rounded half-up
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from ordersaga.money import round_half_up_cents
from ordersaga.orders.cards import luhn_valid
from ordersaga.orders.model import Order
from ordersaga.orders.world import World

__all__ = ["ReferenceModel", "Verdict", "expiry_is_past"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one order: ``step`` and ``reason`` say which step refused, if any."""

    confirmed: bool
    step: str | None = None
    reason: str | None = None
    amount_cents: int = 0


def expiry_is_past(expiry: str, today: date) -> bool:
    """``MM/YY`` is past once its month (of year 20YY) has ended before ``today``'s month."""
    month, year = int(expiry[:2]), 2000 + int(expiry[3:])
    return (year, month) < (today.year, today.month)


class ReferenceModel:
    """Remaining stock and per-user spending after the orders applied so far."""

    def __init__(self, world: World, *, today: date) -> None:
        self.world = world
        self.today = today
        self.stock = {item_id: spec.stock for item_id, spec in world.inventory.items.items()}
        self.spent: dict[int, int] = {}

    def credit_limit_cents(self, user_id: int) -> int:
        payment = self.world.payment
        return payment.credit_limits_cents.get(user_id, payment.default_credit_limit_cents)

    def room_cents(self, user_id: int) -> int:
        """How much more the user may be charged."""
        return self.credit_limit_cents(user_id) - self.spent.get(user_id, 0)

    def weight_kg(self, order: Order) -> Decimal:
        items = self.world.inventory.items
        return sum(
            (items[i.item_id].weight_kg * i.quantity for i in order.items if i.item_id in items),
            Decimal(0),
        )

    def shipping_cents(self, weight_kg: Decimal) -> int:
        shipping = self.world.shipping
        per_kg = round_half_up_cents(Decimal(shipping.cost_per_kg_cents) * weight_kg / 100)
        return shipping.base_cost_cents + per_kg

    def amount_cents(self, order: Order) -> int:
        """What payment would authorize: goods plus shipping (known items only)."""
        items = self.world.inventory.items
        goods = sum(
            items[i.item_id].price_cents * i.quantity for i in order.items if i.item_id in items
        )
        return goods + self.shipping_cents(self.weight_kg(order))

    def check(self, order: Order) -> Verdict:
        """The decision for ``order`` now, without applying it."""
        return self._decide(order.normalized())

    def apply(self, order: Order) -> Verdict:
        """Decide ``order`` and, when it is confirmed, take its stock and charge its user."""
        order = order.normalized()  # an item listed twice is one line with the summed quantity
        verdict = self._decide(order)
        if verdict.confirmed:
            for item in order.items:
                self.stock[item.item_id] -= item.quantity
            self.spent[order.user_id] = self.spent.get(order.user_id, 0) + verdict.amount_cents
        return verdict

    def _decide(self, order: Order) -> Verdict:
        refusal = self._reserve(order)
        if refusal is not None:
            return Verdict(False, "reserve", refusal)
        weight = self.weight_kg(order)
        refusal = self._ship(order, weight)
        if refusal is not None:
            return Verdict(False, "ship", refusal)
        items = self.world.inventory.items
        goods = sum(items[i.item_id].price_cents * i.quantity for i in order.items)
        amount = goods + self.shipping_cents(weight)
        refusal = self._pay(order, amount)
        if refusal is not None:
            return Verdict(False, "pay", refusal)
        return Verdict(True, amount_cents=amount)

    def _reserve(self, order: Order) -> str | None:
        for item in order.items:
            available = self.stock.get(item.item_id)
            if available is None:
                return f"unknown item {item.item_id!r}"
            if available < item.quantity:
                return f"item {item.item_id!r}: {available} available"
        return None

    def _ship(self, order: Order, weight: Decimal) -> str | None:
        shipping = self.world.shipping
        if order.address.country.upper() not in shipping.countries:
            return f"country {order.address.country!r} not served"
        if weight > shipping.max_weight_kg:
            return f"weight {weight} kg over {shipping.max_weight_kg} kg"
        return None

    def _pay(self, order: Order, amount_cents: int) -> str | None:
        payment = order.payment
        if payment.method not in self.world.payment.methods:
            return f"method {payment.method!r} not accepted"
        if payment.card_number is not None and not luhn_valid(payment.card_number):
            return "card number fails the Luhn check"
        if payment.expiry is not None and expiry_is_past(payment.expiry, self.today):
            return f"card expired {payment.expiry}"
        if amount_cents > self.room_cents(order.user_id):
            return "credit limit exceeded"
        return None

"""The machinery behind :mod:`ordersaga.proving.generate`: line kinds, the mix, the generator.

:class:`LineGenerator` builds each line from an intended :class:`Kind`, then asks a sequential
:class:`ordersaga.proving.reference.ReferenceModel` what the outcome must be, and applies the order
to that model when it is confirmed, so later lines see the stock and credit it used up. A kind that
the world cannot produce (no item heavy enough and in stock to exceed the weight limit, say) is
replaced by an order meant to be confirmed.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from decimal import Decimal

from ordersaga.orders.cards import make_card_number
from ordersaga.orders.model import Address, LineItem, Order, PaymentInfo
from ordersaga.orders.rules import MAX_QUANTITY
from ordersaga.orders.world import World
from ordersaga.proving.reference import ReferenceModel

__all__ = ["REFERENCE_DATE", "GeneratedLine", "Kind", "LineGenerator", "Mix"]

REFERENCE_DATE = date(2026, 1, 1)  # any date in 2021..2035 gives the same expectations
_UNSERVED = ("BR", "MX", "IN", "CN", "ZA", "AR", "KR", "NZ", "EG", "ZZ")
_STREETS = ("Main St", "Elm St", "Oak Ave", "Baker St", "Hauptstr.", "Rue de Rivoli", "High St")
_CITIES = ("Springfield", "Shelbyville", "London", "Berlin", "Paris", "Toronto", "Osaka")
_GARBAGE = ("lorem", "ipsum", "dolor", "sit", "amet", "%%", "<html>", "null", "42", "@@")
_POOL_BASE, _POOL_SIZE, _FRESH_BASE = 100_000, 5_000, 10_000_000


class Kind(enum.StrEnum):
    """What a generated line was meant to exercise."""

    CONFIRM = "confirm"
    HOT = "hot"  # one unit of a hot item: confirmed while its stock lasts
    OUT_OF_STOCK = "out_of_stock"  # reserve refuses: unknown item, stock 0 or too few left
    UNSERVED_COUNTRY = "unserved_country"  # shipping refuses
    OVER_WEIGHT = "over_weight"  # shipping refuses
    DECLINED_CARD = "declined_card"  # payment refuses: Luhn check fails
    EXPIRED_CARD = "expired_card"  # payment refuses
    OVER_LIMIT = "over_limit"  # payment refuses: over the user's credit limit
    UNKNOWN_METHOD = "unknown_method"  # payment refuses
    INVALID = "invalid"  # breaks an input rule: rejected by the parser, no service call
    MALFORMED = "malformed"  # no order id can be read: no outcome line at all
    RESUBMIT_SAME = "resubmit_same"  # an earlier order again: gets that order's outcome
    RESUBMIT_DIFFERENT = "resubmit_different"  # an earlier id, other content: failed


@dataclass(frozen=True, slots=True)
class Mix:
    """The share (0..1) of lines of each kind; the rest are meant to be confirmed.

    The defaults make a realistic stream; :meth:`clean` a benchmark stream.
    """

    out_of_stock: float = 0.04
    unserved_country: float = 0.03
    over_weight: float = 0.02
    declined_card: float = 0.03
    expired_card: float = 0.02
    over_limit: float = 0.02
    unknown_method: float = 0.01
    invalid: float = 0.01
    malformed: float = 0.01
    resubmit_same: float = 0.0
    resubmit_different: float = 0.0

    def __post_init__(self) -> None:
        shares = [getattr(self, f.name) for f in fields(self)]
        if any(not 0.0 <= share <= 1.0 for share in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError("mix shares must lie in [0, 1] and sum to at most 1")

    @classmethod
    def clean(
        cls, *, fail_reserve: float = 0.0, fail_ship: float = 0.0, fail_pay: float = 0.0
    ) -> Mix:
        """Only well-formed orders, failing at each step with the given shares."""
        return cls(
            out_of_stock=fail_reserve,
            unserved_country=fail_ship,
            over_weight=0.0,
            declined_card=fail_pay,
            expired_card=0.0,
            over_limit=0.0,
            unknown_method=0.0,
            invalid=0.0,
            malformed=0.0,
        )

    def shares(self) -> list[tuple[Kind, float]]:
        return [(Kind(f.name), getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True, slots=True)
class GeneratedLine:
    line: str
    kind: Kind
    order_id: str | None  # None for a malformed line
    expected: str | None  # "confirmed", "failed", or None (no outcome line)


class LineGenerator:
    """The state of one workload: its random source, the reference model and recent orders."""

    def __init__(
        self,
        world: World,
        rng: random.Random,
        mix: Mix,
        *,
        hot_items: tuple[str, ...],
        hot_share: float,
        json_share: float,
        id_prefix: str,
    ) -> None:
        hot = hot_items
        self.rng, self.hot, self.prefix, self.counter = rng, hot_items, id_prefix, 0
        self.hot_share, self.json_share = hot_share, json_share
        self.model = ReferenceModel(world, today=REFERENCE_DATE)
        self.world = world
        items = world.inventory.items
        self.ordinary = sorted(i for i, spec in items.items() if i not in hot and spec.stock > 0)
        self.heavy = [i for i in self.ordinary if items[i].weight_kg > 0]
        self.countries = sorted(world.shipping.countries)
        self.unserved = [c for c in _UNSERVED if c not in world.shipping.countries] or ["NOWHERE"]
        self.methods = sorted(world.payment.methods)
        self.card_methods = [m for m in self.methods if "card" in m.lower()] or self.methods
        default = world.payment.default_credit_limit_cents
        limits = world.payment.credit_limits_cents
        self.limited = sorted(u for u, limit in limits.items() if limit < default)
        self.history: deque[tuple[Order, str]] = deque(maxlen=1000)
        self.fresh_user = _FRESH_BASE
        self.thresholds: list[tuple[float, Kind]] = []
        total = 0.0
        for kind, share in mix.shares():
            total += share
            self.thresholds.append((total, kind))
        self.builders: dict[Kind, Callable[[], GeneratedLine | None]] = {
            Kind.CONFIRM: self._confirm,
            Kind.HOT: self._hot,
            Kind.OUT_OF_STOCK: self._out_of_stock,
            Kind.UNSERVED_COUNTRY: self._unserved,
            Kind.OVER_WEIGHT: self._over_weight,
            Kind.DECLINED_CARD: lambda: self._bad_payment(Kind.DECLINED_CARD),
            Kind.EXPIRED_CARD: lambda: self._bad_payment(Kind.EXPIRED_CARD),
            Kind.UNKNOWN_METHOD: lambda: self._bad_payment(Kind.UNKNOWN_METHOD),
            Kind.OVER_LIMIT: self._over_limit,
            Kind.INVALID: self._invalid,
            Kind.MALFORMED: self._malformed,
            Kind.RESUBMIT_SAME: lambda: self._resubmit(same=True),
            Kind.RESUBMIT_DIFFERENT: lambda: self._resubmit(same=False),
        }

    def next_line(self) -> GeneratedLine:
        built = self.builders[self._pick_kind()]()
        return built if built is not None else self._confirm()

    def _pick_kind(self) -> Kind:
        roll = self.rng.random()
        for threshold, kind in self.thresholds:
            if roll < threshold:
                return kind
        if self.hot and self.rng.random() < self.hot_share:
            return Kind.HOT
        return Kind.CONFIRM

    # -- orders that pass validation ----------------------------------------------------------

    def _confirm(self) -> GeneratedLine:
        user = self._pooled_user()
        items = self._basket(self.model.room_cents(user))
        if not items:
            user = self._new_user()
            items = self._basket(self.model.room_cents(user))
        if not items:  # nothing left that fits: ask for something that is gone
            return self._out_of_stock()
        return self._emit(self._order(user, items), Kind.CONFIRM)

    def _hot(self) -> GeneratedLine:
        item = LineItem(self.rng.choice(self.hot), 1)
        return self._emit(self._order(self._new_user(), (item,)), Kind.HOT)

    def _out_of_stock(self) -> GeneratedLine:
        roll = self.rng.randrange(3)
        gone = [i for i in self.world.inventory.items if self.model.stock[i] == 0]
        if roll == 0 and gone:
            item = LineItem(self.rng.choice(sorted(gone)), self.rng.randint(1, 3))
        elif roll == 1 and self.ordinary:
            item_id = self.rng.choice(self.ordinary)
            item = LineItem(item_id, self.model.stock[item_id] + self.rng.randint(1, 3))
            if item.quantity > MAX_QUANTITY // 2:  # a huge stock cannot run out: ask for no item
                item = LineItem(f"NOSUCH-{self.rng.randrange(1000)}", 1)
        else:
            item = LineItem(f"NOSUCH-{self.rng.randrange(1000)}", 1)
        user = self._pooled_user()
        items = (*self._basket(self.model.room_cents(user)), item)
        return self._emit(self._order(user, items), Kind.OUT_OF_STOCK)

    def _unserved(self) -> GeneratedLine | None:
        user = self._pooled_user()
        items = self._basket(self.model.room_cents(user))
        if not items:
            return None
        address = replace(self._address(), country=self.rng.choice(self.unserved))
        return self._emit(self._order(user, items, address=address), Kind.UNSERVED_COUNTRY)

    def _over_weight(self) -> GeneratedLine | None:
        max_kg = self.world.shipping.max_weight_kg
        specs = self.world.inventory.items
        for _ in range(5):
            if not self.heavy:
                return None
            item_id = self.rng.choice(self.heavy)
            quantity = int(max_kg // specs[item_id].weight_kg) + 1
            if quantity <= self.model.stock[item_id]:
                order = self._order(self._pooled_user(), (LineItem(item_id, quantity),))
                return self._emit(order, Kind.OVER_WEIGHT)
        return None

    def _bad_payment(self, kind: Kind) -> GeneratedLine | None:
        user = self._pooled_user()
        items = self._basket(self.model.room_cents(user))
        if not items:
            return None
        if kind is Kind.UNKNOWN_METHOD:
            method = next(m for m in ("BankTransfer", "Cash", "IOU") if m not in self.methods)
            payment = PaymentInfo(method)
        else:
            card = make_card_number(self.rng, valid=kind is not Kind.DECLINED_CARD)
            expiry = self._expiry(kind is not Kind.EXPIRED_CARD)
            payment = PaymentInfo(self.rng.choice(self.card_methods), card, expiry)
        return self._emit(self._order(user, items, payment=payment), kind)

    def _over_limit(self) -> GeneratedLine | None:
        user = self.rng.choice(self.limited) if self.limited else self._new_user()
        room = self.model.room_cents(user)
        specs = self.world.inventory.items
        for _ in range(5):
            if not self.ordinary:
                return None
            item_id = self.rng.choice(self.ordinary)
            price = specs[item_id].price_cents
            quantity = max(1, room // price + 1) if price else 1
            order = self._order(user, (LineItem(item_id, quantity),))
            in_stock = quantity <= min(self.model.stock[item_id], MAX_QUANTITY)
            if in_stock and self.model.check(order).step == "pay":
                return self._emit(order, Kind.OVER_LIMIT)
        return None

    # -- lines that do not make a valid order ------------------------------------------------

    def _invalid(self) -> GeneratedLine:
        order = self._order(
            self._pooled_user(), (LineItem(self.rng.choice(self.ordinary or ("A",)), 1),)
        )
        broken = self.rng.choice(
            (
                replace(order, items=(LineItem(order.items[0].item_id, 0),)),
                replace(order, items=()),
                replace(order, user_id=-1 - self.rng.randrange(100)),
                replace(order, payment=PaymentInfo("CreditCard", "4111-1111-1111-1111")),
                replace(order, payment=PaymentInfo("CreditCard", "4111111111111111", "13/30")),
                replace(order, address=replace(order.address, country="")),
            )
        )
        return GeneratedLine(self._render(broken), Kind.INVALID, order.order_id, "failed")

    def _malformed(self) -> GeneratedLine:
        roll = self.rng.randrange(3)
        if roll == 0:
            words = self.rng.choices(_GARBAGE, k=self.rng.randint(1, 6))
            line = " ".join(words)
        elif roll == 1:
            full = self._order(0, (LineItem("A", 1),)).to_json_line()
            line = full[: self.rng.randint(1, len(full) - 1)]
        else:
            line = "Order , User 1, Items: [{A, 1}], Payment: PayPal, Address: US"
        return GeneratedLine(line, Kind.MALFORMED, None, None)

    def _resubmit(self, *, same: bool) -> GeneratedLine | None:
        if not self.history:
            return None
        original, expected = self.rng.choice(self.history)
        if same:
            again = replace(original, items=original.items[::-1])
            return GeneratedLine(self._render(again), Kind.RESUBMIT_SAME, again.order_id, expected)
        first = original.items[0]
        quantity = first.quantity + 1 if first.quantity < MAX_QUANTITY else first.quantity - 1
        changed = (LineItem(first.item_id, quantity), *original.items[1:])
        other = replace(original, items=changed)
        return GeneratedLine(self._render(other), Kind.RESUBMIT_DIFFERENT, other.order_id, "failed")

    # -- parts --------------------------------------------------------------------------------

    def _emit(self, order: Order, kind: Kind) -> GeneratedLine:
        expected = "confirmed" if self.model.apply(order).confirmed else "failed"
        self.history.append((order, expected))
        return GeneratedLine(self._render(order), kind, order.order_id, expected)

    def _render(self, order: Order) -> str:
        return order.to_json_line() if self.rng.random() < self.json_share else order.to_text()

    def _order(
        self,
        user: int,
        items: Sequence[LineItem],
        *,
        payment: PaymentInfo | None = None,
        address: Address | None = None,
    ) -> Order:
        self.counter += 1
        return Order(
            order_id=f"{self.prefix}{self.counter}",
            user_id=user,
            items=tuple(items),
            payment=payment or self._payment(),
            address=address or self._address(),
        )

    def _basket(self, room_cents: int) -> tuple[LineItem, ...]:
        """One to three distinct ordinary items that are in stock, ship, and fit ``room``."""
        specs, max_kg = self.world.inventory.items, self.world.shipping.max_weight_kg
        wanted = self.rng.randint(1, 3)
        chosen: dict[str, int] = {}
        weight, goods = Decimal(0), 0
        for _ in range(3 * wanted):
            if len(chosen) == wanted or not self.ordinary:
                break
            item_id = self.rng.choice(self.ordinary)
            left = self.model.stock[item_id]
            if item_id in chosen or left == 0:
                continue
            quantity = min(self.rng.randint(1, 3), left)
            new_weight = weight + specs[item_id].weight_kg * quantity
            new_goods = goods + specs[item_id].price_cents * quantity
            amount = new_goods + self.model.shipping_cents(new_weight)
            if new_weight <= max_kg and amount <= room_cents:
                chosen[item_id] = quantity
                weight, goods = new_weight, new_goods
        return tuple(LineItem(i, q) for i, q in chosen.items())

    def _payment(self) -> PaymentInfo:
        method = self.rng.choice(self.methods)
        if method in self.card_methods and self.rng.random() < 0.5:
            return PaymentInfo(method, make_card_number(self.rng), self._expiry(True))
        return PaymentInfo(method)

    def _expiry(self, valid: bool) -> str:
        year = self.rng.randint(35, 45) if valid else self.rng.randint(10, 20)
        return f"{self.rng.randint(1, 12):02d}/{year}"

    def _address(self) -> Address:
        street = f"{self.rng.randint(1, 999)} {self.rng.choice(_STREETS)}"
        return Address(street, self.rng.choice(_CITIES), self.rng.choice(self.countries))

    def _pooled_user(self) -> int:
        return _POOL_BASE + self.rng.randrange(_POOL_SIZE)

    def _new_user(self) -> int:
        self.fresh_user += 1
        return self.fresh_user

"""Model-based stateful tests: random actions, compensations, confirmations and duplicates.

Each machine drives one service (on SQLite) and a plain-Python model of it side by side. After
every step the database must agree with the model and conserve stock or money; a repeated key
must get the identical reply and change nothing; a reused key with another payload must get a
conflict.
"""

from __future__ import annotations

import abc
import asyncio
import tempfile
from collections.abc import Coroutine
from decimal import Decimal
from fractions import Fraction
from typing import Any, ClassVar, TypeVar

from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from ordersaga.participant.service import KitService
from ordersaga.protocol.messages import Command, Reply, ReplyStatus
from ordersaga.services.config import InventoryConfig, ItemSpec, PaymentConfig
from tests.hypothesis_profiles import examples
from tests.integration.services.helpers import (
    SHIPPING,
    TABLES,
    VISA,
    assert_credit_consistent,
    assert_stock_conserved,
    authorize,
    cancel,
    capture,
    commit,
    dump,
    open_inventory,
    open_payment,
    open_shipping,
    prepare,
    release,
    reserve,
    schedule,
    void,
)

T = TypeVar("T")
SETTINGS = settings(
    max_examples=examples(40),
    stateful_step_count=30,
    deadline=None,
)


class ServiceMachine(RuleBasedStateMachine):
    """Runs a service on a fresh SQLite file; remembers every key sent and its reply.

    Each saga has one key per phase, so a fixed pool of sagas would soon only replay. Sagas are
    therefore created as the run goes (by an action, or by a compensation arriving first) and
    later rules draw them from the ``sagas`` bundle.
    """

    name: ClassVar[str]
    sagas = Bundle("sagas")

    def __init__(self) -> None:
        super().__init__()
        self._runner = asyncio.Runner()
        self._dir = tempfile.TemporaryDirectory()
        self.service = self.run(self.open(f"sqlite:///{self._dir.name}/service.db"))
        self.sent: dict[str, tuple[Command, Reply]] = {}
        self.states: dict[str, str] = {}  # saga -> resource state in the model
        self._sagas = 0

    def new_saga(self) -> str:
        self._sagas += 1
        return f"s{self._sagas}"

    @abc.abstractmethod
    async def open(self, url: str) -> KitService:
        """Open this machine's service on ``url`` and set up its model (each subclass)."""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def teardown(self) -> None:
        self.run(self.service.close())
        self._runner.close()
        self._dir.cleanup()

    def send(self, command: Command) -> Reply | None:
        """Send; for a key sent before, check replay or conflict and return ``None``."""
        if command.key in self.sent:
            before = self.run(dump(self.service.db, TABLES[self.name]))
            reply = self.run(self.service.handle(command))
            first_command, first_reply = self.sent[command.key]
            if first_command.payload == command.payload:
                assert reply == first_reply
            else:
                assert reply.status is ReplyStatus.CONFLICT, reply
            assert self.run(dump(self.service.db, TABLES[self.name])) == before
            return None
        reply = self.run(self.service.handle(command))
        self.sent[command.key] = (command, reply)
        return reply

    @rule(data=st.data())
    def redeliver(self, data: st.DataObject) -> None:
        assume(self.sent)
        command, _ = self.sent[data.draw(st.sampled_from(sorted(self.sent)))]
        self.send(command)

    def compensated(self, saga: str, reply: Reply, cancelled: str, confirmed: str) -> None:
        """Check a fresh compensation's reply against the model, then update the model."""
        state = self.states.get(saga)
        if state == confirmed:
            assert reply.status is ReplyStatus.REFUSED, reply
            return
        assert reply.ok, reply
        self.states[saga] = state if state in (cancelled, "declined") else cancelled

    def confirmed(self, saga: str, reply: Reply, initial: str, confirmed: str) -> bool:
        """Check a fresh confirmation's reply; True when it moved initial → confirmed."""
        state = self.states.get(saga)
        if state in (initial, confirmed):
            assert reply.ok, reply
            self.states[saga] = confirmed
            return state == initial
        assert reply.status is ReplyStatus.REFUSED, reply
        return False

    @invariant()
    def states_match(self) -> None:
        table = TABLES[self.name][-2]
        rows = self.run(self.service.db.fetchall(f"SELECT ref, state FROM {table}"))
        assert {r["ref"].rsplit(":", 1)[0]: r["state"] for r in rows} == self.states


class InventoryMachine(ServiceMachine):
    name = "inventory"
    STOCK: ClassVar[dict[str, int]] = {"A": 5, "B": 3}

    async def open(self, url: str) -> KitService:
        self.stock = {item: [qty, 0, 0] for item, qty in self.STOCK.items()}
        self.lines: dict[str, dict[str, int]] = {}
        specs = {i: ItemSpec(100, q, Decimal(1)) for i, q in self.STOCK.items()}
        return await open_inventory(url, InventoryConfig(specs))

    LINES = st.lists(
        st.tuples(st.sampled_from(["A", "A", "B", "Z"]), st.integers(1, 3)), min_size=1, max_size=3
    )

    @rule(target=ServiceMachine.sagas, lines=LINES)
    def reserve_new(self, lines: list[tuple[str, int]]) -> str:
        saga = self.new_saga()
        self.reserve(saga, lines)
        return saga

    @rule(target=ServiceMachine.sagas)
    def release_first(self) -> str:
        saga = self.new_saga()
        self.release(saga)
        return saga

    @rule(saga=ServiceMachine.sagas, lines=LINES)
    def reserve(self, saga: str, lines: list[tuple[str, int]]) -> None:
        reply = self.send(reserve(saga, *lines))
        if reply is None:
            return
        wanted: dict[str, int] = {}
        for item, qty in lines:
            wanted[item] = wanted.get(item, 0) + qty
        if saga in self.states:
            assert reply == Reply.refused("reservation cancelled")
        elif "Z" in wanted:
            assert reply == Reply.refused("unknown item 'Z'")
        elif any(self.stock[i][0] < q for i, q in wanted.items()):
            assert reply.status is ReplyStatus.REFUSED
            assert str(reply.reason).startswith("insufficient stock")
        else:
            assert reply.ok, reply
            assert reply.body["items_cents"] == 100 * sum(wanted.values())
            for item, qty in wanted.items():
                self.stock[item][0] -= qty
                self.stock[item][1] += qty
            self.states[saga], self.lines[saga] = "held", wanted

    @rule(saga=ServiceMachine.sagas)
    def release(self, saga: str) -> None:
        reply = self.send(release(saga))
        if reply is not None:
            was_held = self.states.get(saga) == "held"
            self.compensated(saga, reply, "released", "committed")
            if was_held:
                for item, qty in self.lines[saga].items():
                    self.stock[item][0] += qty
                    self.stock[item][1] -= qty

    @rule(saga=ServiceMachine.sagas)
    def commit(self, saga: str) -> None:
        reply = self.send(commit(saga))
        if reply is not None and self.confirmed(saga, reply, "held", "committed"):
            for item, qty in self.lines[saga].items():
                self.stock[item][1] -= qty
                self.stock[item][2] += qty

    @invariant()
    def stock_matches(self) -> None:
        rows = self.run(self.service.db.fetchall("SELECT * FROM items"))
        assert {r["item_id"]: [r["available"], r["held"], r["sold"]] for r in rows} == self.stock
        self.run(assert_stock_conserved(self.service.db))


class ShippingMachine(ServiceMachine):
    name = "shipping"

    async def open(self, url: str) -> KitService:
        return await open_shipping(url, SHIPPING)

    COUNTRIES = st.sampled_from(["US", "de", "Fr ", "XX"])
    WEIGHTS = st.decimals(min_value=0, max_value=35, places=3)

    @rule(target=ServiceMachine.sagas, country=COUNTRIES, weight=WEIGHTS)
    def prepare_new(self, country: str, weight: Any) -> str:
        saga = self.new_saga()
        self.prepare(saga, country, weight)
        return saga

    @rule(target=ServiceMachine.sagas)
    def cancel_first(self) -> str:
        saga = self.new_saga()
        self.cancel(saga)
        return saga

    @rule(saga=ServiceMachine.sagas, country=COUNTRIES, weight=WEIGHTS)
    def prepare(self, saga: str, country: str, weight: Any) -> None:
        reply = self.send(prepare(saga, weight=f"{weight:f}", country=country))
        if reply is None:
            return
        if saga in self.states:
            assert reply == Reply.refused("shipment cancelled")
        elif country == "XX" or weight > 30:
            assert reply.status is ReplyStatus.REFUSED, reply
        else:
            # An independent oracle: exact fractions, half-up = floor(x + 1/2).
            cents = Fraction(499) + Fraction(150) * Fraction(weight)
            assert reply.body == {"cost_cents": int(cents + Fraction(1, 2))}
            self.states[saga] = "prepared"

    @rule(saga=ServiceMachine.sagas)
    def cancel(self, saga: str) -> None:
        reply = self.send(cancel(saga))
        if reply is not None:
            self.compensated(saga, reply, "cancelled", "scheduled")

    @rule(saga=ServiceMachine.sagas)
    def schedule(self, saga: str) -> None:
        reply = self.send(schedule(saga))
        if reply is not None:
            self.confirmed(saga, reply, "prepared", "scheduled")


class PaymentMachine(ServiceMachine):
    name = "payment"
    LIMITS: ClassVar[dict[int, int]] = {1: 1_000, 2: 500}

    async def open(self, url: str) -> KitService:
        self.accounts = {user: [0, 0] for user in self.LIMITS}
        self.amounts: dict[str, tuple[int, int]] = {}
        config = PaymentConfig(frozenset({"CreditCard"}), 500, {1: 1_000})
        return await open_payment(url, config)

    USERS = st.sampled_from([1, 2])
    AMOUNTS = st.integers(0, 700)
    METHODS = st.sampled_from(["CreditCard", "CreditCard", "Bogus"])
    CARDS = st.sampled_from([VISA, VISA, "4111111111111112", None])
    EXPIRIES = st.sampled_from(["12/30", "06/25", "05/25", None])

    @rule(
        target=ServiceMachine.sagas,
        user=USERS,
        amount=AMOUNTS,
        method=METHODS,
        card=CARDS,
        expiry=EXPIRIES,
    )
    def authorize_new(
        self, user: int, amount: int, method: str, card: str | None, expiry: str | None
    ) -> str:
        saga = self.new_saga()
        self.authorize(saga, user, amount, method, card, expiry)
        return saga

    @rule(target=ServiceMachine.sagas)
    def void_first(self) -> str:
        saga = self.new_saga()
        self.void(saga)
        return saga

    @rule(
        saga=ServiceMachine.sagas,
        user=USERS,
        amount=AMOUNTS,
        method=METHODS,
        card=CARDS,
        expiry=EXPIRIES,
    )
    def authorize(
        self, saga: str, user: int, amount: int, method: str, card: str | None, expiry: str | None
    ) -> None:
        reply = self.send(authorize(saga, amount, user, method, card, expiry))
        if reply is None:
            return
        used = sum(self.accounts[user])
        if saga in self.states:
            assert reply == Reply.refused("payment cancelled")
            return
        ok = (
            method == "CreditCard"
            and card != "4111111111111112"
            and expiry != "05/25"
            and used + amount <= self.LIMITS[user]
        )
        assert reply.ok is ok, reply
        self.states[saga] = "authorized" if ok else "declined"
        if ok:
            self.accounts[user][0] += amount
            self.amounts[saga] = (user, amount)

    @rule(saga=ServiceMachine.sagas)
    def void(self, saga: str) -> None:
        reply = self.send(void(saga))
        if reply is not None:
            was_authorized = self.states.get(saga) == "authorized"
            self.compensated(saga, reply, "voided", "captured")
            if was_authorized:
                user, amount = self.amounts[saga]
                self.accounts[user][0] -= amount

    @rule(saga=ServiceMachine.sagas)
    def capture(self, saga: str) -> None:
        reply = self.send(capture(saga))
        if reply is not None and self.confirmed(saga, reply, "authorized", "captured"):
            user, amount = self.amounts[saga]
            self.accounts[user][0] -= amount
            self.accounts[user][1] += amount

    @invariant()
    def money_matches(self) -> None:
        rows = self.run(self.service.db.fetchall("SELECT * FROM accounts"))
        found = {r["user_id"]: [r["authorized_cents"], r["captured_cents"]] for r in rows}
        assert {u: found.get(u, [0, 0]) for u in self.LIMITS} == self.accounts
        self.run(assert_credit_consistent(self.service.db))


TestInventoryMachine = InventoryMachine.TestCase
TestInventoryMachine.settings = SETTINGS
TestShippingMachine = ShippingMachine.TestCase
TestShippingMachine.settings = SETTINGS
TestPaymentMachine = PaymentMachine.TestCase
TestPaymentMachine.settings = SETTINGS

"""The per-command named tuples the services and the kit build with ``tuple.__new__`` itself are
the same values, of the same types, as their own constructors make."""

from __future__ import annotations

from decimal import Decimal

from ordersaga.participant.envelope import Envelope
from ordersaga.participant.plan import Prepared, Write
from ordersaga.protocol.messages import Command
from ordersaga.services import inventory, payment, shipping


def test_parsed_requests_are_their_named_tuples() -> None:
    reserve = inventory.parse_reserve(
        {"order_id": "o1", "items": [{"item_id": "A", "quantity": 2}]}
    )
    assert type(reserve) is inventory.ReserveRequest
    assert reserve == inventory.ReserveRequest("o1", {"A": 2})
    address = {"street": "s", "city": "c", "country": "DE"}
    ship = shipping.parse_prepare({"order_id": "o1", "address": address, "weight_kg": "1.5"})
    assert type(ship) is shipping.PrepareRequest
    assert ship == shipping.PrepareRequest("o1", "s", "c", "DE", Decimal("1.5"))
    pay = payment.parse_authorize(
        {"order_id": "o1", "user_id": 7, "amount_cents": 100, "method": "PayPal"}
    )
    assert type(pay) is payment.AuthorizeRequest
    assert pay == payment.AuthorizeRequest("o1", 7, 100, "PayPal", None, None)


def test_a_transition_is_a_write_expecting_one_row() -> None:
    write = shipping.LIFECYCLE.transition({"ref": "s1:ship", "version": 3}, "scheduled", 9.0)
    assert type(write) is Write and write.expect == 1
    assert write == Write(write.sql, ("scheduled", 9.0, "s1:ship", 3))


def test_a_prepared_command_is_a_prepared_named_tuple() -> None:
    service = object.__new__(shipping.ShippingService)
    envelope = Envelope("shipping", service.actions(), 1 << 16)
    prepared = envelope.prepare(Command("shipping", "schedule", "s1:ship:confirm", {}))
    assert type(prepared) is Prepared
    assert prepared == Prepared(*prepared) and prepared.key == "s1:ship:confirm"
    assert (prepared.resource, prepared.request) == ("s1:ship", None)

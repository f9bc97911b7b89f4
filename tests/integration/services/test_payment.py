"""Payment business rules (CONTRACT.md section 4), on every backend."""

from __future__ import annotations

import pytest

from ordersaga.protocol.messages import ReplyStatus
from ordersaga.services.payment import PaymentService
from tests.integration.services.helpers import (
    assert_credit_consistent,
    authorize,
    capture,
    void,
)


async def _account(service: PaymentService, user: int) -> tuple[int, int, int]:
    row = await service.db.fetchone("SELECT * FROM accounts WHERE user_id = ?", user)
    assert row is not None
    return row["credit_limit_cents"], row["authorized_cents"], row["captured_cents"]


async def _payment_state(service: PaymentService, saga: str) -> str | None:
    row = await service.db.fetchone("SELECT state FROM payments WHERE ref = ?", f"{saga}:payment")
    return None if row is None else str(row["state"])


async def test_authorize_then_capture_moves_the_amount(payment: PaymentService) -> None:
    reply = await payment.handle(authorize("s1", 4_000, user=7))
    assert reply.status is ReplyStatus.OK
    assert reply.body == {"amount_cents": 4_000, "state": "authorized"}
    assert await _account(payment, 7) == (100_000, 4_000, 0)
    assert (await payment.handle(capture("s1"))).body == {"state": "captured"}
    assert await _account(payment, 7) == (100_000, 0, 4_000)
    await assert_credit_consistent(payment.db)


async def test_void_releases_the_authorization(payment: PaymentService) -> None:
    await payment.handle(authorize("s1", 4_000, user=7))
    assert (await payment.handle(void("s1"))).body == {"state": "voided"}
    assert await _account(payment, 7) == (100_000, 0, 0)
    await assert_credit_consistent(payment.db)


async def test_user_specific_credit_limit_is_exact_to_the_cent(payment: PaymentService) -> None:
    assert (await payment.handle(authorize("s1", 4_000, user=456))).ok
    assert (await payment.handle(capture("s1"))).ok
    assert (await payment.handle(authorize("s2", 1_000, user=456))).ok  # exactly 50.00
    refused = await payment.handle(authorize("s3", 1, user=456))
    assert refused.status is ReplyStatus.REFUSED
    assert refused.reason == (
        "credit limit exceeded for user 456: limit 50.00, in use 50.00, requested 0.01"
    )
    assert await _payment_state(payment, "s3") == "declined"
    assert await _account(payment, 456) == (5_000, 1_000, 4_000)
    await assert_credit_consistent(payment.db)


async def test_voiding_frees_credit_for_later_orders(payment: PaymentService) -> None:
    assert (await payment.handle(authorize("s1", 5_000, user=456))).ok
    assert not (await payment.handle(authorize("s2", 100, user=456))).ok
    await payment.handle(void("s1"))
    assert (await payment.handle(authorize("s3", 5_000, user=456))).ok


async def test_first_authorization_over_the_default_limit(payment: PaymentService) -> None:
    refused = await payment.handle(authorize("s1", 100_001, user=9))
    assert refused.status is ReplyStatus.REFUSED
    assert refused.reason is not None and refused.reason.startswith("credit limit exceeded")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"method": "Bitcoin"}, "payment method 'Bitcoin' is not accepted"),
        ({"method": "creditcard"}, "payment method 'creditcard' is not accepted"),
        ({"card": "4111111111111112"}, "card number fails the Luhn check"),
        ({"card": "4111 1111 1111 1111"}, "card number fails the Luhn check"),
        ({"card": ""}, "card number fails the Luhn check"),
        ({"expiry": "05/25"}, "card expired at the end of 05/25"),
        ({"expiry": "13/30"}, "expiry '13/30' is not MM/YY"),
        ({"expiry": "1/30"}, "expiry '1/30' is not MM/YY"),
    ],
)
async def test_declines_record_a_declined_payment(
    payment: PaymentService, kwargs: dict[str, str], reason: str
) -> None:
    reply = await payment.handle(authorize("s1", 1_000, **kwargs))  # type: ignore[arg-type]
    assert reply.status is ReplyStatus.REFUSED
    assert reply.reason == reason
    row = await payment.db.fetchone("SELECT * FROM payments")
    assert row is not None
    assert (row["state"], row["reason"], row["amount_cents"]) == ("declined", reason, 1_000)
    assert await payment.db.fetchall("SELECT * FROM accounts") == []


@pytest.mark.parametrize("expiry", ["06/25", "12/99", None])
async def test_card_valid_through_its_month(payment: PaymentService, expiry: str | None) -> None:
    assert (await payment.handle(authorize("s1", 100, expiry=expiry))).ok  # today is 2025-06-15


async def test_paypal_without_card_details(payment: PaymentService) -> None:
    assert (await payment.handle(authorize("s1", 100, method="PayPal", card=None))).ok


async def test_declined_payment_voids_as_noop_and_cannot_capture(
    payment: PaymentService,
) -> None:
    await payment.handle(authorize("s1", 100, method="Cash"))
    assert (await payment.handle(void("s1"))).body == {"state": "declined"}
    refused = await payment.handle(capture("s1"))
    assert refused.reason == "illegal transition: payment is declined, cannot capture"


async def test_captured_cannot_be_voided(payment: PaymentService) -> None:
    await payment.handle(authorize("s1", 100))
    await payment.handle(capture("s1"))
    refused = await payment.handle(void("s1"))
    assert refused.reason == "illegal transition: payment is captured, cannot void"
    assert await _account(payment, 1) == (100_000, 0, 100)


async def test_zero_amount_is_authorized(payment: PaymentService) -> None:
    assert (await payment.handle(authorize("s1", 0))).ok
    assert (await payment.handle(capture("s1"))).ok
